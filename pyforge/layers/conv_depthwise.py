"""ConvolutionDepthwise: the mobile forks' depthwise convolution, as pyforge's Convolution
with one group per channel."""

from __future__ import annotations

from ..blob import Blob
from ..proto import caffe_pb2
from .base import register_layer
from .conv import ConvolutionLayer


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
