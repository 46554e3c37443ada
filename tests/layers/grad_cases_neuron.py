"""Gradient-check cases of the neuron layers (see grad_case.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from tests.gradient_check import (
    build_layer,
    setup_forward,
)
from tests.layers.grad_case import Case, NoGradient

N4_CORE = (2, 3, 4, 5)


RELU_KINK = {"kink": 0.0, "kink_range": 0.01}


N4 = (2, 3, 2, 3)


#: Caffe's setting for functions with a kink at 0 (ReLU, PReLU, ELU, AbsVal).
KINK0 = {"kink": 0.0, "kink_range": 0.01}


def _neuron(type_name: str, extra: str = "", in_place: bool = False) -> str:
    top = "x" if in_place else "y"
    return f'type: "{type_name}" bottom: "x" top: "{top}" {extra}'


def _threshold_has_no_gradient() -> None:
    layer = build_layer(_neuron("Threshold", "threshold_param { threshold: 0.2 }"))
    bottom, top = [Blob((2, 3))], [Blob()]
    bottom[0].data[...] = np.linspace(-1, 1, 6).reshape(2, 3)
    setup_forward(layer, bottom, top)
    layer.backward(top, [False], bottom)  # nothing asked: fine
    with pytest.raises(Exception, match="(?i)gradient"):
        layer.backward(top, [True], bottom)


CASES: dict[str, list[Case] | NoGradient] = {
    # --- neurons -------------------------------------------------------------------------------
    "ReLU": [
        Case("plain", 'type: "ReLU" bottom: "x" top: "y"', (N4_CORE,), mode="eltwise",
             **RELU_KINK),
        Case("negative_slope", 'type: "ReLU" bottom: "x" top: "y" relu_param '
             "{ negative_slope: 0.01 }", (N4_CORE,), mode="eltwise", **RELU_KINK),
        Case("negative_slope_big", 'type: "ReLU" bottom: "x" top: "y" relu_param '
             "{ negative_slope: -0.7 }", (N4_CORE,), mode="eltwise", **RELU_KINK),
        Case("in_place", 'type: "ReLU" bottom: "x" top: "x"', (N4_CORE,), mode="eltwise",
             **RELU_KINK),
        Case("in_place_slope", 'type: "ReLU" bottom: "x" top: "x" relu_param '
             "{ negative_slope: 0.3 }", (N4_CORE,), mode="eltwise", **RELU_KINK),
    ],
    "Sigmoid": [
        Case("eltwise", 'type: "Sigmoid" bottom: "x" top: "y"', (N4_CORE,), mode="eltwise"),
        Case("in_place", 'type: "Sigmoid" bottom: "x" top: "x"', (N4_CORE,), mode="eltwise"),
    ],
    "TanH": [
        Case("eltwise", 'type: "TanH" bottom: "x" top: "y"', (N4_CORE,), mode="eltwise"),
        Case("in_place", 'type: "TanH" bottom: "x" top: "x"', (N4_CORE,), mode="eltwise"),
    ],
    "PReLU": [
        Case("per_channel", _neuron("PReLU"), (N4,), **KINK0),
        Case("per_channel_gaussian", _neuron(
            "PReLU", 'prelu_param { filler { type: "gaussian" std: 0.5 } }'), (N4,), **KINK0),
        Case("shared", _neuron("PReLU", "prelu_param { channel_shared: true }"), (N4,),
             **KINK0),
        Case("in_place", _neuron("PReLU", in_place=True), (N4,), **KINK0),
        Case("in_place_shared", _neuron("PReLU", "prelu_param { channel_shared: true }",
                                        in_place=True), (N4,), **KINK0),
        Case("two_axes", _neuron("PReLU"), ((3, 4),), **KINK0),
    ],
    "ELU": [
        Case("alpha1", _neuron("ELU"), (N4,), mode="eltwise", **KINK0),
        Case("alpha0.5", _neuron("ELU", "elu_param { alpha: 0.5 }"), (N4,), mode="eltwise",
             **KINK0),
        Case("in_place", _neuron("ELU", "elu_param { alpha: 0.5 }", in_place=True), (N4,),
             mode="eltwise", **KINK0),
    ],
    "AbsVal": [
        Case("eltwise", _neuron("AbsVal"), (N4,), mode="eltwise", **KINK0),
    ],
    "BNLL": [
        Case("eltwise", _neuron("BNLL"), (N4,), mode="eltwise"),
    ],
    "Power": [
        Case("fractional", _neuron("Power", "power_param { power: 0.37 scale: 0.83 "
                                   "shift: 4 }"), (N4,), mode="eltwise"),
        Case("square", _neuron("Power", "power_param { power: 2 scale: 0.34 shift: -2.4 }"),
             (N4,), mode="eltwise"),
        Case("square_no_shift", _neuron("Power", "power_param { power: 2 scale: 0.7 }"),
             (N4,), mode="eltwise"),
        Case("cube_no_shift", _neuron("Power", "power_param { power: 3 scale: 0.5 }"),
             (N4,), mode="eltwise", data="away"),
        Case("reciprocal", _neuron("Power", "power_param { power: -1 scale: 0.5 shift: 3 }"),
             (N4,), mode="eltwise"),
        Case("power1", _neuron("Power", "power_param { power: 1 scale: 0.5 shift: 1 }"),
             (N4,), mode="eltwise"),
        Case("power0", _neuron("Power", "power_param { power: 0 scale: 0.5 shift: 1 }"),
             (N4,), mode="eltwise"),
        Case("scale0", _neuron("Power", "power_param { power: 2 scale: 0 shift: 1.5 }"),
             (N4,), mode="eltwise"),
        Case("default_identity", _neuron("Power"), (N4,), mode="eltwise"),
    ],
    "Exp": [
        Case("base_e", _neuron("Exp"), (N4,), mode="eltwise"),
        Case("base2_scale_shift", _neuron("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }"),
             (N4,), mode="eltwise"),
        Case("base_e_shift", _neuron("Exp", "exp_param { scale: -0.7 shift: 0.3 }"), (N4,),
             mode="eltwise"),
        Case("in_place", _neuron("Exp", "exp_param { base: 3 scale: 0.4 }", in_place=True),
             (N4,), mode="eltwise"),
    ],
    "Log": [
        Case("base_e_shift", _neuron("Log", "log_param { shift: 4 }"), (N4,), mode="eltwise"),
        Case("base2_scale_shift", _neuron("Log", "log_param { base: 2 scale: 0.5 shift: 3 }"),
             (N4,), mode="eltwise"),
        Case("base10_negative_scale", _neuron("Log", "log_param { base: 10 scale: -0.8 "
                                              "shift: 5 }"), (N4,), mode="eltwise"),
    ],
    "Threshold": NoGradient("piecewise constant; Caffe's Backward is NOT_IMPLEMENTED",
                            _threshold_has_no_gradient),
    "Clip": [
        # |x| near the bounds is skipped (the kink), as Caffe's test moves such inputs away.
        Case("symmetric", _neuron("Clip", "clip_param { min: -1 max: 1 }"), (N4,),
             mode="eltwise", kink=1.0, kink_range=0.011),
        Case("narrow", _neuron("Clip", "clip_param { min: -0.5 max: 0.5 }"), (N4,),
             mode="eltwise", kink=0.5, kink_range=0.011),
    ],
    "Swish": [
        Case("beta1", _neuron("Swish"), (N4,), mode="eltwise"),
        Case("beta1.5", _neuron("Swish", "swish_param { beta: 1.5 }"), (N4,), mode="eltwise"),
        Case("in_place", _neuron("Swish", "swish_param { beta: 0.6 }", in_place=True), (N4,),
             mode="eltwise"),
    ],
    # MobileNet-SSD fork; the saturation at 6 is checked in test_neuron.py (gaussian data
    # rarely reaches it).
    "ReLU6": [
        Case("plain", _neuron("ReLU6"), (N4,), mode="eltwise", **KINK0),
        Case("in_place", _neuron("ReLU6", in_place=True), (N4,), mode="eltwise", **KINK0),
        Case("negative_slope", _neuron("ReLU6", "relu6_param { negative_slope: 0.2 }"), (N4,),
             mode="eltwise", **KINK0),
    ],
}
