"""Elementwise activation kernels over flat float32 arrays; forward next to backward."""

from __future__ import annotations

import numpy as np

from ._jit import pjit, prange


@pjit
def relu_forward(x, slope, y):
    """``y = max(x, 0) + slope * min(x, 0)``; ``x`` and ``y`` may be the same array."""
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@pjit
def relu_backward(x, dy, slope, dx):
    """``dx = dy * ((x > 0) + slope * (x <= 0))``; in place ``x`` is the output (same sign)."""
    for i in prange(x.size):
        dx[i] = dy[i] if x[i] > 0 else dy[i] * slope


@pjit
def sigmoid_forward(x, y):
    # Caffe computes 0.5 * tanh(0.5 x) + 0.5, which does not overflow for large |x|.
    for i in prange(x.size):
        y[i] = np.float32(0.5) * np.tanh(np.float32(0.5) * x[i]) + np.float32(0.5)


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
