"""Gradient-check cases of the conv layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient

IP = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 }'


CONV = IP


def _conv(extra: str, bottoms: int = 1) -> str:
    bots = " ".join(f'bottom: "b{i}"' for i in range(bottoms))
    tops = " ".join(f'top: "t{i}"' for i in range(bottoms))
    return (f'name: "conv" type: "Convolution" {bots} {tops} '
            f"convolution_param {{ {extra} {CONV} }}")


FILL = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 }'


def _deconv(extra: str, bottoms: int = 1) -> str:
    bots = " ".join(f'bottom: "b{i}"' for i in range(bottoms))
    tops = " ".join(f'top: "t{i}"' for i in range(bottoms))
    return (f'name: "deconv" type: "Deconvolution" {bots} {tops} '
            f"convolution_param {{ {extra} {FILL} }}")


def _im2col(extra: str) -> str:
    return f'name: "im2col" type: "Im2col" bottom: "b" top: "t" convolution_param {{ {extra} }}'


FILLERS = ('weight_filler { type: "gaussian" std: 0.5 } '
           'bias_filler { type: "gaussian" std: 0.5 }')


def _depthwise(extra: str) -> str:
    return (f'type: "ConvolutionDepthwise" bottom: "x" top: "y" '
            f"convolution_param {{ {extra} {FILLERS} }}")


CASES: dict[str, list[Case] | NoGradient] = {
    "Convolution": [
        Case("small_exhaustive", _conv("num_output: 2 kernel_size: 2"), ((1, 2, 3, 3),)),
        Case("k3", _conv("num_output: 3 kernel_size: 3"), ((2, 3, 5, 4),), mode="total"),
        Case("pad_stride", _conv("num_output: 3 kernel_size: 3 pad: 1 stride: 2"),
             ((2, 3, 6, 5),), mode="total"),
        Case("dilation", _conv("num_output: 2 kernel_size: 3 dilation: 2 pad: 1"),
             ((2, 2, 6, 6),), mode="total"),
        Case("group", _conv("num_output: 4 kernel_size: 3 group: 2 pad: 1"),
             ((2, 4, 4, 4),), mode="total"),
        Case("depthwise", _conv("num_output: 3 kernel_size: 2 group: 3"),
             ((2, 3, 4, 3),), mode="total"),
        Case("no_bias", _conv("num_output: 3 kernel_size: 3 bias_term: false"),
             ((2, 2, 4, 4),), mode="total"),
        Case("hw_fields", _conv("num_output: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 "
                                "stride_h: 2 stride_w: 1"), ((2, 2, 5, 4),), mode="total"),
        Case("two_bottoms", _conv("num_output: 2 kernel_size: 3 pad: 1", bottoms=2),
             ((2, 2, 4, 3), (2, 2, 4, 3)), mode="total"),
        Case("kernel_1x1", _conv("num_output: 3 kernel_size: 1"), ((2, 4, 3, 3),),
             mode="total"),
        Case("pointwise_group", _conv("num_output: 4 kernel_size: 1 group: 2"),
             ((2, 4, 3, 2),), mode="total"),
        Case("depthwise_pad_stride", _conv("num_output: 3 kernel_size: 3 pad: 1 stride: 2 "
                                           "group: 3"), ((2, 3, 5, 4),), mode="total"),
        Case("depthwise_mult2_dilated", _conv("num_output: 4 kernel_size: 2 dilation: 2 pad: 1 "
                                              "group: 2"), ((2, 2, 4, 5),), mode="total"),
        Case("depthwise_exhaustive", _conv("num_output: 2 kernel_size: 3 pad: 1 group: 2"),
             ((1, 2, 3, 3),)),
        # Small outputs and 5-6 images: several images per product (conv_forward_batched
        # and the batched weight gradient of conv_backward).
        Case("images_side_by_side", _conv("num_output: 3 kernel_size: 3 pad: 1"),
             ((5, 2, 4, 4),), mode="total"),
        Case("pointwise_images_side_by_side", _conv("num_output: 3 kernel_size: 1"),
             ((6, 3, 3, 3),), mode="total"),
    ],
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
    "ConvolutionDepthwise": [
        Case("k3_pad1", _depthwise("num_output: 3 kernel_size: 3 pad: 1"), ((2, 3, 4, 5),),
             mode="total"),
        Case("k3_stride2", _depthwise("num_output: 4 kernel_size: 3 stride: 2"),
             ((2, 4, 7, 6),), mode="total"),
        Case("no_bias_dilation", _depthwise("num_output: 2 kernel_size: 2 dilation: 2 "
                                            "bias_term: false"), ((1, 2, 5, 5),), mode="total"),
        Case("num_output_ignored", _depthwise("kernel_h: 3 kernel_w: 1 pad_h: 1"),
             ((2, 3, 4, 4),), mode="total"),
    ],
}
