"""Gradient-check cases of the region layers: ROIPooling, PSROIPooling (pyforge/layers/roi.py)
and Proposal (pyforge/layers/detection_rpn.py, no gradient).

The ROI boxes are fixed inputs (they get no gradient). None is malformed (x2 < x1): the fork
pools such a box as 1x1 but passes it no gradient (tests/layers/test_roi.py shows it).
"""

from __future__ import annotations

import numpy as np

from pyforge.blob import Blob
from tests.gradient_check import TEST, build_layer, setup_forward
from tests.layers.grad_case import Case, NoGradient

# [batch, x1, y1, x2, y2] in image pixels; with spatial_scale 0.5 the boxes on the 6x8 map are
# 4x6, 6x3, 4x6 hanging off the bottom (an empty bin) and 5x6 (overlapping bins).
ROI_BOXES = (0, 0, 0, 6, 10,
             1, 4, 2, 14, 6,
             0, 2, 6, 8, 16,
             1, 0, 0, 8, 10)
PSROI_BOXES = (0, 0, 0, 7, 9,
               1, 2, 3, 11, 11,
               0, 4, 2, 9, 13)


def _roi(extra: str) -> str:
    return (f'type: "ROIPooling" bottom: "data" bottom: "rois" top: "pool" '
            f"roi_pooling_param {{ {extra} }}")


def _psroi(extra: str) -> str:
    return (f'type: "PSROIPooling" bottom: "data" bottom: "rois" top: "pool" '
            f"psroi_pooling_param {{ {extra} }}")


def _proposal_propagates_nothing() -> None:
    layer = build_layer('type: "Proposal" bottom: "cls" bottom: "bbox" bottom: "info" '
                        'top: "rois" top: "scores" proposal_param { min_size: 0 }', TEST)
    rng = np.random.default_rng(0)
    bottom = [Blob((1, 18, 3, 4)), Blob((1, 36, 3, 4)), Blob((1, 3))]
    bottom[0].data[...] = rng.uniform(0, 1, bottom[0].shape)
    bottom[1].data[...] = rng.normal(0, 0.2, bottom[1].shape)
    bottom[2].data[...] = [60, 70, 1]
    top = [Blob(), Blob()]
    setup_forward(layer, bottom, top)
    assert top[0].shape[0] > 0
    for blob in bottom:
        blob.diff[...] = 7
    layer.backward(top, [True, True, False], bottom)
    assert not bottom[0].diff.any() and not bottom[1].diff.any()
    assert not any(layer.allow_force_backward(i) for i in range(3))


CASES: dict[str, list[Case] | NoGradient] = {
    "ROIPooling": [
        Case("pooled_3x2", _roi("pooled_h: 3 pooled_w: 2 spatial_scale: 0.5"),
             ((2, 3, 6, 8), (4, 5)), check_bottom=(0,), data="distinct",
             fixed={1: ROI_BOXES}),
        Case("pooled_1x1_scale_1", _roi("pooled_h: 1 pooled_w: 1"),
             ((2, 2, 4, 5), (2, 5)), check_bottom=(0,), data="distinct",
             fixed={1: (0, 1, 0, 3, 2, 1, 0, 1, 4, 3)}),
    ],
    "PSROIPooling": [
        Case("group2", _psroi("spatial_scale: 0.5 output_dim: 2 group_size: 2"),
             ((2, 8, 6, 6), (3, 5)), check_bottom=(0,), fixed={1: PSROI_BOXES}),
        Case("group3_scale1", _psroi("spatial_scale: 1 output_dim: 1 group_size: 3"),
             ((1, 9, 5, 6), (2, 5)), check_bottom=(0,),
             fixed={1: (0, 0, 0, 5, 4, 0, 1, 1, 3, 2)}),
    ],
    "Proposal": NoGradient("py-faster-rcnn's proposal layer propagates no gradient (its "
                           "backward is empty); pyforge writes zero diffs when asked and never "
                           "asks for them under force_backward", _proposal_propagates_nothing),
}
