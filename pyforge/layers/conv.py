"""The convolution family: Convolution and the mobile forks' ConvolutionDepthwise here,
Deconvolution and Im2col in :mod:`pyforge.layers.deconv`.

All of them read their geometry (kernel, pad, stride, dilation) from ``convolution_param`` with
the same checks (:func:`conv_geometry`); Convolution and Deconvolution share their parameters,
group rules and bottom checks (:class:`BaseConvolutionLayer`) and differ in the direction of the
product: Deconvolution's forward is a convolution's backward-data and its backward-data is a
convolution's forward, on the same weight layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..blob import Blob
from ..config import single_threaded_blas
from ..kernels.blocks import add_reversed_parts
from ..kernels.conv import (
    POST_MEAN,
    POST_SCALE,
    POST_SHIFT,
    POST_STD,
    conv_backward,
    conv_backward_shifted,
    conv_forward,
    conv_forward_batched,
    conv_forward_shifted,
    conv_forward_tiled,
)
from ..kernels.depthwise import depthwise_backward, depthwise_forward
from ..proto import caffe_pb2
from .base import Layer, register_layer
from .blas import fortran_sgemm

_NO_BIAS = np.zeros(1, dtype=np.float32)
_NO_STACK = np.zeros((1, 0), dtype=np.float32)

#: Bytes of output tile one thread works on at a time in conv_forward_tiled (about a core's L2:
#: 512 KiB tiles made ResNet's 56x56 1x1 layers 12% slower), and the fewest columns of a tile
#: (narrower products lose more to BLAS's packing than the cache gains).
TILE_BYTES = 2 * 1024 * 1024
MIN_TILE = 512
#: Outputs of fewer pixels multiply several images at once, with at most STACK_BYTES of their
#: columns per thread (conv_forward_batched). Measured: 7x7 layers 1.05-1.3x faster, a 1x1
#: classifier 4.5x; 8x8 and 14x14 layers were slower (the copy costs more than BLAS gains).
BATCHED_BELOW = 64
STACK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ConvGeometry:
    """Kernel, pad, stride and dilation of a 2-D convolution, each an (h, w) pair."""

    kernel: tuple[int, int]
    pad: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]

    def conv_output(self, height: int, width: int) -> tuple[int, int]:
        """Caffe's convolution (and im2col) output size: floor division."""
        h, w = ((size + 2 * p - (d * (k - 1) + 1)) // s + 1 for size, k, p, s, d in
                zip((height, width), self.kernel, self.pad, self.stride, self.dilation))
        return h, w

    def checked_conv_output(self, layer: Layer, height: int, width: int) -> tuple[int, int]:
        """:meth:`conv_output`, or ``layer``'s error when the kernel does not fit the input."""
        oh, ow = self.conv_output(height, width)
        if oh <= 0 or ow <= 0:
            raise layer.error(
                f"kernel {self.kernel} with pad {self.pad} and dilation {self.dilation} is "
                f"larger than the input {height}x{width}"
            )
        return oh, ow

    def deconv_output(self, height: int, width: int) -> tuple[int, int]:
        """The input size of the convolution whose output is ``height`` x ``width``."""
        h, w = (s * (size - 1) + d * (k - 1) + 1 - 2 * p for size, k, p, s, d in
                zip((height, width), self.kernel, self.pad, self.stride, self.dilation))
        return h, w

    def kernel_args(self, out_h: int, out_w: int) -> tuple[int, ...]:
        """(kh, kw, ph, pw, sh, sw, dh, dw, out_h, out_w), the im2col kernels' arguments;
        ``out_*`` is the size of the convolution-output grid the columns run over."""
        return (*self.kernel, *self.pad, *self.stride, *self.dilation, out_h, out_w)


def _spatial_values(layer: Layer, conv: caffe_pb2.ConvolutionParameter, repeated: str,
                    h_field: str, w_field: str, default: int) -> tuple[int, int]:
    """Caffe's repeated field (1 or 2 values) or the _h/_w pair, never both.

    As in Caffe, setting only one of the pair leaves the other at its proto default (0 for
    pad; a 0 kernel or stride is then refused by the positivity checks)."""
    values = [int(v) for v in getattr(conv, repeated)]
    if conv.HasField(h_field) or conv.HasField(w_field):
        if values:
            raise layer.error(f"either {repeated} or {h_field}/{w_field} may be given, not both")
        return int(getattr(conv, h_field)), int(getattr(conv, w_field))
    if not values:
        return default, default
    if len(values) > 2:
        raise layer.error(f"{repeated} must have 1 or 2 values for a 2-D convolution, found "
                          f"{len(values)}")
    return values[0], values[-1]


def conv_geometry(layer: Layer, bottom: Blob) -> ConvGeometry:
    """The geometry of ``layer``'s convolution_param, with Caffe's BaseConvolutionLayer and
    Im2colLayer LayerSetUp checks for the 2-D (N, C, H, W) case with the channel axis 1,
    which is what pyforge supports."""
    conv = layer.param.convolution_param
    if conv.axis not in (1, -3) or bottom.num_axes != 4:
        raise layer.error(
            f"supports 2-D (N, C, H, W) bottoms with axis 1; found a {bottom.num_axes}-axis "
            f"bottom {bottom.shape} and axis {conv.axis}"
        )
    # force_nd_im2col: the N-D and 2-D im2col give identical results; 2-D is used.
    geometry = ConvGeometry(
        kernel=_spatial_values(layer, conv, "kernel_size", "kernel_h", "kernel_w", 0),
        pad=_spatial_values(layer, conv, "pad", "pad_h", "pad_w", 0),
        stride=_spatial_values(layer, conv, "stride", "stride_h", "stride_w", 1),
        dilation=_dilation(layer, conv),
    )
    for name in ("kernel", "stride", "dilation"):
        if min(getattr(geometry, name)) <= 0:
            raise layer.error(f"{name} must be positive, found {getattr(geometry, name)}")
    return geometry


def _dilation(layer: Layer, conv: caffe_pb2.ConvolutionParameter) -> tuple[int, int]:
    # Caffe has no dilation_h/dilation_w fields: only the repeated dilation.
    values = [int(d) for d in conv.dilation]
    if len(values) > 2:
        raise layer.error(f"dilation must have 1 or 2 values, found {len(values)}")
    return (values[0], values[-1]) if values else (1, 1)


class BaseConvolutionLayer(Layer):
    """What Convolution and Deconvolution share (Caffe's BaseConvolutionLayer): the geometry,
    ``num_output`` and ``group`` with their checks, the weight and bias blobs, and several
    bottoms of one shape, each giving its own top with the same weights.

    Params: weight (num_output, C/group, kh, kw) for a convolution; a deconvolution swaps the
    roles of input and output channels (Caffe's reverse_dimensions): (C, num_output/group, kh,
    kw), the layout of a convolution from num_output to C channels, so the two layers are
    transposes of each other on the same weights. Bias (num_output) when ``bias_term``.
    Reads convolution_param: num_output, kernel_size | kernel_h/w, pad | pad_h/w, stride |
    stride_h/w, dilation, group, bias_term, weight_filler, bias_filler, axis.
    """

    min_bottom_blobs = 1
    min_top_blobs = 1
    equal_num_bottom_top_blobs = True
    #: Deconvolution: the weight is laid out as a convolution from num_output to C channels.
    reverse_dimensions = False

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        conv = self.param.convolution_param
        self.geometry = conv_geometry(self, bottom[0])
        self.kernel = self.geometry.kernel
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
        if self.blobs:
            return  # Caffe: "Skipping parameter initialization"
        if self.reverse_dimensions:
            weight_shape = (self.channels, self.num_output // self.group, *self.kernel)
        else:
            weight_shape = (self.num_output, self.channels // self.group, *self.kernel)
        self.blobs = [self.make_param(weight_shape, conv.weight_filler, "weight_filler")]
        if self.bias_term:
            self.blobs.append(self.make_param((self.num_output,), conv.bias_filler, "bias_filler"))
        self.param_propagate_down = [True] * len(self.blobs)

    def check_bottoms(self, bottom: list[Blob]) -> tuple[int, ...]:
        """All bottoms must be N x channels x H x W and share one shape; returns it."""
        first = bottom[0].shape
        for i, b in enumerate(bottom):
            if b.num_axes != 4 or b.shape[1] != self.channels:
                raise self.error(f"bottom {i} has shape {b.shape}; expected (N, {self.channels}, "
                                 "H, W)")
            if b.shape != first:
                raise self.error(f"all bottoms need the same shape: {first} vs {b.shape}")
        return first


@dataclass
class Epilogue:
    """In-place layers run inside the convolution's own pass (see :mod:`pyforge.net.fusion`):
    BatchNorm with stored statistics (``mean``, ``std``), Scale (``scale``, ``shift``) and
    ReLU (``slope``), each None when absent; ``kept`` receives the values entering Scale (its
    backward's input), or None when no backward will need them."""

    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    slope: float | None = None
    kept: np.ndarray | None = None
    #: Where the followers' result goes: the first follower's top when it is a new blob, or
    #: the Concat's top that blob goes into, None when they all work in place on the
    #: convolution's output.
    dst: np.ndarray | None = None
    #: The first channel of ``dst`` the result fills (the blob's place in the Concat).
    dst_channel: int = 0
    #: Leave the convolution's own output unwritten (only with ``dst``): the net computes it
    #: again if anyone reads it (see :mod:`pyforge.net.fusion`).
    elide: bool = False

    def arguments(self, batch: int, channels: int) -> tuple:
        """The kernels' epilogue arguments (``post`` rows, flags, slope, kept); the kernels
        take ``dst`` (or the output itself) after them."""
        post = np.zeros((4, channels), np.float32)
        for row, values in ((POST_MEAN, self.mean), (POST_STD, self.std),
                            (POST_SCALE, self.scale), (POST_SHIFT, self.shift)):
            if values is not None:
                post[row] = values
        keep = self.kept is not None
        kept = self.kept if keep else np.empty((batch, channels, 0, 1), np.float32)
        return (post, self.mean is not None, keep, self.scale is not None,
                self.shift is not None, self.slope is not None,
                np.float32(self.slope or 0.0), kept)


def _no_epilogue(batch: int, layer: BaseConvolutionLayer) -> tuple:
    return Epilogue().arguments(batch, layer.num_output)


@register_layer("Convolution", "CONVOLUTION")
class ConvolutionLayer(BaseConvolutionLayer):
    """Caffe type ``Convolution``: bottoms (N, C, H, W) -> tops (N, num_output, OH, OW) with
    ``OH = (H + 2*pad - dilation*(kernel-1) - 1) // stride + 1`` (likewise OW).

    Image by image in Numba threads, each with a cache-sized column buffer and one
    single-threaded BLAS GEMM per group; 1x1 convolutions with stride 1 and no padding multiply
    the image itself, and depthwise ones (``group`` = channels > 1) run as direct stencils (see
    :mod:`pyforge.kernels.conv`).
    """

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        n, _, h, w = self.check_bottoms(bottom)
        g = self.geometry
        oh, ow = g.checked_conv_output(self, h, w)
        self.out_hw = (oh, ow)
        for t in top:
            t.reshape((n, self.num_output, oh, ow))
        self.depthwise = self.group == self.channels > 1
        self.pointwise = g.kernel == (1, 1) and g.stride == (1, 1) and g.pad == (0, 0)
        # Per-thread column buffers (see pyforge.kernels.conv); threads share the images.
        threads = max(1, min(n, numba.get_num_threads()))
        rows = 0 if self.pointwise or self.depthwise else self.channels * g.kernel[0] * g.kernel[1]
        self._cols = self.scratch("cols", (threads, rows, oh * ow))
        self.shifted = self._forward_by_shifted_taps(oh, ow)
        # One-group convolutions compute a tile of output columns at a time
        # (conv_forward_tiled), about a core's L2 of output (TILE_BYTES).
        self.tiled = self.group == 1 and not self.depthwise and not self.shifted
        self.images_per_product = 1
        if self.tiled:
            tile = max(MIN_TILE, TILE_BYTES // (4 * self.num_output) // 16 * 16)
            # Outputs narrower than BLAS's kernels like: the columns of several images side
            # by side in one product (conv_forward_batched), within MIN_TILE columns and
            # STACK_BYTES.
            k, spatial = rows or self.channels, oh * ow
            per = min(MIN_TILE // spatial, -(-n // threads), STACK_BYTES // (4 * k * spatial))
            if spatial < BATCHED_BELOW and per >= 2:
                self.images_per_product = per
                self._stacks = self.scratch("stacks", (threads, k * per * spatial))
            width = per * spatial if self.images_per_product > 1 else min(tile, spatial)
            self._tiles = self.scratch("tiles", (threads, self.num_output * width))

    @property
    def can_elide(self) -> bool:
        """Whether forward can leave its output unwritten (``Epilogue.elide``)."""
        return self.depthwise or self.shifted or self.tiled

    def _forward_by_shifted_taps(self, oh: int, ow: int) -> bool:
        """Whether forward skips im2col (conv_forward_shifted): stride 1, one group, kernels
        up to 3x3 over at least 14x14 outputs and 32 channels. Measured on this project's
        2-core machine, it is 10-28% faster there (ResNet-50's 3x3 layers at 56, 28 and 14
        pixels, GoogLeNet's 3x3 layers); 5x5 kernels, 7x7 or 13x13 outputs and 16 channels
        gained nothing or lost."""
        g = self.geometry
        return (not self.pointwise and not self.depthwise and self.group == 1
                and g.stride == (1, 1) and max(g.kernel) <= 3 and oh * ow >= 196
                and self.channels >= 32)

    def _shifted_buffers(self, weights: np.ndarray, h: int, w: int) -> tuple[np.ndarray, ...]:
        """The (kh*kw, M, C) weight taps, per-thread padded images and per-thread outputs
        over the padded width, for conv_forward_shifted."""
        g = self.geometry
        (kh, kw), (ph, pw), (_, dw) = g.kernel, g.pad, g.dilation
        oh, wp = self.out_hw[0], w + 2 * pw
        plane = (h + 2 * ph) * wp + (kw - 1) * dw  # the last tap reads past the last row
        threads = self._cols.shape[0]
        taps = self.scratch("taps", (kh * kw, self.num_output, self.channels))
        taps[...] = weights.reshape(self.num_output, self.channels, kh * kw).transpose(2, 0, 1)
        pads = self.scratch("pads", (threads, self.channels * plane))
        parts = self.scratch("parts", (threads, self.num_output, oh * wp))
        return taps, pads, parts

    def forward(self, bottom: list[Blob], top: list[Blob], epilogue: Epilogue | None = None,
                params: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """The convolution; with an ``epilogue`` also the in-place layers that follow it
        (see :mod:`pyforge.net.fusion`), applied to each image while it is in cache.
        ``params`` (weights, bias) replace the layer's own: the copies :meth:`frozen_params`
        took for a recompute."""
        weights, bias = params if params is not None else (
            self.blobs[0].data, self.blobs[1].data if self.bias_term else _NO_BIAS)
        n = bottom[0].shape[0]
        post = epilogue.arguments(n, self.num_output) if epilogue else _no_epilogue(n, self)
        store = epilogue is None or not epilogue.elide
        if self.depthwise:
            g = self.geometry
            weight = weights.reshape(self.num_output, *g.kernel)
            pads = self._depthwise_buffers(bottom[0].shape)
            for b, t in zip(bottom, top):
                out, dst = self._destinations(t, epilogue)
                depthwise_forward(b.data, weight, bias, self.bias_term, *g.pad, *g.stride,
                                  *g.dilation, pads, store, out, *post, *dst)
            return
        args = self.geometry.kernel_args(*self.out_hw)
        groups = self.group
        weight = weights.reshape(groups, self.num_output // groups, -1)
        if self.shifted:
            g = self.geometry
            taps, pads, parts = self._shifted_buffers(weights, *bottom[0].shape[2:])
            # output rows per product: about TILE_BYTES of result, as the tiled forward
            wp = bottom[0].shape[3] + 2 * g.pad[1]
            band = max(1, TILE_BYTES // (4 * self.num_output) // wp)
        with single_threaded_blas():
            for b, t in zip(bottom, top):
                out, dst = self._destinations(t, epilogue)
                out = out.reshape(t.shape[0], groups, self.num_output // groups, -1)
                if self.shifted:
                    conv_forward_shifted(b.data, taps, bias, self.bias_term, *g.kernel, *g.pad,
                                         *g.dilation, *self.out_hw, fortran_sgemm(), pads,
                                         parts, band, store, out, *post, *dst)
                elif self.images_per_product > 1:
                    conv_forward_batched(b.data, weight[0], bias, self.bias_term, *args,
                                         self.pointwise, fortran_sgemm(), self._cols,
                                         self._stacks, self._tiles, store, out, *post,
                                         *dst)
                elif self.tiled:
                    conv_forward_tiled(b.data, weight[0], bias, self.bias_term, *args,
                                       self.pointwise, fortran_sgemm(), self._cols,
                                       self._tiles, store, out, *post, *dst)
                else:
                    conv_forward(b.data, weight, bias, self.bias_term, *args, self.pointwise,
                                 fortran_sgemm(), self._cols, out, *post, *dst)

    def frozen_params(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the weights and bias as they are now, for a recompute of an elided
        output after they may have changed (a solver step, net surgery); kept in the layer's
        scratch, so the next copy replaces them."""
        weights = self.scratch("frozen_weights", self.blobs[0].shape)
        weights[...] = self.blobs[0].data
        if not self.bias_term:
            return weights, _NO_BIAS
        bias = self.scratch("frozen_bias", self.blobs[1].shape)
        bias[...] = self.blobs[1].data
        return weights, bias

    @staticmethod
    def _destinations(top: Blob, epilogue: Epilogue | None
                      ) -> tuple[np.ndarray, tuple[np.ndarray, int]]:
        """The convolution's output array, and where its followers write: the array and its
        first channel. The output is taken without counting as a read of it
        (:meth:`Blob.output_array`): it is about to be overwritten, or left alone when
        elided."""
        out = top.output_array()
        if epilogue is None or epilogue.dst is None:
            return out, (out, 0)
        return out, (epilogue.dst, epilogue.dst_channel)

    def _depthwise_buffers(self, shape: tuple[int, ...]) -> np.ndarray:
        """Per-thread room for a zero-padded plane, its flat result and an output plane
        (depthwise_forward)."""
        n, _, h, w = shape
        (ph, pw), (oh, ow) = self.geometry.pad, self.out_hw
        hp, wp = h + 2 * ph, w + 2 * pw
        threads = max(1, min(n * self.num_output, numba.get_num_threads()))
        # the padded plane and flat result, or the split columns of a stride-2 stencil
        work = max(hp * wp + (oh - 1) * wp + ow, (2 * h + 1) * (ow + 1))
        return self.scratch("pads", (threads, work + oh * ow))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        need_weight = bool(self.param_propagate_down[0])
        need_bias = bool(self.bias_term and self.param_propagate_down[1])
        if self.depthwise:
            self._depthwise_backward(top, propagate_down, bottom, need_weight, need_bias)
            return
        if self.shifted:
            self._shifted_backward(top, propagate_down, bottom, need_weight, need_bias)
            return
        args = self.geometry.kernel_args(*self.out_hw)
        g = self.group
        weight = self.blobs[0].data.reshape(g, self.num_output // g, -1)
        threads = self._cols.shape[0]
        # Weight-gradient partial sums are kept transposed, (G, K/G, M/G): see conv_backward.
        transposed = (g, weight.shape[2], weight.shape[1])
        dw_parts = self.scratch("dw_parts", (threads, *transposed))
        dw_tmp = self.scratch("dw_tmp", (threads, *transposed))
        db_parts = self.scratch("db_parts", (threads, g, self.num_output // g))
        dcols = self.scratch("dcols", self._cols.shape)
        # Small outputs: the weight and data gradients of several images per product.
        per = self.images_per_product
        stacks = self._stacks if per > 1 else _NO_STACK
        dy_stacks = self.scratch("dy_stacks", (threads, self.num_output * per * self.out_hw[0]
                                               * self.out_hw[1] if per > 1 else 0))
        for i, (b, t) in enumerate(zip(bottom, top)):
            if not (need_weight or need_bias or propagate_down[i]):
                continue
            dy = t.diff.reshape(t.shape[0], g, self.num_output // g, -1)
            with single_threaded_blas():
                conv_backward(b.data, weight, dy, *args, self.pointwise, fortran_sgemm(),
                              need_weight, need_bias, bool(propagate_down[i]), self._cols,
                              dcols, dw_parts, dw_tmp, db_parts, stacks, dy_stacks, b.diff)
            if need_weight:
                # each group's parts are (threads, K/G, M/G): its (M/G, K/G) diff reversed
                diff = self.blobs[0].diff.reshape(weight.shape)
                for group in range(g):
                    add_reversed_parts(dw_parts[:, group, :, None, :], diff[group, :, None, :])
            self._add_thread_sums(None, need_bias, db_parts)

    def _add_thread_sums(self, weight_parts: np.ndarray, need_bias: bool,
                         bias_parts: np.ndarray) -> None:
        """Add the per-thread weight sums (``weight_parts``: threads, then the weight diff's
        axes reversed, as the kernels keep them; None when not asked) and bias sums into the
        diffs, in thread order: deterministic for a fixed thread count."""
        if weight_parts is not None:
            add_reversed_parts(weight_parts, self.blobs[0].diff.reshape(
                weight_parts.shape[3], weight_parts.shape[2], weight_parts.shape[1]))
        if need_bias:
            for part in bias_parts:
                self.blobs[1].diff += part.reshape(-1)

    def _shifted_backward(self, top: list[Blob], propagate_down: list[bool],
                          bottom: list[Blob], need_weight: bool, need_bias: bool) -> None:
        """conv_backward_shifted: the backward of the layers conv_forward_shifted runs."""
        g = self.geometry
        (kh, kw), (oh, ow) = g.kernel, self.out_hw
        threads = self._cols.shape[0]
        # The forward's output buffers hold the top gradient spread over the padded width.
        taps, pads, wides = self._shifted_buffers(self.blobs[0].data, *bottom[0].shape[2:])
        dtaps = self.scratch("dtaps", (threads, kh * kw, self.channels, self.num_output))
        db_parts = self.scratch("db_parts", (threads, 1, self.num_output))
        for i, (b, t) in enumerate(zip(bottom, top)):
            if not (need_weight or need_bias or propagate_down[i]):
                continue
            dy = t.diff.reshape(t.shape[0], 1, self.num_output, -1)
            with single_threaded_blas():
                conv_backward_shifted(b.data, taps, dy, kh, kw, *g.pad, *g.dilation, oh, ow,
                                      fortran_sgemm(), need_weight, need_bias,
                                      bool(propagate_down[i]), pads, wides, dtaps, db_parts,
                                      b.diff)
            # dtaps are (threads, kh*kw, C, M): the weight diff's (M, C, kh*kw) reversed
            self._add_thread_sums(dtaps if need_weight else None, need_bias, db_parts)

    def _depthwise_backward(self, top: list[Blob], propagate_down: list[bool],
                            bottom: list[Blob], need_weight: bool, need_bias: bool) -> None:
        g = self.geometry
        weight = self.blobs[0].data.reshape(self.num_output, *g.kernel)
        n = bottom[0].shape[0]
        dw_planes = self.scratch("dw_planes", (n, *weight.shape))
        db_planes = self.scratch("db_planes", (n, self.num_output))
        for i, (b, t) in enumerate(zip(bottom, top)):
            if not (need_weight or need_bias or propagate_down[i]):
                continue
            depthwise_backward(b.data, weight, t.diff, *g.pad, *g.stride, *g.dilation,
                               need_weight, need_bias, bool(propagate_down[i]), dw_planes,
                               db_planes, b.diff)
            # Summed over the images in order: the same bits for any thread count.
            if need_weight:
                self.blobs[0].diff += dw_planes.sum(axis=0).reshape(self.blobs[0].shape)
            if need_bias:
                self.blobs[1].diff += db_planes.sum(axis=0)


@register_layer("ConvolutionDepthwise")
class ConvolutionDepthwiseLayer(ConvolutionLayer):
    """Caffe type ``ConvolutionDepthwise`` (the ShuffleNet and MobileNet forks' conv_dw_layer):
    bottom (N, C, H, W) -> top (N, C, OH, OW), each channel convolved with its own
    kh x kw filter. Params: weight (C, 1, kh, kw), bias (C) when ``bias_term``.

    Reads convolution_param as Convolution does, except that the fork forces the group and
    the number of outputs to the input's channels: ``group`` and ``num_output`` are ignored
    (a differing ``num_output`` is logged).
    """

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes != 4:
            raise self.error(f"the bottom must be (N, C, H, W), found {bottom[0].shape}")
        channels = bottom[0].shape[1]
        given = self.param.convolution_param
        if given.HasField("num_output") and given.num_output != channels:
            self.ctx.logger.warning(
                "%s: num_output %d ignored: a depthwise convolution has one output per input "
                "channel (%d)", self.where, given.num_output, channels)
        # Convolution reads its settings from self.param: give it a copy with the group and
        # outputs forced, and keep the prototxt's own parameter for everything else.
        original = self.param
        forced = caffe_pb2.LayerParameter()
        forced.CopyFrom(original)
        forced.convolution_param.group = channels
        forced.convolution_param.num_output = channels
        self.param = forced
        try:
            super().layer_setup(bottom, top)
        finally:
            self.param = original
