"""BatchNorm, Scale, Bias, LRN, MVN and Softmax."""

from __future__ import annotations

import numpy as np

from ..builder import GraphBuilder, Site
from ..registry import converts


@converts("BatchNorm")
def batch_norm(g: GraphBuilder, site: Site) -> None:
    """BatchNormalization on Caffe's stored statistics: Caffe keeps running *sums* and a scale
    factor s (blobs[2]); the mean and variance are the sums times 1/s, and 0 when s is 0.
    Caffe's BatchNorm has no scale or shift of its own (a Scale layer follows it)."""
    layer = site.layer
    if not layer.use_global_stats:
        raise site.error("it normalizes with the statistics of each batch "
                         "(use_global_stats: false); a deploy net uses the stored ones: set "
                         "batch_norm_param { use_global_stats: true } or leave it unset")
    s = layer.blobs[2].data.reshape(-1)[0]
    factor = np.float32(0.0) if s == 0 else np.float32(1.0) / s
    mean = layer.blobs[0].data * factor
    var = layer.blobs[1].data * factor
    channels = layer.channels
    g.add("BatchNormalization",
          [site.inputs[0], g.constant(np.ones(channels), f"{site.name}/gamma"),
           g.constant(np.zeros(channels), f"{site.name}/beta"),
           g.constant(mean, f"{site.name}/mean"), g.constant(var, f"{site.name}/var")],
          [site.outputs[0]], layer=site.name, epsilon=float(layer.eps))


def _broadcast_shape(site: Site, operand_shape: tuple[int, ...], axis: int) -> list[int]:
    """The operand's shape padded with trailing 1s so that NumPy-style broadcasting applies it
    along the bottom's axes [axis, axis + operand axes), as Caffe's Scale and Bias do."""
    ndim = len(site.input_shapes[0])
    start = 0 if not operand_shape else axis % ndim
    return list(operand_shape) + [1] * (ndim - start - len(operand_shape))


def _scale_or_bias_operand(g: GraphBuilder, site: Site, learned, axis: int, what: str) -> str:
    """The learned blob as a broadcastable constant, or the second bottom reshaped to
    broadcast."""
    if learned is not None:
        shape = _broadcast_shape(site, learned.shape, axis)
        return g.constant(learned.data.reshape(shape), f"{site.name}/{what}")
    operand_shape = site.input_shapes[1]
    shape = _broadcast_shape(site, operand_shape, axis)
    if list(operand_shape) == shape:
        return site.inputs[1]
    # 0 copies the operand's own axes (a batch axis among them stays dynamic).
    return g.reshape(site.inputs[1], [0] * len(operand_shape) + shape[len(operand_shape):],
                     layer=site.name)


@converts("Scale")
def scale(g: GraphBuilder, site: Site) -> None:
    """``x * s (+ b)`` with s (and b) spanning the bottom's axes from ``axis`` (num_axes of
    them, or the second bottom's): Mul and Add with the operand reshaped to broadcast."""
    layer = site.layer
    p = layer.param.scale_param
    learned = layer.blobs[0] if len(site.inputs) == 1 else None
    factor = _scale_or_bias_operand(g, site, learned, p.axis, "scale")
    if not layer.bias_term:
        g.add("Mul", [site.inputs[0], factor], [site.outputs[0]], layer=site.name)
        return
    product = g.add("Mul", [site.inputs[0], factor], "scaled", layer=site.name)
    bias = _scale_or_bias_operand(g, site, layer.blobs[-1], p.axis, "bias")
    g.add("Add", [product, bias], [site.outputs[0]], layer=site.name)


@converts("Bias")
def bias(g: GraphBuilder, site: Site) -> None:
    layer = site.layer
    learned = layer.blobs[0] if len(site.inputs) == 1 else None
    operand = _scale_or_bias_operand(g, site, learned, layer.param.bias_param.axis, "bias")
    g.add("Add", [site.inputs[0], operand], [site.outputs[0]], layer=site.name)


@converts("LRN")
def lrn(g: GraphBuilder, site: Site) -> None:
    """ACROSS_CHANNELS is ONNX LRN: both divide alpha by the window size n and centre an odd
    window on the channel. WITHIN_CHANNEL is Caffe's own composition, rebuilt: the squares
    average-pooled over an n x n window (pad (n-1)/2, stride 1, always divided by n*n), then
    ``x * (1 + alpha * pooled) ^ -beta``; Caffe's k does not enter it."""
    layer = site.layer
    p = layer.param.lrn_param
    x, out = site.inputs[0], site.outputs[0]
    if not layer.within:
        g.add("LRN", [x], [out], layer=site.name, size=layer.size, alpha=float(p.alpha),
              beta=float(p.beta), bias=float(p.k))
        return
    n = layer.size
    pad = (n - 1) // 2
    squares = g.add("Mul", [x, x], "squares", layer=site.name)
    pooled = g.add("AveragePool", [squares], "pooled", layer=site.name, kernel_shape=[n, n],
                   strides=[1, 1], pads=[pad] * 4, count_include_pad=1)
    base = g.scale_shift(pooled, np.float32(p.alpha), np.float32(1.0),
                         g.fresh(f"{site.name}/base"), layer=site.name)
    power = g.add("Pow", [base, g.constant(-np.float32(p.beta), f"{site.name}/neg_beta")],
                  "power", layer=site.name)
    g.add("Mul", [x, power], [out], layer=site.name)


@converts("MVN")
def mvn(g: GraphBuilder, site: Site) -> None:
    """Mean (and variance) normalization per item, or per item and channel, of Caffe's 4-D
    view of the bottom. Caffe adds eps to the standard deviation, not to the variance (ONNX's
    MeanVarianceNormalization has no eps at all), so the steps are spelled out."""
    layer = site.layer
    x = site.inputs[0]
    top_shape = site.output_shapes[0]
    if tuple(site.input_shapes[0]) != tuple(top_shape):
        # A bottom with fewer than 4 axes gets Caffe's legacy (N, C, H, W) shape.
        x = g.reshape(x, [0] + list(top_shape[1:]), layer=site.name)
    axes = [1, 2, 3] if layer.across_channels else [2, 3]
    mean = g.reduce("ReduceMean", x, axes, True, layer=site.name)
    if not layer.normalize_variance:
        g.add("Sub", [x, mean], [site.outputs[0]], layer=site.name)
        return
    centred = g.add("Sub", [x, mean], "centred", layer=site.name)
    squares = g.add("Mul", [centred, centred], "squares", layer=site.name)
    variance = g.reduce("ReduceMean", squares, axes, True, layer=site.name)
    std = g.add("Sqrt", [variance], "std", layer=site.name)
    std_eps = g.add("Add", [std, g.constant(layer.eps, f"{site.name}/eps")], "std_eps",
                    layer=site.name)
    g.add("Div", [centred, std_eps], [site.outputs[0]], layer=site.name)


@converts("Softmax")
def softmax(g: GraphBuilder, site: Site) -> None:
    """Softmax along one axis: ONNX's semantics from opset 13 on (before, it flattened)."""
    g.add("Softmax", [site.inputs[0]], [site.outputs[0]], layer=site.name,
          axis=site.layer.axis)
