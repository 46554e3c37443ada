"""Pooling: MAX and AVE (and global), with Caffe's ceil rounding and padding rules."""

from __future__ import annotations

import math

import numba
import numpy as np

from ..blob import Blob
from ..kernels.pooling import (
    ave_pool_backward,
    ave_pool_forward,
    max_pool_backward,
    max_pool_forward,
    max_pool_forward_maskless,
)
from ..kernels.roi import (
    psroi_pool_backward,
    psroi_pool_forward,
    roi_pool_backward,
    roi_pool_forward,
)
from ..proto import caffe_pb2
from .base import Layer, register_layer

P = caffe_pb2.PoolingParameter


def row_buffer_shape(x_shape, top_shape, kw: int, sw: int, pw: int) -> tuple[int, int]:
    """The shape of max_pool_forward_maskless's padded row buffers, one per chunk of planes:
    four chunks per thread (two chunks on two threads ran 2x slower: one straggler waits)."""
    planes = x_shape[0] * x_shape[1]
    chunks = max(1, min(planes, 4 * numba.get_num_threads()))
    width, ow = x_shape[3], top_shape[3]
    return chunks, max(pw + width, (ow - 1) * sw + kw)


@register_layer("Pooling", "POOLING")
class PoolingLayer(Layer):
    """Caffe type ``Pooling``: bottom (N, C, H, W) -> top (N, C, PH, PW) [, MAX argmax mask].

    Reads pooling_param: pool (MAX, AVE; STOCHASTIC is GPU-only in Caffe), kernel_size |
    kernel_h/w, pad | pad_h/w, stride | stride_h/w, global_pooling, round_mode (CEIL default),
    and the ceil_mode forks' (BVLC PR #3057: DenseNet, OpenCV) ``ceil_mode: false``, which is
    ``round_mode: FLOOR``: the output size rounds down, padding rule unchanged.
    """

    exact_num_bottom_blobs = 1
    min_top_blobs = 1
    max_top_blobs = 2

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.pooling_param
        if p.pool == P.STOCHASTIC:
            raise self.error("STOCHASTIC pooling is not implemented on the CPU (as in Caffe)")
        if len(top) == 2 and p.pool != P.MAX:
            raise self.error("a second top (the argmax mask) is only produced by MAX pooling")
        self.global_pooling = p.global_pooling
        if p.global_pooling:
            if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
                raise self.error("with global_pooling: true the kernel size cannot be given")
        else:
            if p.HasField("kernel_size") == (p.HasField("kernel_h") or p.HasField("kernel_w")):
                raise self.error("give either kernel_size or kernel_h and kernel_w")
            if not p.HasField("kernel_size") and not (
                p.HasField("kernel_h") and p.HasField("kernel_w")
            ):
                raise self.error("both kernel_h and kernel_w are required")
        for name in ("pad", "stride"):
            h, w = p.HasField(f"{name}_h"), p.HasField(f"{name}_w")
            if p.HasField(name) and (h or w):
                raise self.error(f"give either {name} or {name}_h and {name}_w, not both")
            if h != w:
                raise self.error(f"{name}_h and {name}_w must be given together")
        if p.HasField("kernel_size"):
            self.kernel = (p.kernel_size, p.kernel_size)
        else:
            self.kernel = (p.kernel_h, p.kernel_w)
        self.pad = (p.pad_h, p.pad_w) if (p.HasField("pad_h") or p.HasField("pad_w")) else (
            p.pad, p.pad)
        if p.HasField("stride_h") or p.HasField("stride_w"):
            self.stride = (p.stride_h, p.stride_w)
        else:
            self.stride = (p.stride, p.stride)
        if self.global_pooling:
            if self.pad != (0, 0) or self.stride != (1, 1):
                raise self.error("with global_pooling: true only pad 0 and stride 1 are allowed")
        else:
            if min(self.kernel) <= 0:
                raise self.error(f"kernel size must be positive, found {self.kernel}")
            if self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]:
                raise self.error(f"pad {self.pad} must be smaller than the kernel {self.kernel}")
        if min(self.stride) <= 0:
            raise self.error(f"stride must be positive, found {self.stride}")
        self.floor_rounding = p.round_mode == P.FLOOR
        if p.HasField("ceil_mode"):
            if p.HasField("round_mode") and self.floor_rounding == p.ceil_mode:
                raise self.error(f"ceil_mode: {str(p.ceil_mode).lower()} contradicts "
                                 f"round_mode: {P.RoundMode.Name(p.round_mode)}; give one")
            self.floor_rounding = not p.ceil_mode

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes != 4:
            raise self.error(f"input must have 4 axes (N, C, H, W), found {bottom[0].shape}")
        n, c, h, w = bottom[0].shape
        if self.global_pooling:
            self.kernel = (h, w)
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        rounder = math.floor if self.floor_rounding else math.ceil
        # Caffe computes the ratio in float before rounding.
        oh = int(rounder(np.float32(h + 2 * ph - kh) / np.float32(sh))) + 1
        ow = int(rounder(np.float32(w + 2 * pw - kw) / np.float32(sw))) + 1
        if ph or pw:
            # Caffe drops the last window when it would start inside the padding.
            if (oh - 1) * sh >= h + ph:
                oh -= 1
            if (ow - 1) * sw >= w + pw:
                ow -= 1
        if oh <= 0 or ow <= 0:
            raise self.error(f"kernel {self.kernel} is larger than the padded input {h}x{w}")
        for t in top:
            t.reshape((n, c, oh, ow))
        if self.param.pooling_param.pool == P.MAX:
            mask = self.__dict__.get("_mask")
            if mask is None or mask.shape != (n, c, oh, ow):
                self._mask = np.empty((n, c, oh, ow), dtype=np.int32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        if self.param.pooling_param.pool == P.MAX:
            if len(top) == 1 and self.phase == caffe_pb2.TEST and kh * kw > 4:
                # A TEST net rarely runs backward: skip the argmax mask (2.5-4.4x faster over
                # 3x3 windows; over 2x2 ones the masked kernel's written-out windows are as
                # fast) and rebuild it from the bottom if a backward does come (pycaffe
                # saliency maps).
                rows = self.scratch("rows", row_buffer_shape(bottom[0].shape, top[0].shape,
                                                             kw, sw, pw))
                max_pool_forward_maskless(bottom[0].data, kh, kw, sh, sw, ph, pw,
                                          top[0].data, rows)
                self._mask_stale = True
                return
            max_pool_forward(bottom[0].data, kh, kw, sh, sw, ph, pw, top[0].data, self._mask)
            self._mask_stale = False
            if len(top) > 1:
                top[1].data[...] = self._mask
        else:
            ave_pool_forward(bottom[0].data, kh, kw, sh, sw, ph, pw, top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        if self.param.pooling_param.pool == P.MAX:
            if self.__dict__.get("_mask_stale", False):
                # The argmax Caffe's forward would have recorded, from the same bottom; the
                # recomputed maxima go to a scratch array so the top (which later layers
                # may have changed in place) is left alone.
                maxima = self.scratch("maxima", top[0].shape)
                max_pool_forward(bottom[0].data, kh, kw, sh, sw, ph, pw, maxima, self._mask)
                self._mask_stale = False
            max_pool_backward(top[0].diff, self._mask, bottom[0].diff)
        else:
            ave_pool_backward(top[0].diff, kh, kw, sh, sw, ph, pw, bottom[0].diff)


S = caffe_pb2.SPPParameter


def level_geometry(level: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Caffe's SPPLayer::GetPoolingParam: (kernel_h, kernel_w, pad_h, pad_w) of one level.

    Level ``i`` has ``2**i`` bins a side; the kernel (which is also the stride) is the size
    divided by the bins, rounded up, and half the shortfall (rounded up) is padded on each
    side. The Pooling layer's ceil rounding and its last-window rule then give the bins."""
    bins = 2**level
    out = []
    for size in (height, width):
        kernel = math.ceil(size / bins)
        remainder = kernel * bins - size
        out.append((kernel, (remainder + 1) // 2))
    (kh, ph), (kw, pw) = out
    return kh, kw, ph, pw


@register_layer("SPP")
class SPPLayer(Layer):
    """Caffe type ``SPP``: bottom (N, C, H, W) -> top (N, C * sum of each level's bins).

    Level ``i`` of ``pyramid_height`` max- or average-pools the whole image into about
    ``2**i x 2**i`` bins (see :func:`level_geometry`); each level's (N, C, bh, bw) output is
    flattened per item and the levels are concatenated in order. With ``pyramid_height: 1``
    Caffe hands the top straight to its one Pooling layer, so the top stays (N, C, 1, 1).
    Reads spp_param: pyramid_height (required), pool (MAX, AVE; STOCHASTIC is GPU-only).
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.spp_param
        self.height = int(p.pyramid_height)
        if self.height <= 0:
            raise self.error(f"pyramid_height must be given and positive, found {self.height}")
        if p.pool == S.STOCHASTIC:
            raise self.error("STOCHASTIC pooling is not implemented on the CPU (as in Caffe)")
        self.pool = P.MAX if p.pool == S.MAX else P.AVE
        self._built_for: tuple[int, ...] | None = None

    def _pooling_param(self, level: int, height: int, width: int) -> caffe_pb2.LayerParameter:
        kh, kw, ph, pw = level_geometry(level, height, width)
        if ph >= kh or pw >= kw:
            raise self.error(
                f"a {height}x{width} input is too small for pyramid level {level} "
                f"({2**level}x{2**level} bins): Caffe's pooling there would need pad "
                f"({ph}, {pw}) smaller than its kernel ({kh}, {kw})"
            )
        param = caffe_pb2.LayerParameter(name=f"{self.name}", type="Pooling",
                                         phase=self.phase)
        pp = param.pooling_param
        pp.pool = self.pool
        pp.kernel_h, pp.kernel_w = kh, kw
        pp.stride_h, pp.stride_w = kh, kw
        pp.pad_h, pp.pad_w = ph, pw
        return param

    def _build(self, bottom: Blob, top: Blob) -> None:
        """New Pooling layers for the bottom's size (Caffe rebuilds them on every new shape)."""
        n, c, h, w = bottom.shape
        if h <= 0 or w <= 0:
            raise self.error(f"input dimensions cannot be zero, found {bottom.shape}")
        self._pools: list[PoolingLayer] = []
        # Each level pools a Split-like view of the bottom: shared data, its own diff.
        self._inputs: list[Blob] = []
        self._outputs: list[Blob] = []
        for level in range(self.height):
            pool = PoolingLayer(self._pooling_param(level, h, w), self.ctx)
            if self.height == 1:
                src, dst = bottom, top
            else:
                src, dst = Blob(), Blob()
                src.reshape_like(bottom)
                src.share_data(bottom)
            pool.setup([src], [dst])
            self._pools.append(pool)
            self._inputs.append(src)
            self._outputs.append(dst)
        self._built_for = bottom.shape

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes != 4:
            raise self.error(f"input must have 4 axes (N, C, H, W), found {bottom[0].shape}")
        if bottom[0].shape != self._built_for:
            self._build(bottom[0], top[0])
        if self.height == 1:
            self._pools[0].reshape(bottom, top)
            return
        for pool, src, dst in zip(self._pools, self._inputs, self._outputs):
            if src.data is not bottom[0].data:
                src.share_data(bottom[0])
            pool.reshape([src], [dst])
        n = bottom[0].shape[0]
        self._widths = [dst.count // n if n else 0 for dst in self._outputs]
        top[0].reshape((n, sum(self._widths)))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if self.height == 1:
            self._pools[0].forward(bottom, top)
            return
        n = bottom[0].shape[0]
        offset = 0
        for pool, src, dst, width in zip(self._pools, self._inputs, self._outputs,
                                         self._widths):
            if src.data is not bottom[0].data:  # the bottom was reallocated since reshape
                src.share_data(bottom[0])
            pool.forward([src], [dst])
            top[0].data[:, offset : offset + width] = dst.data.reshape(n, width)
            offset += width

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        if self.height == 1:
            self._pools[0].backward(top, propagate_down, bottom)
            return
        n = bottom[0].shape[0]
        offset = 0
        for pool, src, dst, width in zip(self._pools, self._inputs, self._outputs,
                                         self._widths):
            dst.diff.reshape(n, width)[...] = top[0].diff[:, offset : offset + width]
            offset += width
            pool.backward([dst], [True], [src])
        # Caffe's Split backward: the first two levels added, then each further level.
        out = bottom[0].diff
        np.add(self._inputs[0].diff, self._inputs[1].diff, out=out)
        for src in self._inputs[2:]:
            out += src.diff


class _RoiLayer(Layer):
    """Two bottoms, feature map (N, C, H, W) and ROIs (R, 5) ``[batch, x1, y1, x2, y2]`` in
    input-image pixels; the ROIs never get a gradient."""

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1

    def check_bottoms(self, bottom: list[Blob]) -> None:
        if bottom[0].num_axes != 4:
            raise self.error(f"bottom 0 (the feature map) must be (N, C, H, W), found "
                             f"{bottom[0].shape}")
        rois = bottom[1]
        # Caffe reads the ROIs as num x (channels*height*width == 5).
        if rois.num_axes < 1 or rois.count_range(1) != 5:
            raise self.error(f"bottom 1 (the ROIs) must be R x 5 ([batch, x1, y1, x2, y2] per "
                             f"row), found {rois.shape}")

    def rois(self, bottom: list[Blob]) -> np.ndarray:
        """The ROIs as a contiguous (R, 5) array, with their batch indices checked."""
        rois = np.ascontiguousarray(bottom[1].data.reshape(-1, 5))
        if len(rois):
            batch = rois[:, 0].astype(np.int64)  # Caffe truncates the index to int
            bad = np.flatnonzero((batch < 0) | (batch >= bottom[0].shape[0]))
            if len(bad):
                i = int(bad[0])
                raise self.error(f"ROI {i} has batch index {rois[i, 0]:g}; the feature map "
                                 f"holds {bottom[0].shape[0]} image(s)")
        return rois

    def clear_roi_diff(self, propagate_down: list[bool], bottom: list[Blob]) -> None:
        # The box coordinates get no gradient (R-FCN's fork writes zeros there).
        if propagate_down[1]:
            bottom[1].diff[...] = 0

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index == 0


@register_layer("ROIPooling")
class ROIPoolingLayer(_RoiLayer):
    """Caffe type ``ROIPooling`` (rbgirshick/caffe-fast-rcnn): bottoms feature map
    (N, C, H, W) and ROIs (R, 5) -> top (R, C, pooled_h, pooled_w).

    Reads roi_pooling_param: pooled_h, pooled_w (both > 0), spatial_scale (default 1; the
    feature map's size over the image's, e.g. 1/16). Each ROI's corners are scaled and
    rounded (halves away from zero) to feature-map cells, the box (at least 1x1) is cut into
    pooled_h x pooled_w bins ``[floor(i * size / pooled), ceil((i + 1) * size / pooled))``,
    clipped to the map, and each bin takes its maximum (0 for a bin clipped away).
    Backward routes each bin's diff to its argmax, as the fork's kernel does.
    """

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.roi_pooling_param
        if p.pooled_h <= 0 or p.pooled_w <= 0:
            raise self.error(f"roi_pooling_param.pooled_h and pooled_w must be > 0, found "
                             f"{p.pooled_h} and {p.pooled_w}")
        self.pooled = (int(p.pooled_h), int(p.pooled_w))
        self.spatial_scale = np.float32(p.spatial_scale)
        self.ctx.logger.info("Spatial scale: %g", self.spatial_scale)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.check_bottoms(bottom)
        shape = (bottom[1].shape[0], bottom[0].shape[1], *self.pooled)
        top[0].reshape(shape)
        argmax = self.__dict__.get("_argmax")
        if argmax is None or argmax.shape != shape:
            self._argmax = np.full(shape, -1, dtype=np.int32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        roi_pool_forward(bottom[0].data, self.rois(bottom), self.spatial_scale, top[0].data,
                         self._argmax)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            roi_pool_backward(top[0].diff, self._argmax, self.rois(bottom), self.spatial_scale,
                              bottom[0].diff)
        self.clear_roi_diff(propagate_down, bottom)


@register_layer("PSROIPooling")
class PSROIPoolingLayer(_RoiLayer):
    """Caffe type ``PSROIPooling`` (daijifeng001/caffe-rfcn): bottoms score maps
    (N, output_dim * group_size^2, H, W) and ROIs (R, 5) -> top
    (R, output_dim, group_size, group_size).

    Reads psroi_pooling_param: spatial_scale, output_dim, group_size (all required by the
    fork's schema). Bin (i, j) of output channel k averages input channel
    ``(k * group_size + i) * group_size + j`` over the bin; the ROI is rounded to whole image
    pixels, scaled, widened to at least 0.1 and cut into group_size^2 equal bins whose edges
    are rounded outwards. Backward spreads each bin's diff evenly over its pixels (the fork's
    GPU backward; its CPU backward is not implemented).
    """

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.psroi_pooling_param
        if p.output_dim <= 0 or p.group_size <= 0:
            raise self.error(f"psroi_pooling_param.output_dim and group_size must be > 0, "
                             f"found {p.output_dim} and {p.group_size}")
        self.output_dim = int(p.output_dim)
        self.group = int(p.group_size)
        self.spatial_scale = np.float32(p.spatial_scale)
        self.ctx.logger.info("Spatial scale: %g", self.spatial_scale)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.check_bottoms(bottom)
        channels = bottom[0].shape[1]
        expected = self.output_dim * self.group * self.group
        if channels != expected:
            raise self.error(f"bottom 0 has {channels} channels; output_dim {self.output_dim} "
                             f"x group_size {self.group}^2 needs {expected}")
        top[0].reshape((bottom[1].shape[0], self.output_dim, self.group, self.group))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        psroi_pool_forward(bottom[0].data, self.rois(bottom), self.spatial_scale, self.group,
                           top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            psroi_pool_backward(top[0].diff, self.rois(bottom), self.spatial_scale, self.group,
                                bottom[0].diff)
        self.clear_roi_diff(propagate_down, bottom)
