"""Gradient-check cases of the SSD fork's layers (PriorBox, Permute, Normalize,
DetectionOutput); see grad_case.py."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import NetError
from tests.gradient_check import TEST, build_layer, setup_forward
from tests.layers.grad_case import Case, NoGradient


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
    "Proposal": NoGradient("py-faster-rcnn's proposal layer propagates no gradient (its "
                           "backward is empty); pyforge writes zero diffs when asked and never "
                           "asks for them under force_backward", _proposal_propagates_nothing),
    # The boxes depend on the bottoms' shapes only: the checked gradient is zero.
    "PriorBox": [
        Case("feature_map", 'type: "PriorBox" bottom: "f" bottom: "im" top: "p" '
             "prior_box_param { min_size: 4 max_size: 9 aspect_ratio: 2 clip: true }",
             ((1, 2, 3, 3), (1, 3, 12, 12)), check_bottom=(0,)),
    ],
    "DetectionOutput": NoGradient(
        "selects and sorts boxes (piecewise constant in the scores); the SSD fork's Backward "
        "is NOT_IMPLEMENTED", _detection_output_refuses_backward),
}
