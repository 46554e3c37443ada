"""Normalization layers: BatchNorm, LRN, MVN, and the forks' BN (PSPNet, SegNet, ENet)
and Normalize (SSD).
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels import bn_fork as KB
from ..kernels import detection as KD
from ..kernels import normalization as K
from ..kernels.normalization import channel_mean_var
from ..proto import caffe_pb2
from .base import TEST, Layer, register_layer
from .ufunc_parts import UfuncParts

LRN = caffe_pb2.LRNParameter


_NOTHING_KEPT = np.zeros((0, 0, 0), np.float32)


def _f32(value: float) -> np.float32:
    return np.float32(value)


# --- BatchNorm -----------------------------------------------------------------------------------
@register_layer("BatchNorm")
class BatchNormLayer(Layer):
    """Caffe type ``BatchNorm``: bottom (N, C, ...) -> top of the same shape, normalized per
    channel: ``y = (x - mean) / sqrt(var + eps)``. No scale or shift of its own (Caffe pairs it
    with ``Scale { bias_term: true }``). May run in place.

    Reads batch_norm_param: use_global_stats (default: true in the TEST phase, false in TRAIN),
    moving_average_fraction (0.999), eps (1e-5).

    Blobs, all zero at first: [0] mean sum (C), [1] variance sum (C), [2] scale factor s (1).
    In TRAIN without global stats each Forward normalizes with the batch mean and the biased
    batch variance over N and the spatial axes, then updates ``s = s * maf + 1``,
    ``mean_sum = mean + maf * mean_sum`` and ``var_sum = m/(m-1) * var + maf * var_sum``
    (``m = count / C``: the stored variance is the unbiased one). With global stats it uses
    ``mean_sum / s`` and ``var_sum / s`` (a factor of 0 when ``s == 0``) and the gradient treats
    them as constants. The blobs are statistics, not parameters: the layer adds
    ``param { lr_mult: 0 }`` for each to its own LayerParameter, and refuses a given non-zero
    lr_mult, as Caffe does.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.batch_norm_param
        self.moving_average_fraction = _f32(p.moving_average_fraction)
        self.use_global_stats = (p.use_global_stats if p.HasField("use_global_stats")
                                 else self.phase == TEST)
        self.eps = _f32(p.eps)
        # Caffe reads the channels as shape(1); its Reshape then fails for a 1-axis bottom.
        if bottom[0].num_axes < 2:
            raise self.error(f"the bottom needs at least 2 axes (N, C, ...), found shape "
                             f"{bottom[0].shape}")
        self.channels = bottom[0].shape[1]
        if not self.blobs:
            self.blobs = [Blob((self.channels,)), Blob((self.channels,)), Blob((1,))]
        # Mask the statistics from the solver: lr_mult 0 on each of them.
        for i in range(len(self.blobs)):
            if len(self.param.param) == i:
                self.param.param.add().lr_mult = 0.0
            elif self.param.param[i].lr_mult != 0:
                raise self.error(
                    f"param {i} has lr_mult {self.param.param[i].lr_mult:g}; the batch "
                    "statistics are not learnable parameters, their lr_mult must be 0 (or "
                    "leave the param specs out)")
        self.param_propagate_down = [False] * len(self.blobs)
        self.mean = np.zeros(self.channels, np.float32)
        self.var = np.zeros(self.channels, np.float32)
        self.std = np.zeros(self.channels, np.float32)
        self.x_norm = np.zeros(0, np.float32)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) < 2 or shape[1] != self.channels:
            raise self.error(f"the bottom must have {self.channels} channels (axis 1), found "
                             f"shape {shape}")
        top[0].reshape(shape)
        if self.x_norm.shape != shape and not self.use_global_stats:
            self.x_norm = np.zeros(shape, np.float32)  # only the batch statistics need it
        self.dims = (shape[0], self.channels, bottom[0].count // max(shape[0] * shape[1], 1))

    def stored_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) from the stored sums, as the forward with global stats computes them
        (also for a convolution that runs this layer in its own pass)."""
        s = self.blobs[2].data[0]
        factor = _f32(0.0) if s == 0 else _f32(1.0) / s
        np.multiply(self.blobs[0].data, factor, out=self.mean)
        np.multiply(self.blobs[1].data, factor, out=self.var)
        np.sqrt(self.var + self.eps, out=self.std)
        return self.mean, self.std

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.dims)
        if self.use_global_stats:
            self.stored_statistics()
        else:
            K.channel_mean_var(x, self.mean, self.var)
            maf = self.moving_average_fraction
            factor_blob = self.blobs[2].data
            factor_blob *= maf
            factor_blob += _f32(1.0)
            mean_sum, var_sum = self.blobs[0].data, self.blobs[1].data
            mean_sum[...] = self.mean + maf * mean_sum
            m = bottom[0].count // self.channels
            # Caffe stores the unbiased variance: the biased batch variance times m / (m - 1).
            correction = _f32(m) / _f32(m - 1) if m > 1 else _f32(1.0)
            var_sum[...] = correction * self.var + maf * var_sum
            np.sqrt(self.var + self.eps, out=self.std)
        keep = not self.use_global_stats
        K.batch_norm_forward(x, self.mean, self.std, keep, top[0].data.reshape(self.dims),
                             self.x_norm.reshape(self.dims) if keep else _NOTHING_KEPT)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        dy = top[0].diff.reshape(self.dims)
        dx = bottom[0].diff.reshape(self.dims)
        if self.use_global_stats:
            K.divide_by_channel(dy, self.std, dx)
        else:
            K.batch_norm_backward(self.x_norm.reshape(self.dims), dy, self.std, dx)


# --- LRN ---------------------------------------------------------------------------------------
@register_layer("LRN")
class LRNLayer(Layer):
    """Caffe type ``LRN``: local response normalization, bottom (N, C, H, W) -> top of the
    same shape (not in place).

    Reads lrn_param: local_size n (5, must be odd), alpha (1), beta (0.75), k (1), norm_region:

    * ACROSS_CHANNELS: ``y = x * (k + alpha/n * sum of x^2 over the n channels centred on c)
      ^ -beta``, channels outside the image counting as 0;
    * WITHIN_CHANNEL: ``y = x * (1 + alpha * avg)^-beta``, where ``avg`` is Caffe's AVE pooling
      of x^2 (kernel n, stride 1, pad (n-1)/2, dividing by the padded window size n*n); ``k`` is
      not used.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.lrn_param
        if p.local_size % 2 != 1:
            raise self.error(f"local_size must be odd, found {p.local_size}")
        if top[0] is bottom[0]:
            # Caffe accepts it but computes garbage: its forward writes the powers over the
            # input before multiplying by it, and its backward reads the input.
            raise self.error("LRN does not work in place (give the top its own name)")
        self.size = int(p.local_size)
        self.alpha = _f32(p.alpha)
        self.neg_beta = -_f32(p.beta)
        self.k = _f32(p.k)
        self.within = p.norm_region == LRN.WITHIN_CHANNEL
        self.state = np.zeros(0, np.float32)
        self.work = np.zeros(0, np.float32)
        self.accum = np.zeros(0, np.float32)
        self.parts = UfuncParts()  # the powers, on every thread

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes != 4:
            raise self.error(f"the bottom must have 4 axes (N, C, H, W), found shape "
                             f"{bottom[0].shape}")
        top[0].reshape(bottom[0].shape)
        n, c, h, w = bottom[0].shape
        # Kept for Backward: the scale (ACROSS), or the pooled squares and their power (WITHIN).
        self.view = (n * c, h, w) if self.within else (n, c, h * w)
        state_shape = (2 if self.within else 1,) + self.view
        if self.state.shape != state_shape:
            self.state = np.zeros(state_shape, np.float32)
            # Work buffers: the within-channel kernels need three planes per plane of x.
            self.work = np.zeros((3 if self.within else 1,) + self.view, np.float32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.view)
        y = top[0].data.reshape(self.view)
        if self.within:
            pooled, power = self.state
            K.lrn_within_pool(x, self.size, self.work[0], self.work[1], pooled)
            # Caffe's Power layer: scale, shift, then the power.
            if self.alpha != 1:
                np.multiply(pooled, self.alpha, out=power)
            else:
                power[...] = pooled
            power += _f32(1.0)
            np.power(power, self.neg_beta, out=power)
            np.multiply(x, power, out=y)
        else:
            scale = self.state[0]
            K.lrn_across_scale(x, self.size, self.alpha / _f32(self.size), self.k, scale)
            self.parts.run(self._scaled, scale, x, y)

    def _scaled(self, scale: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        """``out = scale^-beta * x`` (Caffe: powx, then mul)."""
        np.power(scale, self.neg_beta, out=out)
        np.multiply(out, x, out=out)

    def close(self) -> None:
        self.parts.close()

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        x = bottom[0].data.reshape(self.view)
        dy = top[0].diff.reshape(self.view)
        dx = bottom[0].diff.reshape(self.view)
        if self.within:
            K.lrn_within_backward(x, self.state[0], self.state[1], dy, self.size, self.alpha,
                                  self.neg_beta, self.work[0], self.work[1], self.work[2], dx)
        else:
            n, c, plane = self.view
            if self.accum.shape != (n, plane):
                self.accum = np.empty((n, plane), np.float32)
            scale = self.state[0]
            self.parts.run(self._scaled, scale, dy, dx)
            # Caffe computes 2 * alpha * beta / n in double precision.
            cache_ratio = _f32(2.0 * float(self.alpha) * -float(self.neg_beta) / self.size)
            K.lrn_across_backward(x, top[0].data.reshape(self.view), scale, dy, self.size,
                                  cache_ratio, self.work[0], self.accum, dx)


# --- MVN -----------------------------------------------------------------------------------------
@register_layer("MVN")
class MVNLayer(Layer):
    """Caffe type ``MVN``: mean-variance normalization, bottom (N, C, H, W) -> top (N, C, H, W).

    Reads mvn_param: normalize_variance (true), across_channels (false), eps (1e-9). Each item
    (across_channels) or each item's channel has its mean subtracted and, with
    normalize_variance, is divided by ``sqrt(var) + eps`` (eps is added to the standard
    deviation, not to the variance). Like Caffe, the top is given the bottom's legacy 4-D shape
    (a (N, D) bottom gives a (N, D, 1, 1) top), so bottoms may have at most 4 axes.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.mvn_param
        self.normalize_variance = p.normalize_variance
        self.across_channels = p.across_channels
        self.eps = _f32(p.eps)
        self.std = np.zeros(0, np.float32)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes > 4:
            raise self.error(f"the bottom may have at most 4 axes (N, C, H, W), found shape "
                             f"{bottom[0].shape}")
        legacy = (bottom[0].num, bottom[0].channels, bottom[0].height, bottom[0].width)
        top[0].reshape(legacy)
        rows = legacy[0] if self.across_channels else legacy[0] * legacy[1]
        self.view = (rows, bottom[0].count // rows if rows else 0)
        if self.std.shape != (rows,):
            self.std = np.zeros(rows, np.float32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.mvn_forward(bottom[0].data.reshape(self.view), self.normalize_variance, self.eps,
                      top[0].data.reshape(self.view), self.std)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        K.mvn_backward(top[0].data.reshape(self.view), top[0].diff.reshape(self.view),
                       self.normalize_variance, self.std, bottom[0].diff.reshape(self.view))


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
            KB.bn_affine_forward(x, scale, shift, y)
            return
        if self.segnet:
            KB.channel_mean_and_square(x, self.mean, self.var)
            self.var -= self.mean * self.mean  # E(x^2) - E(x)^2, in float32 as the fork
            for t, values in zip(top[1:], (self.mean, self.var)):
                t.data[...] = values.reshape(t.shape)
            np.sqrt(self.var + self.eps, out=self.factor)
            KB.bn_forward(x, self.mean, self.factor, True, scale, shift, y,
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
        KB.bn_forward(x, self.mean, self.factor, False, scale, shift, y,
                     self.x_norm.reshape(self.dims))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff.reshape(self.dims)
        dx = bottom[0].diff.reshape(self.dims)
        scale_diff = self.blobs[0].diff.reshape(self.channels)
        shift_diff = self.blobs[1].diff.reshape(self.channels)
        need_scale, need_shift = (bool(d) for d in self.param_propagate_down[:2])
        need_dx = bool(propagate_down[0])
        if self.segnet and self.inference:
            KB.bn_affine_backward(bottom[0].data.reshape(self.dims), dy, self._channel(0),
                                 need_scale, need_shift, need_dx, scale_diff, shift_diff, dx)
        elif not self.segnet and self.frozen:
            # The fork's frozen backward: dy * slope / std, nothing for the parameters.
            if need_dx:
                KB.bn_affine_backward(bottom[0].data.reshape(self.dims), dy,
                                     self._channel(0) * self.factor, False, False, True,
                                     scale_diff, shift_diff, dx)
        else:
            KB.bn_backward(self.x_norm.reshape(self.dims), dy, self._channel(0), self.factor,
                          self.segnet, need_scale, need_shift, need_dx, scale_diff, shift_diff,
                          dx)


@register_layer("Normalize")
class NormalizeLayer(Layer):
    """SSD type ``Normalize``: ``y = x / sqrt(sum x^2 + eps) * scale``, the sum over each
    image's C x H x W values (across_spatial, default) or over C at each location.

    Reads norm_param: across_spatial (true), channel_shared (true: one scale), eps (1e-10),
    scale_filler (default constant 1). Blobs: [scale], a scalar (0 axes) or one per channel.
    Backward is the fork's: the bottom gradient is that of the unscaled normalisation times
    each channel's scale (the true gradient when the scale is shared or equal across channels,
    as training SSD with the fork computes it otherwise); the scale gradient divides by the
    scale (a zero scale gives NaN); the bottom data is read, so it is not exact in place.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes < 2:
            raise self.error(f"the bottom needs at least 2 axes (N, C, ...), found "
                             f"{bottom[0].shape}")
        p = self.param.norm_param
        channels = bottom[0].shape[1]
        if not self.blobs:
            shape = () if p.channel_shared else (channels,)
            filler = (p.scale_filler if p.HasField("scale_filler")
                      else caffe_pb2.FillerParameter(type="constant", value=1.0))
            self.blobs = [self.make_param(shape, filler, "scale_filler")]
        expected = 1 if p.channel_shared else channels
        if self.blobs[0].count != expected:
            need = "channel_shared needs 1" if p.channel_shared else "need one per channel"
            raise self.error(f"the scale blob has {self.blobs[0].count} values; {need} "
                             f"({expected})")
        self.param_propagate_down = [True]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) < 2:
            raise self.error(f"the bottom needs at least 2 axes (N, C, ...), found {shape}")
        top[0].reshape_like(bottom[0])
        self.view = (shape[0], shape[1], bottom[0].count_range(2))
        self.norm = np.zeros((shape[0], self.view[2]), np.float32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.norm_param
        KD.normalize_forward(bottom[0].data.reshape(self.view), self.blobs[0].data.reshape(-1),
                            p.across_spatial, np.float32(p.eps),
                            top[0].data.reshape(self.view), self.norm)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        scale = self.blobs[0]
        dy = top[0].diff.reshape(self.view)
        if self.param_propagate_down[0]:
            KD.normalize_scale_backward(top[0].data.reshape(self.view), dy,
                                       scale.data.reshape(-1), scale.diff.reshape(-1))
        if propagate_down[0]:
            KD.normalize_backward(bottom[0].data.reshape(self.view), dy,
                                 scale.data.reshape(-1), self.param.norm_param.across_spatial,
                                 self.norm, bottom[0].diff.reshape(self.view))
