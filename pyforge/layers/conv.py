"""Convolution: im2col over the whole minibatch and one BLAS GEMM per group."""

from __future__ import annotations

import numba
import numpy as np

from ..blob import Blob
from ..kernels.blas import single_threaded_blas
from ..kernels.conv import conv_backward, conv_forward
from ..proto import caffe_pb2
from .base import Layer, register_layer


def _spatial_values(layer: Layer, repeated, h_field: str, w_field: str, default: int,
                    conv: caffe_pb2.ConvolutionParameter, what: str) -> tuple[int, int]:
    """Caffe's repeated (1 or 2 values) or the _h/_w pair, never both.

    As in Caffe, setting only one of the pair leaves the other at its proto default (0 for
    pad; a 0 kernel or stride is then refused by the positivity checks)."""
    has_hw = conv.HasField(h_field) or conv.HasField(w_field)
    if has_hw:
        if len(repeated):
            raise layer.error(f"either {what} or {h_field}/{w_field} may be given, not both")
        return int(getattr(conv, h_field)), int(getattr(conv, w_field))
    values = list(repeated)
    if not values:
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise layer.error(f"{what} must have 1 or 2 values for a 2-D convolution, found {len(values)}")


def check_image_bottoms(layer: Layer, bottom: list[Blob], channels: int) -> tuple[int, ...]:
    """All bottoms of a (de)convolution must be N x channels x H x W and share one shape."""
    first = bottom[0].shape
    for i, b in enumerate(bottom):
        if b.num_axes != 4 or b.shape[1] != channels:
            raise layer.error(f"bottom {i} has shape {b.shape}; expected (N, {channels}, H, W)")
        if b.shape != first:
            raise layer.error(f"all bottoms need the same shape: {first} vs {b.shape}")
    return first


@register_layer("Convolution", "CONVOLUTION")
class ConvolutionLayer(Layer):
    """Caffe type ``Convolution``: bottoms (N, C, H, W) -> tops (N, num_output, OH, OW).

    Params: weight (num_output, C/group, kh, kw), bias (num_output) when ``bias_term``.
    Reads convolution_param: num_output, kernel_size|kernel_h/w, pad|pad_h/w, stride|stride_h/w,
    dilation, group, bias_term, weight_filler, bias_filler, axis. Several bottoms give as many
    tops, all convolved with the same weights.
    """

    min_bottom_blobs = 1
    min_top_blobs = 1
    equal_num_bottom_top_blobs = True

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        conv = self.param.convolution_param
        if conv.axis not in (1, -3) or bottom[0].num_axes != 4:
            raise self.error(
                f"supports 2-D convolution of (N, C, H, W) bottoms with axis 1; found a "
                f"{bottom[0].num_axes}-axis bottom {bottom[0].shape} and axis {conv.axis}"
            )
        if conv.force_nd_im2col:
            pass  # the N-D and 2-D im2col give identical results; 2-D is used.
        self.kernel = _spatial_values(self, conv.kernel_size, "kernel_h", "kernel_w", 0, conv,
                                      "kernel_size")
        if min(self.kernel) <= 0:
            raise self.error(f"kernel size must be positive, found {self.kernel}")
        self.pad = _spatial_values(self, conv.pad, "pad_h", "pad_w", 0, conv, "pad")
        self.stride = _spatial_values(self, conv.stride, "stride_h", "stride_w", 1, conv,
                                      "stride")
        if min(self.stride) <= 0:
            raise self.error(f"stride must be positive, found {self.stride}")
        dil = list(conv.dilation)
        if len(dil) > 2:
            raise self.error(f"dilation must have 1 or 2 values, found {len(dil)}")
        self.dilation = (dil[0], dil[-1]) if dil else (1, 1)
        self.group = int(conv.group)
        self.num_output = int(conv.num_output)
        channels = bottom[0].shape[1]
        if self.num_output <= 0:
            raise self.error("num_output must be given and positive")
        if self.group <= 0 or channels % self.group or self.num_output % self.group:
            raise self.error(
                f"group {self.group} must divide both the input channels ({channels}) and "
                f"num_output ({self.num_output})"
            )
        self.channels = channels
        self.bias_term = conv.bias_term
        weight_shape = (self.num_output, channels // self.group, *self.kernel)
        if self.blobs:
            return
        self.blobs = [self.make_param(weight_shape, conv.weight_filler, "weight_filler")]
        if self.bias_term:
            self.blobs.append(self.make_param((self.num_output,), conv.bias_filler, "bias_filler"))
        self.param_propagate_down = [True] * len(self.blobs)

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        outs = []
        for size, k, p, s, d in zip((height, width), self.kernel, self.pad, self.stride,
                                    self.dilation):
            extent = d * (k - 1) + 1
            outs.append((size + 2 * p - extent) // s + 1)
        return outs[0], outs[1]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        n, _, h, w = check_image_bottoms(self, bottom, self.channels)
        oh, ow = self.output_shape(h, w)
        if oh <= 0 or ow <= 0:
            raise self.error(
                f"kernel {self.kernel} with pad {self.pad} and dilation {self.dilation} is "
                f"larger than the input {h}x{w}"
            )
        self.out_hw = (oh, ow)
        for t in top:
            t.reshape((n, self.num_output, oh, ow))
        # Per-thread working buffers (see pyforge.kernels.conv); threads share the images.
        threads = max(1, min(n, numba.get_num_threads()))
        rows = self.channels * self.kernel[0] * self.kernel[1]
        self._cols = self._buffer("cols", (threads, rows, oh * ow))

    def _buffer(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        buffers = self.__dict__.setdefault("_buffers", {})
        buf = buffers.get(key)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, dtype=np.float32)
            buffers[key] = buf
        return buf

    def _geometry(self):
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = self.kernel, self.pad, self.stride, self.dilation
        oh, ow = self.out_hw
        return kh, kw, ph, pw, sh, sw, dh, dw, oh, ow

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        geom = self._geometry()
        g = self.group
        weight = self.blobs[0].data.reshape(g, self.num_output // g, -1)
        bias = self.blobs[1].data if self.bias_term else np.zeros(1, np.float32)
        with single_threaded_blas():
            for b, t in zip(bottom, top):
                conv_forward(b.data, weight, bias, self.bias_term, *geom, self._cols,
                             t.data.reshape(t.shape[0], g, self.num_output // g, -1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        geom = self._geometry()
        g = self.group
        weight = self.blobs[0].data.reshape(g, self.num_output // g, -1)
        threads = self._cols.shape[0]
        need_weight = bool(self.param_propagate_down[0])
        need_bias = bool(self.bias_term and self.param_propagate_down[1])
        # Weight-gradient partial sums are kept transposed, (G, K/G, M/G): see conv_backward.
        transposed = (g, weight.shape[2], weight.shape[1])
        dw_parts = self._buffer("dw_parts", (threads, *transposed))
        dw_tmp = self._buffer("dw_tmp", (threads, *transposed))
        db_parts = self._buffer("db_parts", (threads, g, self.num_output // g))
        dcols = self._buffer("dcols", self._cols.shape)
        for i, (b, t) in enumerate(zip(bottom, top)):
            if not (need_weight or need_bias or propagate_down[i]):
                continue
            dy = t.diff.reshape(t.shape[0], g, self.num_output // g, -1)
            with single_threaded_blas():
                conv_backward(b.data, weight, dy, *geom, need_weight, need_bias,
                              bool(propagate_down[i]), self._cols, dcols, dw_parts, dw_tmp,
                              db_parts, b.diff)
            # Per-thread sums, added in thread order: deterministic for a fixed thread count.
            if need_weight:
                weight_diff = self.blobs[0].diff.reshape(weight.shape)
                for part in dw_parts:
                    weight_diff += part.transpose(0, 2, 1)
            if need_bias:
                for part in db_parts:
                    self.blobs[1].diff += part.reshape(-1)
