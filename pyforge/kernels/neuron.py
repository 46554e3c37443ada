"""Elementwise kernels of the neuron layers (PReLU, ELU, BNLL, Power, Exp, Log, Threshold,
Clip, Swish), forward next to backward.

Arrays are contiguous float32; scalars are passed as ``np.float32`` so that the arithmetic
stays in float32, as Caffe's ``Dtype`` arithmetic does. Each backward reads the arrays Caffe's
Backward_cpu reads (bottom data, top data or a cached buffer), so in-place use behaves as in
Caffe; the layer docstrings say where that differs from the true gradient.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
#: Caffe's kBNLL_THRESHOLD: exp() in BNLL's backward is clamped here.
_BNLL_THRESHOLD = np.float32(50.0)


# --- PReLU ---------------------------------------------------------------------------------------
@pjit
def prelu_forward(x, slope, shared, y):
    """``x``/``y``: (N, C, D); ``slope``: (C) or (1) when ``shared``. ``y`` may be ``x``."""
    n_img, channels, dim = x.shape
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        a = slope[0] if shared else slope[c]
        for i in range(dim):
            v = x[n, c, i]
            y[n, c, i] = max(v, _ZERO) + a * min(v, _ZERO)



@jit
def _sigmoid(x):
    """Caffe's ``0.5 * tanh(0.5 * x) + 0.5`` for a float ``x``: the literals are double, so
    it runs in double precision and rounds once (it does not overflow for large |x|)."""
    return np.float32(0.5 * np.tanh(0.5 * np.float64(x)) + 0.5)

@pjit
def prelu_slope_grad(x, dy, per_channel):
    """``per_channel[c] = sum over n, i of dy * x * (x <= 0)`` (one thread per channel)."""
    n_img, channels, dim = x.shape
    for c in prange(channels):
        total = np.float64(0.0)
        for n in range(n_img):
            for i in range(dim):
                # Caffe's literal product: +inf gives inf * 0 = NaN, as in Caffe.
                v = x[n, c, i]
                total += dy[n, c, i] * v * np.float32(v <= _ZERO)
        per_channel[c] = total


@pjit
def prelu_backward(x, dy, slope, shared, dx):
    """``dx = dy * ((x > 0) + slope * (x <= 0))``."""
    n_img, channels, dim = x.shape
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        a = slope[0] if shared else slope[c]
        for i in range(dim):
            v = x[n, c, i]
            # Caffe's gate, literally: a NaN input gets 0 (neither side of the comparison).
            dx[n, c, i] = dy[n, c, i] * (np.float32(v > _ZERO) + a * np.float32(v <= _ZERO))


# --- ELU -----------------------------------------------------------------------------------------
@pjit
def elu_forward(x, alpha, y):
    """``y = max(x, 0) + alpha * (exp(min(x, 0)) - 1)``."""
    for i in prange(x.size):
        v = x[i]
        y[i] = max(v, _ZERO) + alpha * (np.exp(min(v, _ZERO)) - _ONE)


@pjit
def elu_backward(x, y, dy, alpha, dx):
    """``dx = dy * ((x > 0) + (alpha + y) * (x <= 0))``; in place ``x`` is ``y`` and, for
    alpha > 0, has the same sign, so the result is unchanged."""
    for i in prange(x.size):
        v = x[i]
        # Caffe's gate, literally: for x = +inf, (alpha + inf) * 0 is NaN, as in Caffe.
        dx[i] = dy[i] * (np.float32(v > _ZERO) + (alpha + y[i]) * np.float32(v <= _ZERO))


# --- BNLL ----------------------------------------------------------------------------------------
@pjit
def bnll_forward(x, y):
    """``y = log(1 + exp(x))`` in the form that does not overflow; Caffe evaluates it in
    double precision."""
    for i in prange(x.size):
        v = np.float64(x[i])
        if v > 0:
            y[i] = v + np.log(1.0 + np.exp(-v))
        else:
            y[i] = np.log(1.0 + np.exp(v))


@pjit
def bnll_backward(x, dy, dx):
    """``dx = dy * e / (e + 1)`` with ``e = exp(min(x, 50))``."""
    for i in prange(x.size):
        e = np.exp(min(x[i], _BNLL_THRESHOLD))
        dx[i] = dy[i] * e / (e + _ONE)


# --- Power ---------------------------------------------------------------------------------------
@pjit
def power_forward(x, power, scale, shift, y):
    """``y = (shift + scale * x) ^ power``, skipping the steps Caffe skips (scale 1, shift 0,
    power 1) so that rounding is the same."""
    for i in prange(x.size):
        v = x[i]
        if scale != _ONE:
            v = v * scale
        if shift != _ZERO:
            v = v + shift
        if power != _ONE:
            v = v**power
        y[i] = v


@pjit
def power_grad(x, y, power, scale, shift, g):
    """The local derivative ``g = dy/dx`` as Caffe's PowerLayer::Backward_cpu computes it, for
    ``diff_scale = power * scale != 0`` and ``power != 1`` (the layer handles those cases):

    * power 2: ``g = diff_scale * scale * x + diff_scale * shift``;
    * shift 0: ``g = power * y / x`` (0/0 = NaN at x = 0, as in Caffe);
    * otherwise: ``g = diff_scale * y / (scale * x + shift)``.

    The layer then multiplies by the top diff, in a second pass, as Caffe does."""
    diff_scale = power * scale
    for i in prange(x.size):
        v = x[i]
        if power == np.float32(2.0):
            d = (diff_scale * scale) * v
            if shift != _ZERO:
                d = d + diff_scale * shift
        elif shift == _ZERO:
            d = (y[i] / v) * power
        else:
            d = v
            if scale != _ONE:
                d = d * scale
            d = d + shift
            d = y[i] / d
            if diff_scale != _ONE:
                d = d * diff_scale
        g[i] = d


# --- Exp -----------------------------------------------------------------------------------------
@pjit
def exp_forward(x, inner_scale, outer_scale, y):
    """``y = outer_scale * exp(inner_scale * x)``."""
    for i in prange(x.size):
        v = x[i]
        if inner_scale != _ONE:
            v = inner_scale * v
        v = np.exp(v)
        if outer_scale != _ONE:
            v = outer_scale * v
        y[i] = v


@pjit
def exp_backward(y, dy, inner_scale, dx):
    """``dx = dy * y * inner_scale`` (reads the output, so in place is exact)."""
    for i in prange(y.size):
        g = y[i] * dy[i]
        if inner_scale != _ONE:
            g = g * inner_scale
        dx[i] = g


# --- Log -----------------------------------------------------------------------------------------
@pjit
def log_forward(x, scale, shift, base_scale, y):
    """``y = base_scale * ln(scale * x + shift)``, ``base_scale = 1 / ln(base)``."""
    for i in prange(x.size):
        v = x[i]
        if scale != _ONE:
            v = scale * v
        if shift != _ZERO:
            v = v + shift
        v = np.log(v)
        if base_scale != _ONE:
            v = base_scale * v
        y[i] = v


@pjit
def log_grad(x, scale, shift, num_scale, g):
    """The local derivative ``g = num_scale / (scale * x + shift)``, ``num_scale = scale /
    ln(base)``; the layer multiplies it by the top diff in a second pass, as Caffe does."""
    for i in prange(x.size):
        v = x[i]
        if scale != _ONE:
            v = scale * v
        if shift != _ZERO:
            v = v + shift
        v = v ** np.float32(-1.0)
        if num_scale != _ONE:
            v = num_scale * v
        g[i] = v


# --- Threshold and Clip --------------------------------------------------------------------------
@pjit
def threshold_forward(x, threshold, y):
    """``y = 1 if x > threshold else 0``."""
    for i in prange(x.size):
        y[i] = _ONE if x[i] > threshold else _ZERO


@pjit
def clip_forward(x, lo, hi, y):
    """``y = max(lo, min(x, hi))``."""
    for i in prange(x.size):
        y[i] = max(lo, min(x[i], hi))


@pjit
def clip_backward(x, dy, lo, hi, dx):
    """``dx = dy * (lo <= x <= hi)``: Caffe lets the gradient through at the bounds too."""
    for i in prange(x.size):
        v = x[i]
        dx[i] = dy[i] if (v >= lo and v <= hi) else _ZERO


# --- Swish ---------------------------------------------------------------------------------------
@pjit
def swish_forward(x, beta, sig, y):
    """``sig = sigmoid(beta * x)`` (Caffe's Sigmoid: ``0.5 * tanh(0.5 z) + 0.5``) and
    ``y = x * sig``; ``y`` may be ``x``."""
    for i in prange(x.size):
        v = x[i]
        s = _sigmoid(beta * v)
        sig[i] = s
        y[i] = v * s


@pjit
def swish_backward(y, sig, dy, beta, dx):
    """``dx = dy * (beta * y + sig * (1 - beta * y))``; reads the output and the cached
    sigmoid, so in place is exact."""
    for i in prange(y.size):
        by = beta * y[i]
        dx[i] = dy[i] * (by + sig[i] * (_ONE - by))

@pjit
def relu_forward(x, slope, y):
    """``y = max(x, 0) + slope * min(x, 0)``; ``x`` and ``y`` may be the same array."""
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@pjit
def relu_backward(x, dy, slope, dx):
    """``dx = dy * ((x > 0) + slope * (x <= 0))``, Caffe's gate literally (a NaN input gets
    0); in place ``x`` is the output (same sign)."""
    for i in prange(x.size):
        v = x[i]
        dx[i] = dy[i] * (np.float32(v > _ZERO) + slope * np.float32(v <= _ZERO))


@pjit
def sigmoid_forward(x, y):
    for i in prange(x.size):
        y[i] = _sigmoid(x[i])


@pjit
def sigmoid_backward(y, dy, dx):
    for i in prange(y.size):
        dx[i] = dy[i] * y[i] * (np.float32(1.0) - y[i])


@pjit
def tanh_forward(x, y):
    for i in prange(x.size):
        y[i] = np.tanh(x[i])


@pjit
def tanh_backward(y, dy, dx):
    for i in prange(y.size):
        dx[i] = dy[i] * (np.float32(1.0) - y[i] * y[i])


# --- ReLU6 (MobileNet-SSD fork) ------------------------------------------------------------------
_SIX = np.float32(6.0)


@pjit
def relu6_forward(x, slope, y):
    """``y = min(max(x, 0), 6) + slope * min(x, 0)``; ``x`` and ``y`` may be the same array."""
    for i in prange(x.size):
        v = x[i]
        y[i] = min(max(v, _ZERO), _SIX) + slope * min(v, _ZERO)


@pjit
def relu6_backward(x, dy, slope, dx):
    """``dx = dy`` where ``0 < x < 6``, ``slope * dy`` where ``x <= 0``, else 0. In place ``x``
    is the output, which keeps those ranges for ``slope >= 0``."""
    for i in prange(x.size):
        v = x[i]
        # The gate literally, as the fork computes it: a NaN input gets 0.
        gate = np.float32((v > _ZERO) and (v < _SIX)) + slope * np.float32(v <= _ZERO)
        dx[i] = dy[i] * gate
