"""Gradient-check cases of ShuffleChannel and Axpy (pyforge/layers/channel_ops.py) and of
ConvolutionDepthwise (pyforge/layers/conv_depthwise.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case

FILLERS = ('weight_filler { type: "gaussian" std: 0.5 } '
           'bias_filler { type: "gaussian" std: 0.5 }')


def _shuffle(group: int) -> str:
    return (f'type: "ShuffleChannel" bottom: "x" top: "y" '
            f"shuffle_channel_param {{ group: {group} }}")


def _depthwise(extra: str) -> str:
    return (f'type: "ConvolutionDepthwise" bottom: "x" top: "y" '
            f"convolution_param {{ {extra} {FILLERS} }}")


AXPY = 'type: "Axpy" bottom: "scale" bottom: "x" bottom: "y" top: "out"'

CASES: dict[str, list[Case]] = {
    "ShuffleChannel": [
        Case("group2", _shuffle(2), ((2, 4, 2, 3),)),
        Case("group3_of_6", _shuffle(3), ((1, 6, 2, 2),)),
        Case("group1", _shuffle(1), ((2, 3, 2),)),
    ],
    "Axpy": [
        Case("scale_nc11", AXPY, ((2, 3, 1, 1), (2, 3, 2, 3), (2, 3, 2, 3))),
        Case("scale_nc", AXPY, ((2, 3), (2, 3, 4), (2, 3, 4))),
        Case("in_place_on_y", AXPY.replace('top: "out"', 'top: "y"'),
             ((2, 2, 1, 1), (2, 2, 3, 2), (2, 2, 3, 2))),
        Case("only_scale", AXPY, ((2, 3, 1, 1), (2, 3, 2, 2), (2, 3, 2, 2)),
             check_bottom=(0,)),
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
