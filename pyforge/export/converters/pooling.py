"""Pooling with Caffe's window rules, which ONNX's defaults do not share.

Caffe's output size is ``ceil((H + 2*pad - k) / stride) + 1`` (or floor with round_mode
FLOOR), less one when that last window would start inside the bottom/right padding. Instead
of ONNX's ceil_mode (whose rule for the last window differs), the export gives MaxPool /
AveragePool explicit, asymmetric pads: ``pad`` before, and after just enough for Caffe's last
window, so that ONNX's floor rule yields Caffe's size.

Values: Caffe's MAX looks only at pixels inside the image, as ONNX MaxPool ignores pads. Caffe's
AVE sums the pixels inside the image and divides by the window clipped to the image *plus its
padding* (``pad`` on each side), not by the kernel size and not by the pixel count. ONNX
AveragePool with count_include_pad=1 divides by the kernel size, so the export multiplies by a
constant map ``kernel_size / caffe_window_size`` where the two differ (windows that reach past
``H + pad``). A last window lying wholly in the padding (a stride larger than the kernel) gives
-FLT_MAX (MAX) or 0 (AVE) in Caffe; there the export pads explicitly with a Pad node.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ...proto import caffe_pb2
from ..builder import GraphBuilder, Site
from ..registry import converts

P = caffe_pb2.PoolingParameter
FLT_LOWEST = float(np.finfo(np.float32).min)


def caffe_window_sizes(size: int, out: int, kernel: int, pad: int, stride: int) -> np.ndarray:
    """Caffe's AVE divisor along one axis: each window clipped to [-pad, size + pad)."""
    starts = np.arange(out) * stride - pad
    return np.minimum(starts + kernel, size + pad) - starts


def _end_pads(site: Site) -> list[int]:
    """Pads after the image that make ONNX's floor rule give Caffe's output size."""
    layer = site.layer
    _, _, h, w = site.input_shapes[0]
    oh, ow = site.output_shapes[0][2:]
    ends = []
    for size, out, k, pad, s in zip((h, w), (oh, ow), layer.kernel, layer.pad, layer.stride):
        # The last window ends exactly at size + pad + end. With a floor round_mode the end
        # can come out negative; 0 gives the same count (ONNX floors it away).
        ends.append(max((out - 1) * s + k - size - pad, 0))
    return ends


@converts("Pooling")
def pooling(g: GraphBuilder, site: Site) -> None:
    layer = site.layer
    is_max = layer.param.pooling_param.pool == P.MAX
    x, out = site.inputs[0], site.outputs[0]
    if layer.global_pooling and len(site.outputs) == 1:
        g.add("GlobalMaxPool" if is_max else "GlobalAveragePool", [x], [out], layer=site.name)
        return
    (kh, kw), (ph, pw), (sh, sw) = layer.kernel, layer.pad, layer.stride
    eh, ew = _end_pads(site)
    pads = [ph, pw, eh, ew]
    window = {"kernel_shape": [kh, kw], "strides": [sh, sw]}
    # ONNX Runtime wants every pad smaller than the kernel; past that, pad explicitly.
    explicit = eh >= kh or ew >= kw
    if explicit:
        if len(site.outputs) > 1:
            raise site.error("its last window lies wholly in the padding, where the argmax "
                             "mask (second top) has no ONNX form; remove the second top or "
                             "change the stride, kernel or pad")
        fill = g.constant(FLT_LOWEST if is_max else 0.0, f"{site.name}/fill")
        x = g.add("Pad", [x, g.ints([0, 0, ph, pw, 0, 0, eh, ew], f"{site.name}/pads"), fill],
                  "padded", layer=site.name, mode="constant")
    elif any(pads):
        window["pads"] = pads
    if is_max:
        if len(site.outputs) == 1:
            g.add("MaxPool", [x], [out], layer=site.name, **window)
            return
        _, _, h, w = site.input_shapes[0]
        indices = g.fresh(f"{site.name}/indices")
        g.add_multi("MaxPool", [x], [out, indices], layer=site.name, **window)
        # ONNX's indices run over the whole (N, C, H, W) tensor; Caffe's mask holds the index
        # h * W + w within the plane, as a float.
        plane = g.add("Mod", [indices, g.constant(h * w, f"{site.name}/plane", np.int64)],
                      "plane_index", layer=site.name)
        g.add("Cast", [plane], [site.outputs[1]], layer=site.name, to=TensorProto.FLOAT)
        return
    _, _, h, w = site.input_shapes[0]
    oh, ow = site.output_shapes[0][2:]
    divisor = np.outer(caffe_window_sizes(h, oh, kh, ph, sh),
                       caffe_window_sizes(w, ow, kw, pw, sw))
    correction = (kh * kw) / divisor
    if np.all(correction == 1):
        g.add("AveragePool", [x], [out], layer=site.name, count_include_pad=1, **window)
        return
    pooled = g.add("AveragePool", [x], "pooled", layer=site.name, count_include_pad=1,
                   **window)
    g.add("Mul", [pooled, g.constant(correction, f"{site.name}/window_ratio")], [out],
          layer=site.name)
