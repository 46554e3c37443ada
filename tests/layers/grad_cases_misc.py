"""Gradient-check cases of Deconvolution, Im2col, SPP and the shape/lookup layers
(Crop, Tile, Reduction, ArgMax, Embed, Filter, BatchReindex, Parameter)."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from tests.gradient_check import build_layer, setup_forward
from tests.layers.grad_case import Case, NoGradient

FILL = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 }'


def _deconv(extra: str, bottoms: int = 1) -> str:
    bots = " ".join(f'bottom: "b{i}"' for i in range(bottoms))
    tops = " ".join(f'top: "t{i}"' for i in range(bottoms))
    return (f'name: "deconv" type: "Deconvolution" {bots} {tops} '
            f"convolution_param {{ {extra} {FILL} }}")


def _im2col(extra: str) -> str:
    return f'name: "im2col" type: "Im2col" bottom: "b" top: "t" convolution_param {{ {extra} }}'


def _spp(extra: str) -> str:
    return f'name: "spp" type: "SPP" bottom: "b" top: "t" spp_param {{ {extra} }}'


def _crop(extra: str = "") -> str:
    return f'name: "crop" type: "Crop" bottom: "x" bottom: "ref" top: "y" crop_param {{ {extra} }}'


def _reduction(extra: str) -> str:
    return f'name: "r" type: "Reduction" bottom: "x" top: "y" reduction_param {{ {extra} }}'


def _embed(extra: str) -> str:
    return (f'name: "embed" type: "Embed" bottom: "idx" top: "y" embed_param {{ {extra} '
            f"{FILL} }}")


def _argmax_has_no_gradient() -> None:
    layer = build_layer('type: "ArgMax" bottom: "x" top: "y"')
    bottom, top = [Blob((2, 4))], [Blob()]
    bottom[0].data[...] = np.arange(8).reshape(2, 4)
    setup_forward(layer, bottom, top)
    layer.backward(top, [False], bottom)  # nothing asked: fine
    with pytest.raises(Exception, match="(?i)gradient|backprop"):
        layer.backward(top, [True], bottom)


CASES: dict[str, list[Case] | NoGradient] = {
    "Deconvolution": [
        Case("k3_exhaustive", _deconv("num_output: 2 kernel_size: 3"), ((1, 2, 2, 2),)),
        Case("k3s2_pad1", _deconv("num_output: 3 kernel_size: 3 stride: 2 pad: 1"),
             ((2, 2, 3, 3),), mode="total"),
        Case("rect_hw", _deconv("num_output: 2 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 "
                                "pad_h: 1 pad_w: 0"), ((2, 3, 3, 2),), mode="total"),
        Case("group2", _deconv("num_output: 4 kernel_size: 2 stride: 2 group: 2"),
             ((2, 4, 2, 3),), mode="total"),
        Case("dilation2", _deconv("num_output: 2 kernel_size: 2 dilation: 2"),
             ((1, 2, 3, 3),), mode="total"),
        Case("no_bias", _deconv("num_output: 2 kernel_size: 2 stride: 2 bias_term: false"),
             ((2, 2, 2, 2),), mode="total"),
        Case("two_bottoms", _deconv("num_output: 2 kernel_size: 3 stride: 2", bottoms=2),
             ((2, 2, 2, 3), (2, 2, 2, 3)), mode="total"),
    ],
    "Im2col": [
        Case("k3", _im2col("kernel_size: 3"), ((1, 2, 4, 4),)),
        Case("k3s2_pad1", _im2col("kernel_size: 3 stride: 2 pad: 1"), ((1, 2, 5, 4),)),
        Case("rect_dilation",
             _im2col("kernel_h: 2 kernel_w: 3 dilation: 2 stride_h: 1 stride_w: 2"),
             ((1, 2, 5, 6),), mode="total"),
    ],
    "SPP": [
        Case("max_h3", _spp("pyramid_height: 3 pool: MAX"), ((1, 2, 6, 6),), data="distinct"),
        Case("max_rect_h2", _spp("pyramid_height: 2"), ((1, 2, 7, 5),), data="distinct"),
        Case("ave_h3", _spp("pyramid_height: 3 pool: AVE"), ((1, 2, 6, 6),)),
        Case("ave_rect_h2", _spp("pyramid_height: 2 pool: AVE"), ((1, 2, 7, 5),)),
        Case("max_h1", _spp("pyramid_height: 1"), ((2, 3, 3, 4),), data="distinct"),
    ],
    "Crop": [
        Case("default_axis2", _crop(), ((2, 3, 5, 4), (2, 3, 3, 2)), check_bottom=(0,)),
        Case("one_offset", _crop("axis: 1 offset: 1"), ((2, 4, 4, 4), (2, 2, 3, 2)),
             check_bottom=(0,)),
        Case("offsets_each", _crop("axis: -2 offset: 2 offset: 1"), ((2, 3, 5, 4), (1, 1, 2, 3)),
             check_bottom=(0,)),
        # The reference only gives a shape: its gradient is exactly zero.
        Case("reference_gets_zero", _crop("axis: 0"), ((3, 4), (2, 2)), mode="total"),
    ],
    "Tile": [
        Case("axis1", 'type: "Tile" bottom: "x" top: "y" tile_param { tiles: 3 }', ((2, 3, 2),)),
        Case("axis0", 'type: "Tile" bottom: "x" top: "y" tile_param { axis: 0 tiles: 2 }',
             ((2, 3),)),
        Case("axis-1", 'type: "Tile" bottom: "x" top: "y" tile_param { axis: -1 tiles: 4 }',
             ((2, 2, 2),)),
    ],
    "Reduction": [
        Case("sum_all", _reduction(""), ((2, 3, 2),)),
        Case("sum_axis1_coeff", _reduction("axis: 1 coeff: -1.5"), ((3, 2, 2),)),
        Case("asum", _reduction("operation: ASUM axis: 1"), ((2, 3, 2),), data="away"),
        Case("sumsq", _reduction("operation: SUMSQ axis: 2 coeff: 0.5"), ((2, 2, 3),)),
        Case("mean", _reduction("operation: MEAN axis: -1 coeff: 2"), ((2, 3, 4),)),
    ],
    "ArgMax": NoGradient("piecewise constant (indices and selected values); Caffe's Backward "
                         "is NOT_IMPLEMENTED", _argmax_has_no_gradient),
    "Embed": [
        Case("bias", _embed("num_output: 3 input_dim: 4"), ((2, 3),), check_bottom=(),
             labels={0: 4}),
        Case("no_bias_repeats", _embed("num_output: 2 input_dim: 3 bias_term: false"),
             ((7,),), check_bottom=(), labels={0: 3}),
    ],
    # The first reshape gives every top all N items (Caffe's quirk), so the exhaustive mode,
    # which counts top elements right after setup, does not apply: the total objective does.
    "Filter": [
        Case("two_filtered", 'type: "Filter" bottom: "a" bottom: "b" bottom: "sel" top: "fa" '
             'top: "fb"', ((6, 3), (6, 2, 2), (6,)), check_bottom=(0, 1), mode="total",
             labels={2: 2}),
        Case("selector_n111", 'type: "Filter" bottom: "a" bottom: "sel" top: "fa"',
             ((5, 2, 3), (5, 1, 1, 1)), check_bottom=(0,), mode="total", labels={1: 2}),
    ],
    "BatchReindex": [
        Case("repeats", 'type: "BatchReindex" bottom: "x" bottom: "idx" top: "y"',
             ((3, 2, 2), (5,)), check_bottom=(0,), labels={1: 3}),
        Case("1d", 'type: "BatchReindex" bottom: "x" bottom: "idx" top: "y"', ((4,), (6,)),
             check_bottom=(0,), labels={1: 4}),
    ],
    "Parameter": [
        Case("shape_2x3", 'type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 3 } '
             "}", ()),
    ],
}
