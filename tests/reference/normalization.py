"""Caffe's normalization arithmetic (batch_norm_layer.cpp, mvn_layer.cpp, lrn_layer.cpp) in
float64 loops and whole-array NumPy, from the formulas rather than from Caffe's step order.

BatchNorm and LRN gradients are the true derivatives of their forwards; MVN's is Caffe's
formula, which treats ``std + eps`` as if it were the standard deviation. LRN WITHIN_CHANNEL is
built, as Caffe builds it, from AVE pooling (tests/reference/naive.py).
"""

from __future__ import annotations

import numpy as np

from . import naive

F64 = np.float64


# --- BatchNorm: x viewed as (N, C, S) ---------------------------------------------------------
def channel_mean_var(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel over N and S: the mean and the biased variance."""
    x = np.asarray(x, F64)
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[None, :, None]) ** 2).mean(axis=(0, 2))
    return mean, var


def batch_norm(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (np.asarray(x, F64) - np.asarray(mean, F64)[None, :, None]) \
        / np.asarray(std, F64)[None, :, None]


def batch_norm_grad(x: np.ndarray, dy: np.ndarray, eps: float) -> np.ndarray:
    """d/dx of ``(x - mean) / sqrt(var + eps)`` with the batch's mean and variance:
    ``(dy - mean(dy) - y * mean(dy * y)) / std`` per channel."""
    mean, var = channel_mean_var(x)
    std = np.sqrt(var + eps)
    y = batch_norm(x, mean, std)
    dy = np.asarray(dy, F64)
    m = x.shape[0] * x.shape[2]
    sum_dy = dy.sum(axis=(0, 2))[None, :, None]
    sum_dyy = (dy * y).sum(axis=(0, 2))[None, :, None]
    return (dy - sum_dy / m - y * sum_dyy / m) / std[None, :, None]


# --- MVN: x viewed as (rows, dim) --------------------------------------------------------------
def mvn(x: np.ndarray, normalize_variance: bool, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(y, std) per row: ``y = x - mean``, and with ``normalize_variance`` divided by
    ``std = sqrt(E((x - mean)^2)) + eps`` (eps on the deviation, as Caffe adds it)."""
    x = np.asarray(x, F64)
    centred = x - x.mean(axis=1, keepdims=True)
    if not normalize_variance:
        return centred, np.zeros(x.shape[0])
    std = np.sqrt((centred**2).mean(axis=1)) + eps
    return centred / std[:, None], std


def mvn_grad(y: np.ndarray, dy: np.ndarray, normalize_variance: bool,
             std: np.ndarray) -> np.ndarray:
    """Caffe's MVN Backward_cpu formula per row: ``(dy - (sum(dy * y) * y + sum(dy)) / dim)
    / std``, or ``dy - mean(dy)`` without variance normalization."""
    y, dy, std = (np.asarray(a, F64) for a in (y, dy, std))
    dim = y.shape[1]
    if not normalize_variance:
        return dy - dy.mean(axis=1, keepdims=True)
    sums = (dy * y).sum(axis=1, keepdims=True) * y + dy.sum(axis=1, keepdims=True)
    return (dy - sums / dim) / std[:, None]


def mvn_grad_in_place(y: np.ndarray, dy: np.ndarray, std: np.ndarray) -> np.ndarray:
    """What Caffe's MVN Backward_cpu (with variance normalization) leaves in the diff when the
    layer runs in place, so that bottom diff and top diff are one array ``d``: its steps, each
    reading the array the previous ones overwrote::

        d = y * d;  s = sum(d);  d = y * s;  d = d + sum(d);  d = d - d / dim;  d = d / std

    (the true gradient is lost: Caffe's behaviour, which pyforge reproduces)."""
    y, d, std = (np.asarray(a, F64).copy() for a in (y, dy, std))
    dim = y.shape[1]
    d = y * d
    d = y * d.sum(axis=1, keepdims=True)
    d = d + d.sum(axis=1, keepdims=True)
    d = d - d / dim
    return d / std[:, None]


# --- LRN ACROSS_CHANNELS: x viewed as (N, C, P) ------------------------------------------------
def across_window(c: int, size: int, channels: int) -> range:
    """The channels summed for channel ``c``: Caffe pads ``(size - 1) / 2`` channels before
    and the rest after (symmetric for the odd sizes the layer allows), clipped."""
    first = c - (size - 1) // 2
    return range(max(first, 0), min(first + size, channels))


def lrn_across_scale(x: np.ndarray, size: int, alpha: float, k: float) -> np.ndarray:
    """``k + alpha / size * sum of x^2 over the window of each channel``."""
    x = np.asarray(x, F64)
    scale = np.empty_like(x)
    for c in range(x.shape[1]):
        window = list(across_window(c, size, x.shape[1]))
        scale[:, c] = k + alpha / size * (x[:, window] ** 2).sum(axis=1)
    return scale


def lrn_across_grad(x: np.ndarray, dy: np.ndarray, size: int, alpha: float, beta: float,
                    k: float) -> np.ndarray:
    """d/dx of ``y_c = x_c * scale_c^-beta``: ``dy_c scale_c^-beta - 2 alpha beta / size * x_c
    * sum over the channels c' whose window holds c of dy_c' y_c' / scale_c'``."""
    x, dy = np.asarray(x, F64), np.asarray(dy, F64)
    scale = lrn_across_scale(x, size, alpha, k)
    y = x * scale**-beta
    ratio = dy * y / scale
    channels = x.shape[1]
    dx = dy * scale**-beta
    for c in range(channels):
        holders = [c2 for c2 in range(channels) if c in across_window(c2, size, channels)]
        dx[:, c] -= 2 * alpha * beta / size * x[:, c] * ratio[:, holders].sum(axis=1)
    return dx


# --- LRN WITHIN_CHANNEL: x viewed as (planes, H, W) --------------------------------------------
def lrn_within_pooled(x: np.ndarray, size: int) -> np.ndarray:
    """Caffe's AVE pooling of x^2 with kernel ``size``, stride 1, pad ``(size - 1) / 2``."""
    pad = (size - 1) // 2
    squares = np.asarray(x, F64)[None] ** 2
    return naive.ave_pool(squares, size, size, 1, 1, pad, pad)[0]


def lrn_within_grad(x: np.ndarray, dy: np.ndarray, size: int, alpha: float,
                    beta: float) -> np.ndarray:
    """d/dx of ``y = x * (1 + alpha * pooled)^-beta``: ``dy * power`` plus, back through the
    pooling and the square, ``2 x * pool_backward(dy * x * -beta * alpha * power / (1 + alpha
    * pooled))``."""
    x, dy = np.asarray(x, F64), np.asarray(dy, F64)
    pad = (size - 1) // 2
    base = 1 + alpha * lrn_within_pooled(x, size)
    power = base**-beta
    d_pooled = dy * x * -beta * alpha * power / base
    d_squares = naive.ave_pool_backward(d_pooled[None], (1, *x.shape), size, size, 1, 1, pad,
                                        pad)[0]
    return dy * power + 2 * x * d_squares
