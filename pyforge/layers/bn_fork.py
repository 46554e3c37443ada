"""BN: the batch normalization layer of the segmentation forks, in PSPNet's flavour
(hszhao/PSPNet) and in SegNet's (alexgkendall/caffe-segnet, also ENet's), which share the
type string and the ``bn_param`` name but not their fields, blobs or modes."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels import bn_fork as K
from ..kernels.normalization import channel_mean_var
from ..proto import caffe_pb2
from .base import TEST, Layer, register_layer

#: SegNet's BN hard-codes its epsilon.
SEGNET_EPS = np.float32(1e-9)
INFERENCE = caffe_pb2.BNParameter.INFERENCE


@register_layer("BN")
class BNLayer(Layer):
    """Caffe type ``BN``: bottom (N, C, ...) -> top of the same shape,
    ``y = scale * x_norm + shift`` per channel. May run in place.

    **PSPNet's flavour** (bn_param: slope_filler, bias_filler, momentum (0.9), eps (1e-5),
    frozen): blobs [slope, bias, moving mean, moving variance], each (1, C, 1, 1), the
    variance starting at 1 when frozen, else 0. In TRAIN (not frozen) it normalises with the
    batch mean and biased variance and updates ``mean = (1 - momentum) * batch_mean +
    momentum * mean`` (the variance likewise); in TEST or when frozen it uses the stored
    ones. ``x_norm = (x - mean) * (var + eps)^-1/2``. As the fork, the layer sets lr_mult
    and decay_mult 0 on the two statistics (and on slope and bias when frozen) in its own
    param specs. Frozen, backward is ``dx = dy * slope / std`` with no parameter gradient;
    otherwise it is the batch-statistics gradient, also in TEST (the fork's quirk).

    **SegNet's flavour** (bn_param: scale_filler, shift_filler, bn_mode): blobs [scale,
    shift], (1, C, 1, 1); eps is 1e-9. ``bn_mode: LEARN`` (the default) normalises with the
    batch mean and variance ``E(x^2) - E(x)^2`` in every phase and may write them to a
    second and third top (1, C, 1, 1); ``INFERENCE`` computes ``y = scale * x + shift``, the
    statistics having been folded into scale and shift by the fork's
    compute_bn_statistics.py.

    The flavour is SegNet's when bn_param sets scale_filler, shift_filler or bn_mode, else
    PSPNet's. Parameter gradients accumulate, as every pyforge layer's (SegNet's fork
    overwrites them, which only differs with iter_size > 1).
    """

    exact_num_bottom_blobs = 1
    min_top_blobs = 1
    max_top_blobs = 3

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.bn_param
        segnet_fields = [f for f in ("scale_filler", "shift_filler", "bn_mode") if p.HasField(f)]
        pspnet_fields = [f for f in ("slope_filler", "bias_filler", "momentum", "eps", "frozen")
                         if p.HasField(f)]
        if segnet_fields and pspnet_fields:
            raise self.error(f"bn_param mixes SegNet's fields ({', '.join(segnet_fields)}) with "
                             f"PSPNet's ({', '.join(pspnet_fields)}); a BN layer is one or the "
                             "other")
        self.segnet = bool(segnet_fields)
        if bottom[0].num_axes < 2:
            raise self.error(f"the bottom must be (N, C, ...), found {bottom[0].shape}")
        self.channels = bottom[0].shape[1]
        if not self.segnet and len(top) > 1:
            raise self.error("PSPNet's BN has one top; the batch mean and variance tops are "
                             "SegNet's (set bn_param.bn_mode or its scale/shift fillers)")
        shape = (1, self.channels, 1, 1)
        if self.segnet:
            self.inference = p.bn_mode == INFERENCE
            self.eps = SEGNET_EPS
            if not self.blobs:
                self.blobs = [self.make_param(shape, p.scale_filler, "scale_filler"),
                              self.make_param(shape, p.shift_filler, "shift_filler")]
        else:
            self.frozen = p.frozen
            self.momentum = np.float32(p.momentum)
            self.eps = np.float32(p.eps)
            self.use_stats = self.frozen or self.phase == TEST
            if not self.blobs:
                variance = Blob(shape)
                variance.data[...] = 1.0 if self.frozen else 0.0
                self.blobs = [self.make_param(shape, p.slope_filler, "slope_filler"),
                              self.make_param(shape, p.bias_filler, "bias_filler"),
                              Blob(shape), variance]
            self._freeze_statistics()
        self.param_propagate_down = [True] * len(self.blobs)
        self.mean = np.zeros(self.channels, np.float32)
        self.var = np.zeros(self.channels, np.float32)
        self.factor = np.zeros(self.channels, np.float32)
        self.x_norm = np.zeros(0, np.float32)

    def _freeze_statistics(self) -> None:
        """PSPNet's fork: the statistics (and, when frozen, slope and bias) get lr_mult and
        decay_mult 0 in the layer's own param specs, whatever the prototxt says."""
        while len(self.param.param) < 4:
            self.param.param.add()
        for i in (0, 1, 2, 3) if self.frozen else (2, 3):
            self.param.param[i].lr_mult = 0.0
            self.param.param[i].decay_mult = 0.0

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) < 2 or shape[1] != self.channels:
            raise self.error(f"the bottom must have {self.channels} channels (axis 1), found "
                             f"shape {shape}")
        top[0].reshape(shape)
        for t in top[1:]:
            t.reshape((1, self.channels, 1, 1))
        if self.x_norm.shape != shape:
            self.x_norm = np.zeros(shape, np.float32)
        self.dims = (shape[0], self.channels, bottom[0].count // max(shape[0] * shape[1], 1))

    def _channel(self, index: int) -> np.ndarray:
        return self.blobs[index].data.reshape(self.channels)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.dims)
        y = top[0].data.reshape(self.dims)
        scale, shift = self._channel(0), self._channel(1)
        if self.segnet and self.inference:
            K.bn_affine_forward(x, scale, shift, y)
            return
        if self.segnet:
            K.channel_mean_and_square(x, self.mean, self.var)
            self.var -= self.mean * self.mean  # E(x^2) - E(x)^2, in float32 as the fork
            for t, values in zip(top[1:], (self.mean, self.var)):
                t.data[...] = values.reshape(t.shape)
            np.sqrt(self.var + self.eps, out=self.factor)
            K.bn_forward(x, self.mean, self.factor, True, scale, shift, y,
                         self.x_norm.reshape(self.dims))
            return
        if self.use_stats:
            self.mean[...] = self._channel(2)
            self.var[...] = self._channel(3)
        else:
            channel_mean_var(x, self.mean, self.var)
            one_minus = np.float32(1.0) - self.momentum
            for index, batch in ((2, self.mean), (3, self.var)):
                moving = self._channel(index)
                moving[...] = one_minus * batch + self.momentum * moving
        np.power(self.var + self.eps, np.float32(-0.5), out=self.factor)
        K.bn_forward(x, self.mean, self.factor, False, scale, shift, y,
                     self.x_norm.reshape(self.dims))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff.reshape(self.dims)
        dx = bottom[0].diff.reshape(self.dims)
        scale_diff = self.blobs[0].diff.reshape(self.channels)
        shift_diff = self.blobs[1].diff.reshape(self.channels)
        need_scale, need_shift = (bool(d) for d in self.param_propagate_down[:2])
        need_dx = bool(propagate_down[0])
        if self.segnet and self.inference:
            K.bn_affine_backward(bottom[0].data.reshape(self.dims), dy, self._channel(0),
                                 need_scale, need_shift, need_dx, scale_diff, shift_diff, dx)
        elif not self.segnet and self.frozen:
            # The fork's frozen backward: dy * slope / std, nothing for the parameters.
            if need_dx:
                K.bn_affine_backward(bottom[0].data.reshape(self.dims), dy,
                                     self._channel(0) * self.factor, False, False, True,
                                     scale_diff, shift_diff, dx)
        else:
            K.bn_backward(self.x_norm.reshape(self.dims), dy, self._channel(0), self.factor,
                          self.segnet, need_scale, need_shift, need_dx, scale_diff, shift_diff,
                          dx)
