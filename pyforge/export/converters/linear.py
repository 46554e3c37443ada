"""Layers with weight matrices: Convolution, Deconvolution, InnerProduct and Embed."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..builder import GraphBuilder, Site
from ..registry import converts


def _conv_attributes(layer) -> dict:
    geometry = layer.geometry
    (kh, kw), (ph, pw) = geometry.kernel, geometry.pad
    return {"kernel_shape": [kh, kw], "pads": [ph, pw, ph, pw],
            "strides": list(geometry.stride), "dilations": list(geometry.dilation),
            "group": layer.group}


@converts("Convolution", "Deconvolution")
def convolution(g: GraphBuilder, site: Site) -> None:
    """Conv / ConvTranspose. Caffe's weight layouts are ONNX's: (num_output, C/group, kh, kw)
    for Convolution and (C, num_output/group, kh, kw) for Deconvolution, whose output size
    ``stride*(H-1) + dilation*(k-1) + 1 - 2*pad`` is ConvTranspose's with these pads. Several
    bottoms share one set of weights, as in Caffe."""
    layer = site.layer
    op = "Conv" if site.type == "Convolution" else "ConvTranspose"
    params = [g.constant(layer.blobs[0].data, f"{site.name}/weight")]
    if layer.bias_term:
        params.append(g.constant(layer.blobs[1].data, f"{site.name}/bias"))
    for x, out in zip(site.inputs, site.outputs):
        g.add(op, [x, *params], [out], layer=site.name, **_conv_attributes(layer))


@converts("InnerProduct")
def inner_product(g: GraphBuilder, site: Site) -> None:
    """Caffe flattens the axes from ``axis`` on into K and keeps those before it. At axis 1
    that is Flatten + Gemm; otherwise a Reshape to (..., K) and MatMul (+ Add), which keeps
    the leading axes (0 in the target shape copies them, the batch included)."""
    layer = site.layer
    g.batch_free(site, layer.axis, "multiplies")
    weight = layer.blobs[0].data
    shape = site.input_shapes[0]
    out = site.outputs[0]
    if layer.axis == 1:
        x = site.inputs[0]
        if len(shape) != 2:
            x = g.add("Flatten", [x], "flat", layer=site.name, axis=1)
        inputs = [x, g.constant(weight, f"{site.name}/weight")]
        if layer.bias_term:
            inputs.append(g.constant(layer.blobs[1].data, f"{site.name}/bias"))
        g.add("Gemm", inputs, [out], layer=site.name, transB=0 if layer.transpose else 1)
        return
    x = site.inputs[0]
    if len(shape) != layer.axis + 1:
        x = g.reshape(x, [0] * layer.axis + [layer.k], layer=site.name)
    # MatMul wants (K, num_output): Caffe's weight is that with transpose, else its transpose.
    matrix = weight if layer.transpose else np.ascontiguousarray(weight.T)
    product = g.add("MatMul", [x, g.constant(matrix, f"{site.name}/weight")],
                    None if layer.bias_term else [out], layer=site.name)
    if layer.bias_term:
        g.add("Add", [product, g.constant(layer.blobs[1].data, f"{site.name}/bias")], [out],
              layer=site.name)


@converts("Embed")
def embed(g: GraphBuilder, site: Site) -> None:
    """Gather of weight rows by the (float-held) indices, cast to int64; Caffe refuses
    indices outside [0, input_dim) and so does Gather."""
    layer = site.layer
    index = g.add("Cast", [site.inputs[0]], "index", layer=site.name, to=TensorProto.INT64)
    rows = g.add("Gather", [g.constant(layer.blobs[0].data, f"{site.name}/weight"), index],
                 None if layer.bias_term else [site.outputs[0]], layer=site.name, axis=0)
    if layer.bias_term:
        g.add("Add", [rows, g.constant(layer.blobs[1].data, f"{site.name}/bias")],
              [site.outputs[0]], layer=site.name)
