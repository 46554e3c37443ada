"""Gradient-check cases of the pooling layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient


def _pool(extra: str, tops: int = 1) -> str:
    names = " ".join(f'top: "t{i}"' for i in range(tops))
    return f'name: "pool" type: "Pooling" bottom: "b" {names} pooling_param {{ {extra} }}'


def _spp(extra: str) -> str:
    return f'name: "spp" type: "SPP" bottom: "b" top: "t" spp_param {{ {extra} }}'


# [batch, x1, y1, x2, y2] in image pixels; with spatial_scale 0.5 the boxes on the 6x8 map are
# 4x6, 6x3, 4x6 hanging off the bottom (an empty bin) and 5x6 (overlapping bins).
ROI_BOXES = (0, 0, 0, 6, 10,
             1, 4, 2, 14, 6,
             0, 2, 6, 8, 16,
             1, 0, 0, 8, 10)


PSROI_BOXES = (0, 0, 0, 7, 9,
               1, 2, 3, 11, 11,
               0, 4, 2, 9, 13)


def _roi(extra: str) -> str:
    return (f'type: "ROIPooling" bottom: "data" bottom: "rois" top: "pool" '
            f"roi_pooling_param {{ {extra} }}")


def _psroi(extra: str) -> str:
    return (f'type: "PSROIPooling" bottom: "data" bottom: "rois" top: "pool" '
            f"psroi_pooling_param {{ {extra} }}")


CASES: dict[str, list[Case] | NoGradient] = {
    "Pooling": [
        Case("max_k3s2", _pool("pool: MAX kernel_size: 3 stride: 2"), ((2, 2, 7, 7),),
             data="distinct"),
        # ceil_mode: false (DenseNet forks) rounds the output size down: 6x6 -> 2x2, not 3x3.
        Case("max_k3s2_floor", _pool("pool: MAX kernel_size: 3 stride: 2 ceil_mode: false"),
             ((1, 2, 6, 6),), data="distinct"),
        Case("ave_k3s2_pad1_floor", _pool("pool: AVE kernel_size: 3 stride: 2 pad: 1 "
                                          "ceil_mode: false"), ((1, 2, 6, 7),)),
        Case("max_k3s2_pad1", _pool("pool: MAX kernel_size: 3 stride: 2 pad: 1"),
             ((1, 2, 7, 6),), data="distinct"),
        Case("max_k2s2_ceil", _pool("pool: MAX kernel_size: 2 stride: 2"), ((1, 2, 5, 5),),
             data="distinct"),
        Case("max_rect", _pool("pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1"),
             ((1, 2, 6, 5),), data="distinct"),
        # Caffe's own MAX test: gaussian data, small steps, loose threshold.
        Case("max_caffe_gaussian", _pool("pool: MAX kernel_size: 3 stride: 2 pad: 1"),
             ((2, 2, 5, 5),), stepsize=1e-4, threshold=1e-2),
        Case("max_with_mask_top", _pool("pool: MAX kernel_size: 2 stride: 1", tops=2),
             ((1, 2, 4, 4),), data="distinct"),
        Case("max_global", _pool("pool: MAX global_pooling: true"), ((2, 3, 3, 4),),
             data="distinct"),
        Case("ave_k3s2", _pool("pool: AVE kernel_size: 3 stride: 2"), ((2, 2, 7, 7),)),
        Case("ave_k3s2_pad1", _pool("pool: AVE kernel_size: 3 stride: 2 pad: 1"),
             ((1, 2, 7, 6),)),
        Case("ave_k2s2_pad1_drop", _pool("pool: AVE kernel_size: 2 stride: 2 pad: 1"),
             ((1, 2, 5, 5),)),
        Case("ave_rect_pad", _pool("pool: AVE kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 1 "
                                   "stride_h: 2 stride_w: 2"), ((1, 2, 5, 6),)),
        Case("ave_global", _pool("pool: AVE global_pooling: true"), ((2, 3, 3, 4),)),
        Case("ave_floor", _pool("pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR"),
             ((1, 2, 6, 6),)),
    ],
    "SPP": [
        Case("max_h3", _spp("pyramid_height: 3 pool: MAX"), ((1, 2, 6, 6),), data="distinct"),
        Case("max_rect_h2", _spp("pyramid_height: 2"), ((1, 2, 7, 5),), data="distinct"),
        Case("ave_h3", _spp("pyramid_height: 3 pool: AVE"), ((1, 2, 6, 6),)),
        Case("ave_rect_h2", _spp("pyramid_height: 2 pool: AVE"), ((1, 2, 7, 5),)),
        Case("max_h1", _spp("pyramid_height: 1"), ((2, 3, 3, 4),), data="distinct"),
    ],
    "ROIPooling": [
        Case("pooled_3x2", _roi("pooled_h: 3 pooled_w: 2 spatial_scale: 0.5"),
             ((2, 3, 6, 8), (4, 5)), check_bottom=(0,), data="distinct",
             fixed={1: ROI_BOXES}),
        Case("pooled_1x1_scale_1", _roi("pooled_h: 1 pooled_w: 1"),
             ((2, 2, 4, 5), (2, 5)), check_bottom=(0,), data="distinct",
             fixed={1: (0, 1, 0, 3, 2, 1, 0, 1, 4, 3)}),
    ],
    "PSROIPooling": [
        Case("group2", _psroi("spatial_scale: 0.5 output_dim: 2 group_size: 2"),
             ((2, 8, 6, 6), (3, 5)), check_bottom=(0,), fixed={1: PSROI_BOXES}),
        Case("group3_scale1", _psroi("spatial_scale: 1 output_dim: 1 group_size: 3"),
             ((1, 9, 5, 6), (2, 5)), check_bottom=(0,),
             fixed={1: (0, 0, 0, 5, 4, 0, 1, 1, 3, 2)}),
    ],
}
