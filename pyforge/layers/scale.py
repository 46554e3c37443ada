"""Scale and Bias: a learned (or second-bottom) factor or offset broadcast over a blob.
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels import scale as K
from ..proto import caffe_pb2
from .base import Layer, register_layer

_NO_BIAS = np.zeros(1, dtype=np.float32)
_NOTHING_KEPT = np.zeros((0, 0, 0), dtype=np.float32)


def _constant_filler(value: float) -> caffe_pb2.FillerParameter:
    filler = caffe_pb2.FillerParameter()
    filler.type = "constant"
    filler.value = value
    return filler


# --- Scale and Bias ------------------------------------------------------------------------------
def _broadcast_dims(layer: Layer, bottom: Blob, operand: Blob, axis: int,
                    what: str) -> tuple[int, int, int]:
    """(outer, dim, inner) for applying ``operand`` along ``bottom``'s axes from ``axis``.

    As in Caffe, a scalar operand (0 axes) uses axis 0 whatever ``axis`` says."""
    start = 0 if operand.num_axes == 0 else layer.canonical_axis(bottom, axis)
    end = start + operand.num_axes
    if end > bottom.num_axes or bottom.shape[start:end] != operand.shape:
        raise layer.error(f"the {what} of shape {operand.shape} does not match the bottom "
                          f"{bottom.shape} at axis {start}: its shape must equal "
                          f"bottom.shape[{start}:{end}]")
    return bottom.count_range(0, start), operand.count, bottom.count_range(end)


def _param_shape(layer: Layer, bottom: Blob, axis: int, num_axes: int) -> tuple[int, ...]:
    """The learned blob's shape for ``axis``/``num_axes`` (-1 = to the end) of Scale/Bias."""
    start = layer.canonical_axis(bottom, axis)
    if num_axes < -1:
        raise layer.error(f"num_axes must be >= 0, or -1 for all axes from axis on; found "
                          f"{num_axes}")
    if num_axes >= 0 and start + num_axes > bottom.num_axes:
        raise layer.error(f"num_axes {num_axes} from axis {start} extends past the bottom's "
                          f"{bottom.num_axes} axes {bottom.shape}")
    return bottom.shape[start:] if num_axes == -1 else bottom.shape[start:start + num_axes]


def _sum_outer(parts: np.ndarray) -> np.ndarray:
    """Per-plane float64 sums (outer, dim) added over outer in order, as float32."""
    return parts.sum(axis=0, dtype=np.float64).astype(np.float32)


def _sum_outer_inner(values: np.ndarray) -> np.ndarray:
    """Sum an (outer, dim, inner) array over outer and inner, in float64, as float32."""
    return values.sum(axis=2, dtype=np.float64).sum(axis=0).astype(np.float32)


@register_layer("Scale")
class ScaleLayer(Layer):
    """Caffe type ``Scale``: ``y = x * s (+ b)``, with ``s`` broadcast along the bottom's axes
    ``[axis, axis + s.num_axes)``. bottoms: x, or x and s; top: y (may be x, in place).

    Reads scale_param: axis (1), num_axes (1; -1 = all axes from ``axis``, 0 = a scalar; only
    with one bottom), filler (default constant 1), bias_term (false), bias_filler (default
    constant 0). Blobs: [s] with one bottom, then [b] when bias_term. The bias's shape follows
    ``num_axes`` (or bottom[1]'s axes with two bottoms), as Caffe's internal Bias layer does.
    """

    min_bottom_blobs = 1
    max_bottom_blobs = 2
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.scale_param
        if len(bottom) == 1 and not self.blobs:
            shape = _param_shape(self, bottom[0], p.axis, p.num_axes)
            # Default to a constant 1 filler: the identity.
            filler = p.filler if p.HasField("filler") else _constant_filler(1.0)
            self.blobs = [self.make_param(shape, filler, "filler")]
        self.bias_term = p.bias_term
        if self.bias_term and len(self.blobs) + len(bottom) < 3:
            num_axes = bottom[1].num_axes if len(bottom) > 1 else p.num_axes
            shape = _param_shape(self, bottom[0], p.axis, num_axes)
            self.blobs.append(self.make_param(shape, p.bias_filler, "bias_filler"))
        self.param_propagate_down = [True] * len(self.blobs)
        self.temp = np.zeros(0, np.float32)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        scale = bottom[1] if len(bottom) > 1 else self.blobs[0]
        axis = self.param.scale_param.axis
        self.dims = _broadcast_dims(self, bottom[0], scale, axis, "scale")
        if self.bias_term:
            bias = self.blobs[-1]
            if _broadcast_dims(self, bottom[0], bias, axis, "bias") != self.dims:
                raise self.error(f"the bias of shape {bias.shape} does not match the scale of "
                                 f"shape {scale.shape}")
        if top[0] is bottom[0]:
            # In place: Backward needs the input, which Forward overwrites.
            if self.temp.shape != bottom[0].shape:
                self.temp = np.zeros(bottom[0].shape, np.float32)
        else:
            top[0].reshape(bottom[0].shape)

    def _scale(self, bottom: list[Blob]) -> Blob:
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        in_place = top[0] is bottom[0]
        bias = self.blobs[-1].data if self.bias_term else _NO_BIAS
        K.scale_forward(bottom[0].data.reshape(self.dims),
                        self._scale(bottom).data.reshape(-1), bias.reshape(-1), self.bias_term,
                        in_place, self.temp.reshape(self.dims) if in_place else _NOTHING_KEPT,
                        top[0].data.reshape(self.dims))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        outer, dim, _ = self.dims
        scale = self._scale(bottom)
        learned = len(bottom) == 1
        need_bias = bool(self.bias_term and self.param_propagate_down[-1])
        need_scale = bool((learned and self.param_propagate_down[0])
                          or (not learned and propagate_down[1]))
        if not (need_bias or need_scale or propagate_down[0]):
            return
        x = (self.temp if top[0] is bottom[0] else bottom[0].data).reshape(self.dims)
        parts = self.scratch("parts", (2, outer, dim), np.float64)
        dx = bottom[0].diff.reshape(self.dims)
        K.scale_backward(x, top[0].diff.reshape(self.dims), scale.data.reshape(-1), need_scale,
                         need_bias, bool(propagate_down[0]), parts[0], parts[1], dx)
        if need_bias:
            bias = self.blobs[-1]
            bias.diff += _sum_outer(parts[1]).reshape(bias.shape)
        if need_scale:
            grad = _sum_outer(parts[0]).reshape(scale.shape)
            if learned:
                # NOTE: Caffe overwrites instead of adding for some shapes (outer dim 1, or a
                # scale as large as the bottom); parameter diffs accumulate here, always.
                scale.diff += grad
            else:
                scale.diff[...] = grad


@register_layer("Bias")
class BiasLayer(Layer):
    """Caffe type ``Bias``: ``y = x + b``, with ``b`` broadcast along the bottom's axes
    ``[axis, axis + b.num_axes)``. bottoms: x, or x and b; top: y (may be x, in place).

    Reads bias_param: axis (1), num_axes (1; -1 = all axes from ``axis``, 0 = a scalar; only
    with one bottom), filler (default constant 0). Blobs: [b] with one bottom.
    """

    min_bottom_blobs = 1
    max_bottom_blobs = 2
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.bias_param
        if len(bottom) == 1 and not self.blobs:
            shape = _param_shape(self, bottom[0], p.axis, p.num_axes)
            # An unset FillerParameter is already constant 0: the identity.
            self.blobs = [self.make_param(shape, p.filler, "filler")]
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        bias = bottom[1] if len(bottom) > 1 else self.blobs[0]
        self.dims = _broadcast_dims(self, bottom[0], bias, self.param.bias_param.axis, "bias")
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        bias = bottom[1] if len(bottom) > 1 else self.blobs[0]
        b = bias.data.reshape(1, self.dims[1], 1)
        y = top[0].data.reshape(self.dims)
        if top[0] is bottom[0]:
            y += b
        else:
            np.add(bottom[0].data.reshape(self.dims), b, out=y)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0] and top[0] is not bottom[0]:
            bottom[0].diff[...] = top[0].diff
        learned = len(bottom) == 1
        if (learned and self.param_propagate_down[0]) or (not learned and propagate_down[1]):
            bias = self.blobs[0] if learned else bottom[1]
            grad = _sum_outer_inner(top[0].diff.reshape(self.dims)).reshape(bias.shape)
            if learned:
                bias.diff += grad
            else:
                bias.diff[...] = grad
