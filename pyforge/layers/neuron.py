"""Elementwise neuron layers: ReLU, Sigmoid, TanH, PReLU, ELU, AbsVal, BNLL, Power, Exp, Log,
Threshold, Clip, Swish, and the MobileNet-SSD fork's ReLU6.

Each backward reads what Caffe's Backward_cpu reads. Where that is the bottom data, running the
layer in place (top == bottom) makes it read the output instead, and the gradient is Caffe's
(wrong) one; the class docstrings say which layers are exact in place.
"""

from __future__ import annotations

import math

import numpy as np

from ..blob import Blob
from ..kernels import neuron as K
from ..proto import caffe_pb2
from .base import NeuronLayer, register_layer


@register_layer("ReLU", "RELU")
class ReLULayer(NeuronLayer):
    """Caffe type ``ReLU``: ``y = max(x, 0) + negative_slope * min(x, 0)``; may run in place."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        slope = np.float32(self.param.relu_param.negative_slope)
        K.relu_forward(bottom[0].data.reshape(-1), slope, top[0].data.reshape(-1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            slope = np.float32(self.param.relu_param.negative_slope)
            # In place, bottom data is the output; it has the input's sign, so the mask holds.
            K.relu_backward(bottom[0].data.reshape(-1), top[0].diff.reshape(-1), slope,
                            bottom[0].diff.reshape(-1))


@register_layer("Sigmoid", "SIGMOID")
class SigmoidLayer(NeuronLayer):
    """Caffe type ``Sigmoid``: ``y = 1 / (1 + exp(-x))``; backward uses the output."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.sigmoid_forward(bottom[0].data.reshape(-1), top[0].data.reshape(-1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            K.sigmoid_backward(top[0].data.reshape(-1), top[0].diff.reshape(-1),
                               bottom[0].diff.reshape(-1))


@register_layer("TanH", "TANH")
class TanHLayer(NeuronLayer):
    """Caffe type ``TanH``: ``y = tanh(x)``; backward uses the output."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.tanh_forward(bottom[0].data.reshape(-1), top[0].data.reshape(-1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            K.tanh_backward(top[0].data.reshape(-1), top[0].diff.reshape(-1),
                            bottom[0].diff.reshape(-1))


def _float_edges() -> np.errstate:
    """Caffe lets inf and NaN through these functions (log of a negative number, 0/0 in
    Power's gradient, exp overflow), and so do the compiled kernels, silently; this keeps them
    silent when run as plain Python (NUMBA_DISABLE_JIT=1) too."""
    return np.errstate(divide="ignore", invalid="ignore", over="ignore")


def _flat(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1)


# --- PReLU ---------------------------------------------------------------------------------------
@register_layer("PReLU")
class PReLULayer(NeuronLayer):
    """Caffe type ``PReLU``: ``y = max(x, 0) + a_c * min(x, 0)`` with a learned slope per
    channel (axis 1), or one slope for all with ``channel_shared``. bottom (N, C, ...) -> top of
    the same shape; may run in place (a copy of the input is kept for Backward, as in Caffe).

    Reads prelu_param: filler (default constant 0.25), channel_shared (false). Blobs: [slope],
    shape (C), or a scalar (0 axes) when shared.
    """

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes < 2:
            raise self.error(f"the bottom needs at least 2 axes (N, C, ...), found shape "
                             f"{bottom[0].shape}")
        p = self.param.prelu_param
        self.channel_shared = p.channel_shared
        channels = bottom[0].shape[1]
        if not self.blobs:
            shape = () if self.channel_shared else (channels,)
            if p.HasField("filler"):
                filler = p.filler
            else:
                filler = caffe_pb2.FillerParameter(type="constant", value=0.25)
            self.blobs = [self.make_param(shape, filler, "filler")]
        expected = 1 if self.channel_shared else channels
        if self.blobs[0].count != expected:
            need = "channel_shared needs 1" if self.channel_shared else "need one per channel"
            raise self.error(f"the slope blob has {self.blobs[0].count} values; {need} "
                             f"({expected})")
        self.param_propagate_down = [True]
        self.bottom_memory = np.zeros(0, np.float32)
        self.slope_grad = np.zeros(channels, np.float64)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        shape = bottom[0].shape
        self.view = (shape[0], shape[1], bottom[0].count_range(2))
        if top[0] is bottom[0] and self.bottom_memory.shape != self.view:
            self.bottom_memory = np.zeros(self.view, np.float32)
        if self.slope_grad.shape != (shape[1],):
            self.slope_grad = np.zeros(shape[1], np.float64)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.view)
        if top[0] is bottom[0]:
            self.bottom_memory[...] = x
        K.prelu_forward(x, _flat(self.blobs[0].data), self.channel_shared,
                        top[0].data.reshape(self.view))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        x = self.bottom_memory if top[0] is bottom[0] else bottom[0].data.reshape(self.view)
        dy = top[0].diff.reshape(self.view)
        slope = self.blobs[0]
        if self.param_propagate_down[0]:
            K.prelu_slope_grad(x, dy, self.slope_grad)
            if self.channel_shared:
                slope.diff += np.float32(self.slope_grad.sum())
            else:
                slope.diff += self.slope_grad.astype(np.float32)
        if propagate_down[0]:
            K.prelu_backward(x, dy, _flat(slope.data), self.channel_shared,
                             bottom[0].diff.reshape(self.view))


# --- ELU, AbsVal, BNLL ---------------------------------------------------------------------------
@register_layer("ELU")
class ELULayer(NeuronLayer):
    """Caffe type ``ELU``: ``y = x`` for x > 0, else ``alpha * (exp(x) - 1)``. Reads
    elu_param.alpha (1). Backward reads the input and the output; in place it is exact for
    alpha > 0."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.elu_forward(_flat(bottom[0].data), np.float32(self.param.elu_param.alpha),
                      _flat(top[0].data))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            K.elu_backward(_flat(bottom[0].data), _flat(top[0].data), _flat(top[0].diff),
                           np.float32(self.param.elu_param.alpha), _flat(bottom[0].diff))


@register_layer("AbsVal", "ABSVAL")
class AbsValLayer(NeuronLayer):
    """Caffe type ``AbsVal``: ``y = |x|``; the gradient is ``sign(x) * dy`` (0 at x = 0).
    Caffe refuses to run it in place."""

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("AbsVal does not work in place (give the top its own name)")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        np.abs(bottom[0].data, out=top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            np.multiply(np.sign(bottom[0].data), top[0].diff, out=bottom[0].diff)


@register_layer("BNLL")
class BNLLLayer(NeuronLayer):
    """Caffe type ``BNLL`` (binomial normal log likelihood): ``y = log(1 + exp(x))``, computed
    as ``x + log(1 + exp(-x))`` for x > 0; the gradient is ``dy * e / (e + 1)`` with
    ``e = exp(min(x, 50))``. Backward reads the input: not exact in place (as in Caffe)."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.bnll_forward(_flat(bottom[0].data), _flat(top[0].data))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            K.bnll_backward(_flat(bottom[0].data), _flat(top[0].diff), _flat(bottom[0].diff))


# --- Power, Exp, Log -----------------------------------------------------------------------------
@register_layer("Power", "POWER")
class PowerLayer(NeuronLayer):
    """Caffe type ``Power``: ``y = (shift + scale * x) ^ power``. Reads power_param: power (1),
    scale (1), shift (0).

    Caffe's special cases: when ``power * scale == 0`` the output is the constant
    ``1`` (power 0) or ``shift ^ power`` (scale 0) and the gradient is 0; power 1 has the
    constant gradient ``scale``; power 2 uses ``2 * scale * (shift + scale * x)``; shift 0 uses
    ``power * y / x`` (NaN at x = 0). Backward reads the input: not exact in place.
    """

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.power_param
        self.power = np.float32(p.power)
        self.scale = np.float32(p.scale)
        self.shift = np.float32(p.shift)
        self.diff_scale = self.power * self.scale

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if self.diff_scale == 0:
            # The input does not matter: scale or power is 0.
            with np.errstate(all="ignore"):
                value = np.float32(1) if self.power == 0 else self.shift**self.power
            top[0].data[...] = value
            return
        with _float_edges():
            K.power_forward(_flat(bottom[0].data), self.power, self.scale, self.shift,
                            _flat(top[0].data))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        # As in Caffe, the local derivative is written first and then multiplied by the top
        # diff (which in place is the same memory).
        if self.diff_scale == 0 or self.power == 1:
            dx[...] = self.diff_scale
        else:
            with _float_edges():
                K.power_grad(_flat(bottom[0].data), _flat(top[0].data), self.power,
                             self.scale, self.shift, _flat(dx))
        if self.diff_scale != 0:
            np.multiply(top[0].diff, dx, out=dx)


def _log_base(layer: NeuronLayer, base: float) -> np.float32:
    """ln(base) in float32, with base -1 meaning e (exactly 1); checked as Caffe does."""
    if base != -1 and not base > 0:
        raise layer.error(f"base must be strictly positive (or -1 for e), found {base:g}")
    value = np.float32(1.0) if base == -1 else np.float32(math.log(np.float32(base)))
    if not np.isfinite(value):
        raise layer.error(f"log(base) = log({base:g}) is not finite")
    return value


@register_layer("Exp", "EXP")
class ExpLayer(NeuronLayer):
    """Caffe type ``Exp``: ``y = base ^ (shift + scale * x)``, computed as
    ``base^shift * exp(ln(base) * scale * x)``. Reads exp_param: base (-1 = e), scale (1),
    shift (0). Backward reads the output, so it is exact in place."""

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.exp_param
        log_base = _log_base(self, p.base)
        self.inner_scale = log_base * np.float32(p.scale)
        shift = np.float32(p.shift)
        with np.errstate(over="ignore"):  # an overflow gives inf, as in Caffe
            if shift == 0:
                self.outer_scale = np.float32(1.0)
            elif p.base == -1:
                self.outer_scale = np.exp(shift)
            else:
                self.outer_scale = np.float32(p.base) ** shift

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        with _float_edges():
            K.exp_forward(_flat(bottom[0].data), self.inner_scale, self.outer_scale,
                          _flat(top[0].data))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            K.exp_backward(_flat(top[0].data), _flat(top[0].diff), self.inner_scale,
                           _flat(bottom[0].diff))


@register_layer("Log")
class LogLayer(NeuronLayer):
    """Caffe type ``Log``: ``y = log_base(shift + scale * x)``. Reads log_param: base (-1 = e),
    scale (1), shift (0). The gradient is ``dy * scale / ln(base) / (shift + scale * x)``;
    Backward reads the input: not exact in place."""

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.log_param
        log_base = _log_base(self, p.base)
        with np.errstate(divide="ignore"):
            self.base_scale = np.float32(1.0) / log_base
        if not np.isfinite(self.base_scale):
            raise self.error(f"base {p.base:g} has log(base) = 0; 1 / log(base) is not finite")
        self.input_scale = np.float32(p.scale)
        self.input_shift = np.float32(p.shift)
        self.num_scale = self.input_scale / log_base

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        with _float_edges():
            K.log_forward(_flat(bottom[0].data), self.input_scale, self.input_shift,
                          self.base_scale, _flat(top[0].data))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        with _float_edges():
            K.log_grad(_flat(bottom[0].data), self.input_scale, self.input_shift,
                       self.num_scale, _flat(dx))
        np.multiply(top[0].diff, dx, out=dx)


# --- Threshold, Clip, Swish ----------------------------------------------------------------------
@register_layer("Threshold", "THRESHOLD")
class ThresholdLayer(NeuronLayer):
    """Caffe type ``Threshold``: ``y = 1`` if ``x > threshold`` else ``0``. Reads
    threshold_param.threshold (0). Not differentiable: Caffe's Backward is NOT_IMPLEMENTED, so
    asking for a gradient through it is an error."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.threshold_forward(_flat(bottom[0].data),
                            np.float32(self.param.threshold_param.threshold), _flat(top[0].data))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            raise self.error("Threshold has no gradient (Caffe's Backward is not implemented); "
                             "set propagate_down: false on its bottom or move it out of the "
                             "path to the loss")


@register_layer("Clip")
class ClipLayer(NeuronLayer):
    """Caffe type ``Clip``: ``y = max(min, min(x, max))``. Reads clip_param: min, max (both
    required). The gradient passes where ``min <= x <= max``: Caffe counts the bounds as
    inside. Backward reads the input; in place that is the clipped output, which is always
    inside the bounds, so Caffe (and pyforge) then pass every gradient through."""

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.clip_param
        if not (self.param.HasField("clip_param") and p.HasField("min") and p.HasField("max")):
            raise self.error("clip_param { min: ... max: ... } is required")
        self.lo = np.float32(p.min)
        self.hi = np.float32(p.max)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.clip_forward(_flat(bottom[0].data), self.lo, self.hi, _flat(top[0].data))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            K.clip_backward(_flat(bottom[0].data), _flat(top[0].diff), self.lo, self.hi,
                            _flat(bottom[0].diff))


@register_layer("Swish")
class SwishLayer(NeuronLayer):
    """Caffe type ``Swish``: ``y = x * sigmoid(beta * x)``. Reads swish_param.beta (1). The
    sigmoid is kept for Backward, which reads it and the output: exact in place."""

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.beta = np.float32(self.param.swish_param.beta)
        self.sigmoid = np.zeros(0, np.float32)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        if self.sigmoid.size != bottom[0].count:
            self.sigmoid = np.zeros(bottom[0].count, np.float32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.swish_forward(_flat(bottom[0].data), self.beta, self.sigmoid, _flat(top[0].data))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            K.swish_backward(_flat(top[0].data), self.sigmoid, _flat(top[0].diff), self.beta,
                             _flat(bottom[0].diff))


@register_layer("ReLU6")
class ReLU6Layer(NeuronLayer):
    """MobileNet-SSD fork type ``ReLU6`` (chuanqi305/ssd): ``y = min(max(x, 0), 6)``; with the
    stand-alone ReLU6 add-ons' relu6_param.negative_slope, ``+ negative_slope * min(x, 0)``.
    The gradient passes where ``0 < x < 6`` (times the slope where ``x <= 0``). Backward reads
    the bottom; in place that is the output, which gives the same gradient (slope >= 0)."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        slope = np.float32(self.param.relu6_param.negative_slope)
        K.relu6_forward(_flat(bottom[0].data), slope, _flat(top[0].data))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            slope = np.float32(self.param.relu6_param.negative_slope)
            K.relu6_backward(_flat(bottom[0].data), _flat(top[0].diff), slope,
                             _flat(bottom[0].diff))
