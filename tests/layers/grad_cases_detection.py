"""Gradient-check cases of the SSD fork's layers (PriorBox, Permute, Normalize,
DetectionOutput); see grad_case.py."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import NetError
from tests.gradient_check import TEST, build_layer, setup_forward
from tests.layers.grad_case import Case, NoGradient


def _normalize(across: bool, shared: bool, filler: str = 'type: "uniform" min: 0.5 max: 2') -> str:
    return (f'type: "Normalize" bottom: "x" top: "y" norm_param {{ across_spatial: '
            f"{str(across).lower()} channel_shared: {str(shared).lower()} "
            f"scale_filler {{ {filler} }} }}")


#: Per-channel scales all equal: the fork's bottom gradient is exact only then (it scales the
#: gradient of the unscaled normalisation per channel; test_detection.py checks that formula
#: with distinct scales). The scale gradient is exact either way.
EQUAL_SCALES = 'type: "constant" value: 1.7'


def _detection_output_refuses_backward() -> None:
    layer = build_layer('type: "DetectionOutput" bottom: "l" bottom: "c" bottom: "p" top: "d" '
                        "detection_output_param { num_classes: 2 }", TEST)
    bottom = [Blob((1, 8)), Blob((1, 4)), Blob((1, 2, 8))]
    bottom[1].data[...] = 0.5
    bottom[2].data[0, 0] = [0.1, 0.1, 0.4, 0.4, 0.5, 0.5, 0.9, 0.9]
    bottom[2].data[0, 1] = 0.1
    top = [Blob()]
    setup_forward(layer, bottom, top)
    layer.backward(top, [False, False, False], bottom)  # nothing asked: fine
    with pytest.raises(NetError, match="has no backward"):
        layer.backward(top, [True, False, False], bottom)
    assert np.isfinite(top[0].data).all()


CASES: dict[str, list[Case] | NoGradient] = {
    # The boxes depend on the bottoms' shapes only: the checked gradient is zero.
    "PriorBox": [
        Case("feature_map", 'type: "PriorBox" bottom: "f" bottom: "im" top: "p" '
             "prior_box_param { min_size: 4 max_size: 9 aspect_ratio: 2 clip: true }",
             ((1, 2, 3, 3), (1, 3, 12, 12)), check_bottom=(0,)),
    ],
    "Permute": [
        Case("nhwc", 'type: "Permute" bottom: "x" top: "y" permute_param { order: 0 order: 2 '
             "order: 3 order: 1 }", ((2, 3, 4, 5),)),
        Case("partial_order", 'type: "Permute" bottom: "x" top: "y" permute_param '
             "{ order: 2 order: 0 }", ((2, 3, 4),)),
    ],
    "Normalize": [
        Case("across_shared", _normalize(True, True), ((2, 3, 2, 3),)),
        Case("across_per_channel", _normalize(True, False, EQUAL_SCALES), ((2, 3, 2, 3),)),
        Case("spatial_shared", _normalize(False, True), ((2, 3, 2, 3),)),
        Case("spatial_per_channel", _normalize(False, False, EQUAL_SCALES), ((2, 3, 2, 3),)),
        Case("two_axes", _normalize(False, True), ((3, 4),)),
    ],
    "DetectionOutput": NoGradient(
        "selects and sorts boxes (piecewise constant in the scores); the SSD fork's Backward "
        "is NOT_IMPLEMENTED", _detection_output_refuses_backward),
}
