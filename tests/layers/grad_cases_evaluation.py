"""Gradient-check cases of the evaluation layers (see grad_case.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from tests.gradient_check import (
    TEST,
    build_layer,
    setup_forward,
)
from tests.layers.grad_case import Case, NoGradient


def _accuracy_refuses_backward() -> None:
    layer = build_layer('type: "Accuracy" bottom: "x" bottom: "y" top: "acc"', TEST)
    bottom = [Blob((2, 3)), Blob((2,))]
    top = [Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    layer.backward(top, [False, False], bottom)  # nothing asked: fine
    with pytest.raises(Exception, match="(?i)gradient|backprop|backward"):
        layer.backward(top, [True, False], bottom)


def _argmax_has_no_gradient() -> None:
    layer = build_layer('type: "ArgMax" bottom: "x" top: "y"')
    bottom, top = [Blob((2, 4))], [Blob()]
    bottom[0].data[...] = np.arange(8).reshape(2, 4)
    setup_forward(layer, bottom, top)
    layer.backward(top, [False], bottom)  # nothing asked: fine
    with pytest.raises(Exception, match="(?i)gradient|backprop"):
        layer.backward(top, [True], bottom)


CASES: dict[str, list[Case] | NoGradient] = {
    # --- not differentiable ------------------------------------------------------------------
    "Accuracy": NoGradient("piecewise constant in the scores, never used for backward; "
                           "Caffe's Backward is NOT_IMPLEMENTED for propagate_down",
                           _accuracy_refuses_backward),
    "ArgMax": NoGradient("piecewise constant (indices and selected values); Caffe's Backward "
                         "is NOT_IMPLEMENTED", _argmax_has_no_gradient),
}
