"""Channel-mixing layers of the mobile and attention forks: ShuffleChannel (ShuffleNet) and
Axpy (SENet)."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels.channel_ops import axpy_backward, axpy_forward
from .base import Layer, register_layer


@register_layer("ShuffleChannel")
class ShuffleChannelLayer(Layer):
    """Caffe type ``ShuffleChannel`` (farmingyard/ShuffleNet): bottom (N, C, ...) -> top of
    the same shape with the channels of ``group`` groups interleaved: output channel
    ``j * group + i`` is input channel ``i * (C / group) + j``. Reads shuffle_channel_param:
    group (default 1; must divide C). Backward applies the inverse permutation.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.group = int(self.param.shuffle_channel_param.group)
        if self.group <= 0:
            raise self.error(f"shuffle_channel_param.group must be > 0, found {self.group}")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes < 2 or bottom[0].shape[1] % self.group:
            raise self.error(f"group {self.group} must divide the channels (axis 1) of the "
                             f"bottom {bottom[0].shape}")
        if top[0] is bottom[0]:
            raise self.error("cannot run in place: the output is a permutation of the input")
        top[0].reshape(bottom[0].shape)

    def _grouped(self, array: np.ndarray) -> np.ndarray:
        """(N, C, S) viewed as (N, group, C / group, S)."""
        n, c = array.shape[:2]
        return array.reshape(n, self.group, c // self.group, -1)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        # (N, g, C/g, S) -> (N, C/g, g, S): one strided copy.
        grouped = self._grouped(bottom[0].data)
        out = top[0].data.reshape(grouped.shape[0], grouped.shape[2], self.group, -1)
        np.copyto(out, grouped.transpose(0, 2, 1, 3))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            grouped = self._grouped(bottom[0].diff)
            dy = top[0].diff.reshape(grouped.shape[0], grouped.shape[2], self.group, -1)
            np.copyto(grouped, dy.transpose(0, 2, 1, 3))


@register_layer("Axpy")
class AxpyLayer(Layer):
    """Caffe type ``Axpy`` (hujie-frank/SENet): bottoms scale (N, C) or (N, C, 1, 1), x and
    y (N, C, ...) of one shape -> top ``scale[n, c] * x + y`` (the SE block's rescale and
    residual sum in one layer). Backward: ``d scale = sum over the spatial axes of
    dtop * x``, ``dx = scale * dtop``, ``dy = dtop``. May run in place on y, not on x (the
    gradient of scale needs x).
    """

    exact_num_bottom_blobs = 3
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        scale, x, y = bottom
        if x.num_axes < 2 or scale.num_axes < 2 or scale.shape[:2] != x.shape[:2]:
            raise self.error(f"bottom 0 (the scale) must be (N, C) or (N, C, 1, 1) for x of "
                             f"shape {x.shape}, found {scale.shape}")
        if scale.num_axes == 4 and scale.shape[2:] != (1, 1):
            raise self.error(f"bottom 0 (the scale) must be (N, C, 1, 1), found {scale.shape}")
        if x.shape != y.shape:
            raise self.error(f"bottoms 1 and 2 (x and y) must have one shape, found {x.shape} "
                             f"and {y.shape}")
        if top[0] is x:
            raise self.error("cannot run in place on bottom 1 (x): its gradient of the scale "
                             "needs x")
        top[0].reshape(x.shape)

    @staticmethod
    def _views(scale: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        n, c = x.shape[:2]
        return scale.reshape(n, c), (n, c, x.size // (n * c) if n * c else 0)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        scale, dims = self._views(bottom[0].data, bottom[1].data)
        axpy_forward(scale, bottom[1].data.reshape(dims), bottom[2].data.reshape(dims),
                     top[0].data.reshape(dims))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        scale, dims = self._views(bottom[0].data, bottom[1].data)
        dtop = top[0].diff.reshape(dims)
        if propagate_down[0] or propagate_down[1]:
            axpy_backward(scale, bottom[1].data.reshape(dims), dtop, bool(propagate_down[0]),
                          bool(propagate_down[1]), bottom[0].diff.reshape(scale.shape),
                          bottom[1].diff.reshape(dims))
        if propagate_down[2] and bottom[2].diff is not top[0].diff:
            bottom[2].diff[...] = top[0].diff
