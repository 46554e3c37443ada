"""Deconvolution and Im2col: the convolution family's layers that run the product the other
way round (Deconvolution) or stop at the unrolled columns (Im2col), with the geometry and
parameter rules of :mod:`pyforge.layers.conv`."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels.im2col import cn_to_nc_bias, col2im_batch, im2col_batch, nc_to_cn
from .base import Layer, register_layer
from .blas import accumulate_matmul, matmul_into
from .conv import BaseConvolutionLayer, conv_geometry

_NO_BIAS = np.zeros(1, dtype=np.float32)


@register_layer("Deconvolution", "DECONVOLUTION")
class DeconvolutionLayer(BaseConvolutionLayer):
    """Caffe type ``Deconvolution``: bottoms (N, C, H, W) -> tops (N, num_output, OH, OW) with
    ``OH = stride * (H - 1) + dilation * (kernel - 1) + 1 - 2 * pad`` (likewise OW).

    The columns run over the whole batch (:func:`im2col_batch`): forward is one GEMM with the
    transposed weight per group, then col2im.
    """

    reverse_dimensions = True

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        n, _, h, w = self.check_bottoms(bottom)
        oh, ow = self.geometry.deconv_output(h, w)
        if oh <= 0 or ow <= 0:
            g = self.geometry
            raise self.error(
                f"pad {g.pad} is too large: the output of a {h}x{w} input with kernel "
                f"{g.kernel}, stride {g.stride} and dilation {g.dilation} would be {oh}x{ow}"
            )
        self.in_hw = (h, w)
        for t in top:
            t.reshape((n, self.num_output, oh, ow))
        rows = self.num_output * self.kernel[0] * self.kernel[1]
        self._col = self.scratch("col", (rows, n * h * w))
        self._x_t = self.scratch("x_t", (self.channels, n * h * w))

    def _grouped_weight(self, array: np.ndarray) -> np.ndarray:
        g = self.group
        return array.reshape(g, self.channels // g, -1)  # (g, C/g, num_output/g*kh*kw)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        # The columns run over the (convolution-output sized) input grid.
        args = self.geometry.kernel_args(*self.in_hw)
        weight = self._grouped_weight(self.blobs[0].data)
        cg, rg = weight.shape[1], weight.shape[2]
        col, x_t = self._col, self._x_t
        for b, t in zip(bottom, top):
            n = b.shape[0]
            nc_to_cn(b.data.reshape(n, self.channels, -1), x_t)
            for gi in range(self.group):
                matmul_into(weight[gi].T, x_t[gi * cg : (gi + 1) * cg],
                            col[gi * rg : (gi + 1) * rg])
            col2im_batch(col, *args, t.data)
            if self.bias_term:
                t.data += self.blobs[1].data[None, :, None, None]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        args = self.geometry.kernel_args(*self.in_hw)
        weight = self._grouped_weight(self.blobs[0].data)
        weight_diff = self._grouped_weight(self.blobs[0].diff)
        cg, rg = weight.shape[1], weight.shape[2]
        col, x_t = self._col, self._x_t
        for i, (b, t) in enumerate(zip(bottom, top)):
            if self.bias_term and self.param_propagate_down[1]:
                self.blobs[1].diff += t.diff.sum(axis=(0, 2, 3), dtype=np.float32)
            if not (self.param_propagate_down[0] or propagate_down[i]):
                continue
            n = b.shape[0]
            # The columns of the top gradient, as a convolution's forward would build them.
            im2col_batch(t.diff, *args, col)
            if self.param_propagate_down[0]:
                nc_to_cn(b.data.reshape(n, self.channels, -1), x_t)
                for gi in range(self.group):
                    accumulate_matmul(x_t[gi * cg : (gi + 1) * cg],
                                      col[gi * rg : (gi + 1) * rg].T, weight_diff[gi])
            if propagate_down[i]:
                for gi in range(self.group):
                    matmul_into(weight[gi], col[gi * rg : (gi + 1) * rg],
                                x_t[gi * cg : (gi + 1) * cg])
                cn_to_nc_bias(x_t, _NO_BIAS, False, b.diff.reshape(n, self.channels, -1))


@register_layer("Im2col", "IM2COL")
class Im2colLayer(Layer):
    """Caffe type ``Im2col``: bottom (N, C, H, W) -> top (N, C*kh*kw, OH, OW).

    Top channel ``(c*kh + i)*kw + j`` holds input channel c seen through kernel tap (i, j), the
    row order of Caffe's im2col; OH and OW are the convolution output sizes (floor division).
    Reads convolution_param: kernel_size | kernel_h/w, pad | pad_h/w, stride | stride_h/w,
    dilation, axis.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.geometry = conv_geometry(self, bottom[0])

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes != 4:
            raise self.error(f"input must have 4 axes (N, C, H, W), found {bottom[0].shape}")
        n, c, h, w = bottom[0].shape
        g = self.geometry
        oh, ow = g.checked_conv_output(self, h, w)
        self.out_hw = (oh, ow)
        self.rows = c * g.kernel[0] * g.kernel[1]
        top[0].reshape((n, self.rows, oh, ow))
        self._col = self.scratch("col", (self.rows, n * oh * ow))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        n = bottom[0].shape[0]
        im2col_batch(bottom[0].data, *self.geometry.kernel_args(*self.out_hw), self._col)
        # The batch column matrix is (rows, N*OH*OW); the top wants it per image.
        cn_to_nc_bias(self._col, _NO_BIAS, False, top[0].data.reshape(n, self.rows, -1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        n = bottom[0].shape[0]
        nc_to_cn(top[0].diff.reshape(n, self.rows, -1), self._col)
        col2im_batch(self._col, *self.geometry.kernel_args(*self.out_hw), bottom[0].diff)
