"""Region-of-interest pooling: Fast R-CNN's ROIPooling and R-FCN's PSROIPooling."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels.roi import (
    psroi_pool_backward,
    psroi_pool_forward,
    roi_pool_backward,
    roi_pool_forward,
)
from .base import Layer, register_layer


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
