"""Caffe's elementwise neuron formulas (relu_layer.cpp, prelu_layer.cpp, elu_layer.cpp,
bnll_layer.cpp, power_layer.cpp, exp_layer.cpp, log_layer.cpp, threshold_layer.cpp,
clip_layer.cpp, swish_layer.cpp, sigmoid_layer.cpp, tanh_layer.cpp, and the MobileNet-SSD
fork's relu6_layer.cpp) written out in float64.

``std::max``/``std::min`` are spelled out (:func:`cmax`, :func:`cmin`) because their NaN
behaviour is part of Caffe's results: ``std::max(a, b)`` is ``a < b ? b : a``, so it returns its
first argument when either is NaN. Gradients are Caffe's formulas on what Caffe's Backward_cpu
reads (bottom data, top data), which is the true derivative unless a docstring says otherwise.
NaN and infinity go through as IEEE arithmetic takes them; NumPy is told not to warn.
"""

from __future__ import annotations

import functools

import numpy as np

F64 = np.float64


def _quiet(fn):
    """Run ``fn`` with NumPy's floating-point warnings off (inf/NaN inputs are test cases)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def _f64(*arrays):
    return [np.asarray(a, dtype=F64) for a in arrays]


def cmax(a, b):
    """``std::max(a, b)``: ``a < b ? b : a`` (the first argument when either is NaN)."""
    a, b = np.broadcast_arrays(*_f64(a, b))
    return np.where(a < b, b, a)


def cmin(a, b):
    """``std::min(a, b)``: ``b < a ? b : a`` (the first argument when either is NaN)."""
    a, b = np.broadcast_arrays(*_f64(a, b))
    return np.where(b < a, b, a)


@_quiet
def relu(x, slope):
    x = np.asarray(x, F64)
    return cmax(x, 0.0) + F64(slope) * cmin(x, 0.0)


@_quiet
def relu_grad(x, dy, slope):
    """``dy * ((x > 0) + slope * (x <= 0))``: a NaN input has neither sign, so its gradient is
    ``dy * 0``."""
    x, dy = _f64(x, dy)
    return dy * ((x > 0) + F64(slope) * (x <= 0))


@_quiet
def relu6(x, slope):
    """The MobileNet-SSD fork's ``min(max(x, 0), 6) + slope * min(x, 0)``."""
    x = np.asarray(x, F64)
    return cmin(cmax(x, 0.0), 6.0) + F64(slope) * cmin(x, 0.0)


@_quiet
def relu6_grad(x, dy, slope):
    """``dy * ((0 < x < 6) + slope * (x <= 0))``."""
    x, dy = _f64(x, dy)
    return dy * (((x > 0) & (x < 6)) + F64(slope) * (x <= 0))


@_quiet
def sigmoid(x):
    """Caffe's ``0.5 * tanh(0.5 * x) + 0.5``; the literals are doubles, so Caffe evaluates it
    in double precision and rounds once to float."""
    x = np.asarray(x, F64)
    return 0.5 * np.tanh(0.5 * x) + 0.5


@_quiet
def sigmoid_grad_from_x(x, dy):
    s = sigmoid(x)
    return np.asarray(dy, F64) * s * (1.0 - s)


@_quiet
def tanh_grad_from_x(x, dy):
    t = np.tanh(np.asarray(x, F64))
    return np.asarray(dy, F64) * (1.0 - t * t)


def _channel_slopes(slope, shared, channels):
    slope = np.asarray(slope, F64).reshape(-1)
    return np.full(channels, slope[0]) if shared else slope


@_quiet
def prelu(x, slope, shared):
    """``x`` (N, C, D): ``max(x, 0) + a_c * min(x, 0)``."""
    x = np.asarray(x, F64)
    a = _channel_slopes(slope, shared, x.shape[1])[None, :, None]
    return cmax(x, 0.0) + a * cmin(x, 0.0)


@_quiet
def prelu_grad(x, dy, slope, shared):
    x, dy = _f64(x, dy)
    a = _channel_slopes(slope, shared, x.shape[1])[None, :, None]
    return dy * ((x > 0) + a * (x <= 0))


@_quiet
def prelu_slope_grad(x, dy):
    """Per channel: ``sum over n, i of dy * x * (x <= 0)`` (so ``x = +inf`` gives
    ``dy * inf * 0 = NaN``)."""
    x, dy = _f64(x, dy)
    return (dy * x * (x <= 0)).sum(axis=(0, 2))


@_quiet
def elu(x, alpha):
    x = np.asarray(x, F64)
    return cmax(x, 0.0) + F64(alpha) * (np.exp(cmin(x, 0.0)) - 1.0)


@_quiet
def elu_grad(x, y, dy, alpha):
    x, y, dy = _f64(x, y, dy)
    return dy * ((x > 0) + (F64(alpha) + y) * (x <= 0))


#: Caffe's kBNLL_THRESHOLD.
BNLL_THRESHOLD = 50.0


@_quiet
def bnll(x):
    """Caffe's ``x > 0 ? x + log(1. + exp(-x)) : log(1. + exp(x))`` in double. Written with
    ``log(1 + e)``, not ``log1p(e)``, as Caffe does: below about x = -37 the sum rounds to 1
    and Caffe's result is 0, not the (tiny) true value."""
    x = np.asarray(x, F64)
    return np.where(x > 0, x + np.log(1.0 + np.exp(-x)), np.log(1.0 + np.exp(x)))


@_quiet
def bnll_grad(x, dy):
    """``dy * e / (e + 1)`` with ``e = exp(min(x, 50))``."""
    x, dy = _f64(x, dy)
    e = np.exp(cmin(x, BNLL_THRESHOLD))
    return dy * e / (e + 1.0)


@_quiet
def power(x, p, scale, shift):
    x = np.asarray(x, F64)
    return (F64(shift) + F64(scale) * x) ** F64(p)


@_quiet
def power_grad(x, y, p, scale, shift):
    """The local derivative as PowerLayer::Backward_cpu computes it from what it reads (bottom
    data ``x`` and top data ``y``; in place both are the output):

    * power 2: ``2 * scale * (scale * x + shift)``;
    * shift 0: ``power * y / x`` (NaN at x = 0 when y = 0);
    * otherwise ``power * scale * y / (scale * x + shift)``."""
    x, y = _f64(x, y)
    p, scale, shift = F64(p), F64(scale), F64(shift)
    if p == 2:
        return 2.0 * scale * (scale * x + shift)
    if shift == 0:
        return p * y / x
    return p * scale * y / (scale * x + shift)


@_quiet
def exp(x, base, scale, shift):
    """``base ^ (shift + scale * x)`` (base -1 meaning e)."""
    x = np.asarray(x, F64)
    b = np.e if base == -1 else F64(base)
    return b ** (F64(shift) + F64(scale) * x)


@_quiet
def exp_grad_from_x(x, dy, base, scale, shift):
    b = np.e if base == -1 else F64(base)
    return np.asarray(dy, F64) * exp(x, base, scale, shift) * np.log(b) * F64(scale)


@_quiet
def log(x, base, scale, shift):
    """``log_base(shift + scale * x)`` (base -1 meaning e)."""
    x = np.asarray(x, F64)
    ln_base = 1.0 if base == -1 else np.log(F64(base))
    return np.log(F64(shift) + F64(scale) * x) / ln_base


@_quiet
def log_grad(x, base, scale, shift):
    """The local derivative ``scale / ln(base) / (shift + scale * x)``."""
    x = np.asarray(x, F64)
    ln_base = 1.0 if base == -1 else np.log(F64(base))
    return F64(scale) / ln_base / (F64(shift) + F64(scale) * x)


def threshold(x, t):
    """``x > t ? 1 : 0`` (NaN is not above anything)."""
    x = np.asarray(x, F64)
    return (x > F64(t)).astype(F64)


def clip(x, lo, hi):
    """``std::max(lo, std::min(x, hi))``: a NaN input comes out as ``lo``."""
    x = np.asarray(x, F64)
    return cmax(F64(lo), cmin(x, F64(hi)))


@_quiet
def clip_grad(x, dy, lo, hi):
    """``dy * (x >= lo && x <= hi)``: the gradient passes at the bounds too."""
    x, dy = _f64(x, dy)
    return dy * ((x >= F64(lo)) & (x <= F64(hi)))


@_quiet
def swish(x, beta):
    """(``y = x * sigmoid(beta * x)``, the sigmoid), the sigmoid as Caffe's Sigmoid layer."""
    x = np.asarray(x, F64)
    s = sigmoid(F64(beta) * x)
    return x * s, s


@_quiet
def swish_grad_from_x(x, dy, beta):
    """``dy * (sigmoid + beta * x * sigmoid * (1 - sigmoid))``, the derivative of x*sigmoid(bx)."""
    x, dy = _f64(x, dy)
    s = sigmoid(F64(beta) * x)
    return dy * (s + F64(beta) * x * s * (1.0 - s))
