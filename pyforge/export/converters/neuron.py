"""Elementwise layers: ReLU (leaky), PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp, Log,
Threshold, Clip, Swish and Dropout (the identity at test time)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, numpy_helper

from ..builder import GraphBuilder, Site
from ..registry import converts

#: Caffe types that are one ONNX operator without attributes.
PLAIN = {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs", "BNLL": "Softplus",
         "Dropout": "Identity"}


@converts(*PLAIN)
def plain(g: GraphBuilder, site: Site) -> None:
    g.add(PLAIN[site.type], [site.inputs[0]], [site.outputs[0]], layer=site.name)


@converts("ReLU")
def relu(g: GraphBuilder, site: Site) -> None:
    """``max(x, 0) + negative_slope * min(x, 0)``: LeakyRelu for any slope but 0."""
    slope = float(np.float32(site.layer.param.relu_param.negative_slope))
    if slope == 0:
        g.add("Relu", [site.inputs[0]], [site.outputs[0]], layer=site.name)
    else:
        g.add("LeakyRelu", [site.inputs[0]], [site.outputs[0]], layer=site.name, alpha=slope)


@converts("PReLU")
def prelu(g: GraphBuilder, site: Site) -> None:
    """One slope per channel (axis 1), shaped (C, 1, ...) to broadcast, or one for all."""
    ndim = len(site.input_shapes[0])
    slope = site.layer.blobs[0].data.reshape(-1)
    shape = [1] if site.layer.channel_shared else [slope.size] + [1] * (ndim - 2)
    g.add("PRelu", [site.inputs[0], g.constant(slope.reshape(shape), f"{site.name}/slope")],
          [site.outputs[0]], layer=site.name)


@converts("ELU")
def elu(g: GraphBuilder, site: Site) -> None:
    g.add("Elu", [site.inputs[0]], [site.outputs[0]], layer=site.name,
          alpha=float(np.float32(site.layer.param.elu_param.alpha)))


@converts("Power")
def power(g: GraphBuilder, site: Site) -> None:
    """``(shift + scale * x) ^ power``; when ``power * scale`` is 0 Caffe writes the constant
    1 (power 0) or ``shift ^ power`` (scale 0) whatever x holds, NaN included."""
    layer = site.layer
    x, out = site.inputs[0], site.outputs[0]
    if layer.diff_scale == 0:
        with np.errstate(all="ignore"):
            value = np.float32(1) if layer.power == 0 else layer.shift ** layer.power
        shape = g.add("Shape", [x], "shape", layer=site.name)
        g.add("ConstantOfShape", [shape], [out], layer=site.name,
              value=_float_tensor(value))
        return
    if layer.power == 1:
        g.scale_shift(x, layer.scale, layer.shift, out, layer=site.name)
        return
    base = x
    if layer.scale != 1 or layer.shift != 0:
        base = g.scale_shift(x, layer.scale, layer.shift, g.fresh(f"{site.name}/base"),
                             layer=site.name)
    g.add("Pow", [base, g.constant(layer.power, f"{site.name}/power")], [out], layer=site.name)


def _float_tensor(value) -> TensorProto:
    return numpy_helper.from_array(np.asarray([value], dtype=np.float32), "value")


@converts("Exp")
def exp(g: GraphBuilder, site: Site) -> None:
    """``base ^ (shift + scale * x)`` = ``base^shift * exp(ln(base) * scale * x)``, the
    factors as the layer computed them."""
    layer = site.layer
    inner = site.inputs[0]
    if layer.inner_scale != 1:
        inner = g.add("Mul", [inner, g.constant(layer.inner_scale, f"{site.name}/scale")],
                      "scaled", layer=site.name)
    if layer.outer_scale == 1:
        g.add("Exp", [inner], [site.outputs[0]], layer=site.name)
        return
    value = g.add("Exp", [inner], "exp", layer=site.name)
    g.add("Mul", [value, g.constant(layer.outer_scale, f"{site.name}/outer")],
          [site.outputs[0]], layer=site.name)


@converts("Log")
def log(g: GraphBuilder, site: Site) -> None:
    """``log(shift + scale * x) / ln(base)``."""
    layer = site.layer
    argument = site.inputs[0]
    if layer.input_scale != 1 or layer.input_shift != 0:
        argument = g.scale_shift(argument, layer.input_scale, layer.input_shift,
                                 g.fresh(f"{site.name}/argument"), layer=site.name)
    if layer.base_scale == 1:
        g.add("Log", [argument], [site.outputs[0]], layer=site.name)
        return
    value = g.add("Log", [argument], "ln", layer=site.name)
    g.add("Mul", [value, g.constant(layer.base_scale, f"{site.name}/base_scale")],
          [site.outputs[0]], layer=site.name)


@converts("Threshold")
def threshold(g: GraphBuilder, site: Site) -> None:
    """1 where ``x > threshold`` (strictly), else 0."""
    t = np.float32(site.layer.param.threshold_param.threshold)
    above = g.add("Greater", [site.inputs[0], g.constant(t, f"{site.name}/threshold")],
                  "above", layer=site.name)
    g.add("Cast", [above], [site.outputs[0]], layer=site.name, to=TensorProto.FLOAT)


@converts("Clip")
def clip(g: GraphBuilder, site: Site) -> None:
    """Caffe's ``max(min, min(x, max))`` gives ``min`` when min > max, where ONNX Clip gives
    ``max``; Min then Max is Caffe's order."""
    layer = site.layer
    upper = g.add("Min", [site.inputs[0], g.constant(layer.hi, f"{site.name}/max")], "upper",
                  layer=site.name)
    g.add("Max", [upper, g.constant(layer.lo, f"{site.name}/min")], [site.outputs[0]],
          layer=site.name)


@converts("Swish")
def swish(g: GraphBuilder, site: Site) -> None:
    """``x * sigmoid(beta * x)``."""
    x = site.inputs[0]
    beta = site.layer.beta
    scaled = x if beta == 1 else g.add("Mul", [x, g.constant(beta, f"{site.name}/beta")],
                                       "scaled", layer=site.name)
    gate = g.add("Sigmoid", [scaled], "gate", layer=site.name)
    g.add("Mul", [x, gate], [site.outputs[0]], layer=site.name)
