"""Deconvolution (the transpose of Convolution) and Im2col (im2col exposed as a layer).

Both reuse the convolution's kernels: Deconvolution's forward is a convolution's backward-data
(a GEMM with the transposed weight, then col2im) and its backward-data is a convolution's
forward (im2col, then a GEMM).
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels.im2col import cn_to_nc_bias, col2im_batch, im2col_batch, nc_to_cn
from ..proto import caffe_pb2
from .base import Layer, register_layer
from .conv import _spatial_values, check_image_bottoms

_NO_BIAS = np.zeros(1, dtype=np.float32)


def conv_geometry(layer: Layer, conv: caffe_pb2.ConvolutionParameter, bottom: Blob):
    """Kernel, pad, stride and dilation (each an (h, w) pair) of a 2-D convolution_param.

    The checks are Caffe's BaseConvolutionLayer/Im2colLayer LayerSetUp checks, for the 2-D
    (N, C, H, W) case with the channel axis 1, which is what pyforge supports."""
    if conv.axis not in (1, -3) or bottom.num_axes != 4:
        raise layer.error(
            f"supports 2-D (N, C, H, W) bottoms with axis 1; found a {bottom.num_axes}-axis "
            f"bottom {bottom.shape} and axis {conv.axis}"
        )
    kernel = _spatial_values(layer, conv.kernel_size, "kernel_h", "kernel_w", 0, conv,
                             "kernel_size")
    if min(kernel) <= 0:
        raise layer.error(f"kernel size must be positive, found {kernel}")
    pad = _spatial_values(layer, conv.pad, "pad_h", "pad_w", 0, conv, "pad")
    stride = _spatial_values(layer, conv.stride, "stride_h", "stride_w", 1, conv, "stride")
    if min(stride) <= 0:
        raise layer.error(f"stride must be positive, found {stride}")
    dil = [int(d) for d in conv.dilation]
    if len(dil) > 2:
        raise layer.error(f"dilation must have 1 or 2 values, found {len(dil)}")
    dilation = (dil[0], dil[-1]) if dil else (1, 1)
    if min(dilation) <= 0:
        raise layer.error(f"dilation must be positive, found {dilation}")
    return kernel, pad, stride, dilation


class _Buffers:
    """Float32 scratch arrays kept between passes, reallocated only when a shape changes."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._arrays.get(key)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, dtype=np.float32)
            self._arrays[key] = buf
        return buf


@register_layer("Deconvolution", "DECONVOLUTION")
class DeconvolutionLayer(Layer):
    """Caffe type ``Deconvolution``: bottoms (N, C, H, W) -> tops (N, num_output, OH, OW) with
    ``OH = stride * (H - 1) + dilation * (kernel - 1) + 1 - 2 * pad`` (likewise OW).

    Params: weight (C, num_output/group, kh, kw) -- the layout of a Convolution from num_output
    to C channels, so the two are transposes of each other on the same weights -- and bias
    (num_output) when ``bias_term``. Reads convolution_param: num_output, kernel_size |
    kernel_h/w, pad | pad_h/w, stride | stride_h/w, dilation, group, bias_term, weight_filler,
    bias_filler, axis. Several bottoms give as many tops, all with the same weights.
    """

    min_bottom_blobs = 1
    min_top_blobs = 1
    equal_num_bottom_top_blobs = True

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        conv = self.param.convolution_param
        self.kernel, self.pad, self.stride, self.dilation = conv_geometry(self, conv, bottom[0])
        self.num_output = int(conv.num_output)
        self.group = int(conv.group)
        self.channels = bottom[0].shape[1]
        if self.num_output <= 0:
            raise self.error("num_output must be given and positive")
        if self.group <= 0 or self.channels % self.group or self.num_output % self.group:
            raise self.error(
                f"group {self.group} must divide both the input channels ({self.channels}) and "
                f"num_output ({self.num_output})"
            )
        self.bias_term = conv.bias_term
        self._buffers = _Buffers()
        if self.blobs:
            return  # Caffe: "Skipping parameter initialization"
        # Caffe swaps the roles of input and output channels for a deconvolution
        # (reverse_dimensions): the weight is laid out as a convolution from num_output to C.
        weight_shape = (self.channels, self.num_output // self.group, *self.kernel)
        self.blobs = [self.make_param(weight_shape, conv.weight_filler, "weight_filler")]
        if self.bias_term:
            self.blobs.append(self.make_param((self.num_output,), conv.bias_filler, "bias_filler"))
        self.param_propagate_down = [True] * len(self.blobs)

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        outs = []
        for size, k, p, s, d in zip((height, width), self.kernel, self.pad, self.stride,
                                    self.dilation):
            outs.append(s * (size - 1) + d * (k - 1) + 1 - 2 * p)
        return outs[0], outs[1]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        n, _, h, w = check_image_bottoms(self, bottom, self.channels)
        oh, ow = self.output_shape(h, w)
        if oh <= 0 or ow <= 0:
            raise self.error(
                f"pad {self.pad} is too large: the output of a {h}x{w} input with kernel "
                f"{self.kernel}, stride {self.stride} and dilation {self.dilation} would be "
                f"{oh}x{ow}"
            )
        self.in_hw = (h, w)
        for t in top:
            t.reshape((n, self.num_output, oh, ow))
        rows = self.num_output * self.kernel[0] * self.kernel[1]
        self._col = self._buffers.get("col", (rows, n * h * w))
        self._x_t = self._buffers.get("x_t", (self.channels, n * h * w))

    def _geometry(self):
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = self.kernel, self.pad, self.stride, self.dilation
        h, w = self.in_hw  # the columns run over the (convolution-output sized) input grid
        return kh, kw, ph, pw, sh, sw, dh, dw, h, w

    def _grouped_weight(self, array: np.ndarray) -> np.ndarray:
        g = self.group
        return array.reshape(g, self.channels // g, -1)  # (g, C/g, num_output/g*kh*kw)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        geom = self._geometry()
        weight = self._grouped_weight(self.blobs[0].data)
        cg, rg = weight.shape[1], weight.shape[2]
        col, x_t = self._col, self._x_t
        for b, t in zip(bottom, top):
            n = b.shape[0]
            nc_to_cn(b.data.reshape(n, self.channels, -1), x_t)
            for gi in range(self.group):
                np.matmul(weight[gi].T, x_t[gi * cg : (gi + 1) * cg],
                          out=col[gi * rg : (gi + 1) * rg])
            col2im_batch(col, *geom, t.data)
            if self.bias_term:
                t.data += self.blobs[1].data[None, :, None, None]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        geom = self._geometry()
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
            im2col_batch(t.diff, *geom, col)
            if self.param_propagate_down[0]:
                nc_to_cn(b.data.reshape(n, self.channels, -1), x_t)
                for gi in range(self.group):
                    weight_diff[gi] += np.matmul(x_t[gi * cg : (gi + 1) * cg],
                                                 col[gi * rg : (gi + 1) * rg].T)
            if propagate_down[i]:
                for gi in range(self.group):
                    np.matmul(weight[gi], col[gi * rg : (gi + 1) * rg],
                              out=x_t[gi * cg : (gi + 1) * cg])
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
        conv = self.param.convolution_param
        self.kernel, self.pad, self.stride, self.dilation = conv_geometry(self, conv, bottom[0])
        self._buffers = _Buffers()

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes != 4:
            raise self.error(f"input must have 4 axes (N, C, H, W), found {bottom[0].shape}")
        n, c, h, w = bottom[0].shape
        outs = []
        for size, k, p, s, d in zip((h, w), self.kernel, self.pad, self.stride, self.dilation):
            outs.append((size + 2 * p - (d * (k - 1) + 1)) // s + 1)
        oh, ow = outs
        if oh <= 0 or ow <= 0:
            raise self.error(
                f"kernel {self.kernel} with pad {self.pad} and dilation {self.dilation} is "
                f"larger than the input {h}x{w}"
            )
        self.out_hw = (oh, ow)
        self.rows = c * self.kernel[0] * self.kernel[1]
        top[0].reshape((n, self.rows, oh, ow))
        self._col = self._buffers.get("col", (self.rows, n * oh * ow))

    def _geometry(self):
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = self.kernel, self.pad, self.stride, self.dilation
        oh, ow = self.out_hw
        return kh, kw, ph, pw, sh, sw, dh, dw, oh, ow

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        n = bottom[0].shape[0]
        im2col_batch(bottom[0].data, *self._geometry(), self._col)
        # The batch column matrix is (rows, N*OH*OW); the top wants it per image.
        cn_to_nc_bias(self._col, _NO_BIAS, False, top[0].data.reshape(n, self.rows, -1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        n = bottom[0].shape[0]
        nc_to_cn(top[0].diff.reshape(n, self.rows, -1), self._col)
        col2im_batch(self._col, *self._geometry(), bottom[0].diff)
