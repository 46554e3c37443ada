"""Resampling layers of the segmentation forks: Interp (PSPNet, DeepLab) and Upsample
(SegNet, ENet)."""

from __future__ import annotations

from ..blob import Blob
from ..kernels.resample import (
    interp_backward,
    interp_forward,
    upsample_backward,
    upsample_forward,
)
from .base import Layer, register_layer


def _planes(array, height: int, width: int):
    """An (N, C, H, W) array as (N*C, H, W)."""
    return array.reshape(-1, height, width)


@register_layer("Interp")
class InterpLayer(Layer):
    """Caffe type ``Interp`` (hszhao/PSPNet, DeepLab v2): bottom (N, C, H, W) -> top
    (N, C, H', W'), resized bilinearly with the corners on the corners (source coordinate
    ``out_index * (in - 1) / (out - 1)``).

    Reads interp_param: pad_beg, pad_end (<= 0: crop that many pixels; the fork crops both
    axes by pad_beg at the start and by pad_end at the end), and the output size, in the
    fork's order of precedence: shrink_factor alone (``(in - 1) / s + 1``), zoom_factor alone
    (``in + (in - 1) * (z - 1)``), height and width, or shrink then zoom when both factors
    are given. ``in`` is the cropped size.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.interp_param
        self.pad_beg, self.pad_end = int(p.pad_beg), int(p.pad_end)
        if self.pad_beg > 0 or self.pad_end > 0:
            raise self.error(f"interp_param.pad_beg and pad_end must be <= 0 (the fork only "
                             f"crops), found {self.pad_beg} and {self.pad_end}")
        shrink, zoom = p.HasField("shrink_factor"), p.HasField("zoom_factor")
        if not (shrink or zoom or (p.HasField("height") and p.HasField("width"))):
            raise self.error("interp_param must give zoom_factor, shrink_factor, or height and "
                             "width")
        if (shrink and p.shrink_factor < 1) or (zoom and p.zoom_factor < 1):
            raise self.error(f"interp_param zoom_factor and shrink_factor must be >= 1, found "
                             f"{p.zoom_factor} and {p.shrink_factor}")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        p = self.param.interp_param
        shrink, zoom = p.HasField("shrink_factor"), p.HasField("zoom_factor")
        if shrink and not zoom:
            return (height - 1) // p.shrink_factor + 1, (width - 1) // p.shrink_factor + 1
        if zoom and not shrink:
            return height + (height - 1) * (p.zoom_factor - 1), width + (width - 1) * (
                p.zoom_factor - 1)
        if p.HasField("height") and p.HasField("width"):
            return int(p.height), int(p.width)
        h, w = (height - 1) // p.shrink_factor + 1, (width - 1) // p.shrink_factor + 1
        return h + (h - 1) * (p.zoom_factor - 1), w + (w - 1) * (p.zoom_factor - 1)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes != 4:
            raise self.error(f"the bottom must be (N, C, H, W), found {bottom[0].shape}")
        n, c, h, w = bottom[0].shape
        self.size_in = (h + self.pad_beg + self.pad_end, w + self.pad_beg + self.pad_end)
        if min(self.size_in) <= 0:
            raise self.error(f"pad_beg {self.pad_beg} and pad_end {self.pad_end} crop the whole "
                             f"{h}x{w} input")
        out = self.output_size(*self.size_in)
        if min(out) <= 0:
            raise self.error(f"the output size {out[0]}x{out[1]} must be positive")
        top[0].reshape((n, c, *out))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        h, w = bottom[0].shape[2:]
        interp_forward(_planes(bottom[0].data, h, w), -self.pad_beg, *self.size_in,
                       _planes(top[0].data, *top[0].shape[2:]))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            h, w = bottom[0].shape[2:]
            interp_backward(_planes(top[0].diff, *top[0].shape[2:]), -self.pad_beg,
                            *self.size_in, _planes(bottom[0].diff, h, w))


@register_layer("Upsample")
class UpsampleLayer(Layer):
    """Caffe type ``Upsample`` (alexgkendall/caffe-segnet, ENet): bottoms values (N, C, H, W)
    and the max-pooling mask (N, C, H, W) of the Pooling layer they undo (its second top:
    flat ``h * W + w`` indices into each plane of the pooling input) -> top
    (N, C, upsample_h, upsample_w), zero except where the mask points.

    Reads upsample_param: upsample_h and upsample_w (both > 1), or else scale (default 2) or
    scale_h and scale_w (> 1) with pad_out_h / pad_out_w (scale 2 only: one row/column less,
    for an odd-sized pooling input). Backward gathers the top diff at the mask.
    """

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.upsample_param
        self.size: tuple[int, int] | None = None
        if p.HasField("upsample_h") and p.HasField("upsample_w"):
            if p.upsample_h <= 1 or p.upsample_w <= 1:
                raise self.error(f"upsample_param.upsample_h and upsample_w must be > 1, found "
                                 f"{p.upsample_h} and {p.upsample_w}")
            self.size = (int(p.upsample_h), int(p.upsample_w))
            return
        if p.HasField("scale_h") != p.HasField("scale_w"):
            raise self.error("upsample_param: give upsample_h and upsample_w, or scale, or "
                             "scale_h and scale_w")
        if p.HasField("scale_h") and p.HasField("scale"):
            raise self.error("upsample_param: give scale or scale_h and scale_w, not both")
        self.scale = (p.scale_h, p.scale_w) if p.HasField("scale_h") else (p.scale, p.scale)
        if min(self.scale) <= 1:
            raise self.error(f"upsample_param scale must be > 1, found {self.scale}")
        self.pad_out = (int(p.pad_out_h), int(p.pad_out_w))
        for pad, scale, axis in zip(self.pad_out, self.scale, "hw"):
            if pad and scale != 2:
                raise self.error(f"upsample_param.pad_out_{axis} needs scale_{axis} == 2 (the "
                                 "output size is ill-defined otherwise)")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        values, mask = bottom
        if values.num_axes != 4:
            raise self.error(f"bottom 0 must be (N, C, H, W), found {values.shape}")
        if mask.shape != values.shape:
            raise self.error(f"bottom 1 (the pooling mask) must have bottom 0's shape "
                             f"{values.shape}, found {mask.shape}")
        n, c, h, w = values.shape
        if self.size is not None:
            out = self.size
        else:
            out = (h * self.scale[0] - self.pad_out[0], w * self.scale[1] - self.pad_out[1])
        top[0].reshape((n, c, *out))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        n, c, h, w = bottom[0].shape
        planes = n * c
        bad = upsample_forward(bottom[0].data.reshape(planes, h * w),
                               bottom[1].data.reshape(planes, h * w),
                               top[0].data.reshape(planes, -1))
        if bad >= 0:
            oh, ow = top[0].shape[2:]
            mask = bottom[1].data.reshape(planes, h * w)[bad]
            worst = mask[(mask < 0) | (mask >= oh * ow)][0]
            raise self.error(f"the mask (bottom 1) holds index {worst:g} in plane {bad}, outside "
                             f"the {oh}x{ow} output: the upsample size must match the input of "
                             "the pooling layer that made the mask")

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        n, c, h, w = bottom[0].shape
        planes = n * c
        if propagate_down[0]:
            upsample_backward(top[0].diff.reshape(planes, -1),
                              bottom[1].data.reshape(planes, h * w),
                              bottom[0].diff.reshape(planes, h * w))
        if propagate_down[1]:
            bottom[1].diff[...] = 0  # indices get no gradient

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index == 0
