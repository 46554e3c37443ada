"""Kernels of the normalization layers (BatchNorm, MVN, LRN), forward next to backward.

Arrays are contiguous float32; scalars are passed as ``np.float32``. Reductions accumulate in
float64 and store float32 (Caffe sums in float32 through BLAS; only the last bits differ).
The kernels follow the order of Caffe's Forward_cpu/Backward_cpu steps, including where they
read and write, so where a layer runs in place (top == bottom, hence top diff == bottom diff)
the results are Caffe's.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


# --- BatchNorm: x viewed as (N, C, S) ------------------------------------------------------------
@pjit
def channel_mean_var(x, mean, var):
    """Per channel over N and S: ``mean`` and the biased variance ``E((x - mean)^2)``, where
    ``x - mean`` is rounded to float32 first, as Caffe subtracts before squaring."""
    n_img, channels, spatial = x.shape
    m = n_img * spatial
    for c in prange(channels):
        total = 0.0
        for n in range(n_img):
            for s in range(spatial):
                total += x[n, c, s]
        mu = np.float32(total / m)
        mean[c] = mu
        sq = 0.0
        for n in range(n_img):
            for s in range(spatial):
                d = x[n, c, s] - mu
                sq += d * d
        var[c] = np.float32(sq / m)


@pjit
def batch_norm_forward(x, mean, std, keep_norm, y, x_norm):
    """``y = (x - mean[c]) / std[c]``; with ``keep_norm``, ``x_norm`` keeps a copy of ``y``
    for the batch-statistics Backward (a later in-place layer may overwrite ``y``; with
    stored statistics Backward needs only ``std``). ``y`` may be ``x``."""
    n_img, channels, spatial = x.shape
    in_place = x.ctypes.data == y.ctypes.data
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        mu = mean[c]
        sd = std[c]
        dst = y[n, c]
        if not in_place:
            dst[:] = x[n, c]
        # One array in the loop: with two that may alias, LLVM's runtime overlap check
        # fails in place and the loop runs unvectorised (3x slower).
        for s in range(spatial):
            dst[s] = (dst[s] - mu) / sd
        if keep_norm:
            kept = x_norm[n, c]
            for s in range(spatial):
                kept[s] = dst[s]


@pjit
def batch_norm_backward(x_norm, dy, std, dx):
    """Caffe's batch-statistics gradient, with ``m = N * S`` and sums over N and S::

        dx = (dy - (sum(dy) + sum(dy * y) * y) / m) / std

    All sums of a channel are taken before its ``dx`` is written, so ``dx`` may be ``dy``."""
    n_img, channels, spatial = x_norm.shape
    inv_m = np.float32(-1.0 / (n_img * spatial))
    for c in prange(channels):
        sum_dyy = 0.0
        sum_dy = 0.0
        for n in range(n_img):
            for s in range(spatial):
                g = dy[n, c, s]
                sum_dyy += g * x_norm[n, c, s]
                sum_dy += g
        a = np.float32(sum_dyy)
        b = np.float32(sum_dy)
        sd = std[c]
        for n in range(n_img):
            for s in range(spatial):
                t = x_norm[n, c, s] * a + b
                dx[n, c, s] = (dy[n, c, s] + inv_m * t) / sd


@pjit
def divide_by_channel(dy, std, dx):
    """``dx = dy / std[c]`` (BatchNorm with global statistics)."""
    n_img, channels, spatial = dy.shape
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        sd = std[c]
        for s in range(spatial):
            dx[n, c, s] = dy[n, c, s] / sd


# --- MVN: x viewed as (rows, dim) ----------------------------------------------------------------
@pjit
def mvn_forward(x, normalize_variance, eps, y, std):
    """Per row: ``y = x - mean``; with ``normalize_variance`` also ``std = sqrt(E(y^2)) + eps``
    (eps is added to the standard deviation, as in Caffe) and ``y /= std``."""
    rows, dim = x.shape
    inv_dim = 1.0 / dim
    for r in prange(rows):
        total = 0.0
        for i in range(dim):
            total += x[r, i]
        mu = np.float32(total * inv_dim)
        for i in range(dim):
            y[r, i] = x[r, i] - mu
        if normalize_variance:
            sq = 0.0
            for i in range(dim):
                v = y[r, i]
                sq += v * v
            sd = np.float32(sq * inv_dim) ** np.float32(0.5) + eps
            std[r] = sd
            for i in range(dim):
                y[r, i] = y[r, i] / sd


@pjit
def mvn_backward(y, dy, normalize_variance, std, dx):
    """Caffe's MVN gradient, step by step per row (so that ``dx`` may be ``dy``, as Caffe's
    in place use computes it). With ``normalize_variance``::

        dx = (dy - (sum(dy * y) * y + sum(dy)) / dim) / std

    and without it ``dx = dy - mean(dy)``. The formula treats ``std + eps`` as if it were the
    plain standard deviation, as Caffe does."""
    rows, dim = y.shape
    inv_dim = 1.0 / dim
    neg_inv_dim = np.float32(-1.0 / dim)
    for r in prange(rows):
        if normalize_variance:
            total = 0.0
            for i in range(dim):
                v = y[r, i] * dy[r, i]
                dx[r, i] = v
                total += v
            a = np.float32(total)
            for i in range(dim):
                dx[r, i] = y[r, i] * a
            total = 0.0
            for i in range(dim):
                total += dy[r, i]
            b = np.float32(total)
            for i in range(dim):
                dx[r, i] = b + dx[r, i]
            sd = std[r]
            for i in range(dim):
                dx[r, i] = (dy[r, i] + neg_inv_dim * dx[r, i]) / sd
        else:
            total = 0.0
            for i in range(dim):
                total += dy[r, i]
            mu = np.float32(total * inv_dim)
            for i in range(dim):
                dx[r, i] = dy[r, i] - mu


# --- LRN, ACROSS_CHANNELS: x viewed as (N, C, H*W) -------------------------------------------
# (The powers ``scale^-beta`` are taken by the layer with NumPy, whose float32 power is several
# times faster than Numba's.)
@pjit
def lrn_across_scale(x, size, alpha_over_size, k, scale):
    """``scale[c] = k + alpha/n * sum of x[c']^2 over c' in [c - (n-1)/2, c + (n-1)/2]`` (zero
    outside), kept as a running sum over channels as Caffe does: add the head, subtract the
    tail."""
    n_img, channels, plane = x.shape
    pre_pad = (size - 1) // 2
    for n in prange(n_img):
        for p in range(plane):
            scale[n, 0, p] = k
        # The window of channel 0, clipped to the channels (a huge local_size must not loop
        # over channels that do not exist).
        for src in range(0, min(channels, size - pre_pad)):
            for p in range(plane):
                v = x[n, src, p]
                scale[n, 0, p] += alpha_over_size * (v * v)
        for c in range(1, channels):
            head = c + size - 1 - pre_pad
            tail = c - 1 - pre_pad
            for p in range(plane):
                scale[n, c, p] = scale[n, c - 1, p]
            if head < channels:
                for p in range(plane):
                    v = x[n, head, p]
                    scale[n, c, p] += alpha_over_size * (v * v)
            if tail >= 0:
                for p in range(plane):
                    v = x[n, tail, p]
                    scale[n, c, p] += (-alpha_over_size) * (v * v)


@pjit
def lrn_across_backward(x, y, scale, dy, size, cache_ratio, ratio, accum, dx):
    """Caffe's CrossChannelBackward_cpu after its first step (``dx`` already holds
    ``dy * scale^-beta``)::

        dx[c] -= 2 alpha beta / n * x[c] * sum over the window of c of dy * y / scale

    ``ratio`` (N, C, H*W) and ``accum`` (N, H*W) are work buffers. ``size`` is odd (the
    layer refuses even ones, as Caffe does): the running window is centred on ``c``."""
    n_img, channels, plane = x.shape
    pre_pad = (size - 1) // 2
    for n in prange(n_img):
        for c in range(channels):
            for p in range(plane):
                ratio[n, c, p] = dy[n, c, p] * y[n, c, p] / scale[n, c, p]
        for p in range(plane):
            accum[n, p] = _ZERO
        for src in range(0, min(channels, size - 1 - pre_pad)):
            for p in range(plane):
                accum[n, p] += ratio[n, src, p]
        for c in range(channels):
            head = c + pre_pad
            tail = c - pre_pad
            if head < channels:
                for p in range(plane):
                    accum[n, p] += ratio[n, head, p]
            for p in range(plane):
                dx[n, c, p] += (-cache_ratio) * (x[n, c, p] * accum[n, p])
            if tail >= 0:
                for p in range(plane):
                    accum[n, p] -= ratio[n, tail, p]


# --- LRN, WITHIN_CHANNEL: x viewed as (N*C, H, W) ---------------------------------------------
@jit
def _box_sum(src, size, rows, dst):
    """``dst[h, w] = sum of src over the size x size window centred on (h, w)``, clipped to the
    plane; as a sum along rows then along columns (``rows`` is a work plane). The loops run
    over the offset first so that the inner loops are contiguous."""
    height, width = src.shape
    pad = (size - 1) // 2
    for h in range(height):
        for w in range(width):
            rows[h, w] = _ZERO
        for d in range(max(-pad, 1 - width), min(pad, width - 1) + 1):
            for w in range(max(-d, 0), min(width - d, width)):
                rows[h, w] += src[h, w + d]
    for h in range(height):
        for w in range(width):
            dst[h, w] = _ZERO
        for i in range(max(h - pad, 0), min(h + pad + 1, height)):
            for w in range(width):
                dst[h, w] += rows[i, w]


@jit
def _window_size(i, extent, size):
    """Caffe's AVE pooling window extent along one axis for output ``i`` (stride 1, pad
    (size-1)/2): clipped to the padded image, not to the image; always ``size`` here."""
    pad = (size - 1) // 2
    start = i - pad
    return min(start + size, extent + pad) - start


@pjit
def lrn_within_pool(x, size, squares, rows, pooled):
    """Caffe builds this region from layers: Power (x^2) -> AVE Pooling (kernel n, stride 1,
    pad (n-1)/2) -> Power (``(1 + alpha * p)^-beta``, taken by the layer) -> Eltwise PROD with
    x. This is the pooling of the squares: the window sum divided by the window size clipped
    to the *padded* image, which with stride 1 and this pad is n*n everywhere. ``squares`` and
    ``rows`` are work buffers of ``x``'s shape."""
    planes, height, width = x.shape
    for p in prange(planes):
        for h in range(height):
            for w in range(width):
                v = x[p, h, w]
                squares[p, h, w] = v * v
        _box_sum(squares[p], size, rows[p], pooled[p])
        for h in range(height):
            kh = _window_size(h, height, size)
            for w in range(width):
                pooled[p, h, w] /= np.float32(kh * _window_size(w, width, size))


@pjit
def lrn_within_backward(x, pooled, power, dy, size, alpha, neg_beta, d_pooled, rows, d_sq,
                        dx):
    """Backward through the same layers: Eltwise PROD (``dy * x`` to the power branch,
    ``dy * power`` to x), Power (``diff_scale * power / (1 + alpha * p)`` with
    ``diff_scale = -beta * alpha``), AVE pooling (each output's diff / its window size, spread
    over its window), Power x^2 (``2 x``); then Split adds the two branches. ``d_pooled``,
    ``rows`` and ``d_sq`` are work buffers of ``x``'s shape."""
    planes, height, width = x.shape
    diff_scale = neg_beta * alpha
    for p in prange(planes):
        for h in range(height):
            kh = _window_size(h, height, size)
            for w in range(width):
                g = pooled[p, h, w]
                if alpha != _ONE:
                    g = alpha * g
                g = power[p, h, w] / (g + _ONE)
                if diff_scale != _ONE:
                    g = g * diff_scale
                g = (x[p, h, w] * dy[p, h, w]) * g
                d_pooled[p, h, w] = g / np.float32(kh * _window_size(w, width, size))
        # With stride 1 and symmetric padding the windows containing (h, w) are those of the
        # outputs within the same square around it.
        _box_sum(d_pooled[p], size, rows[p], d_sq[p])
        for h in range(height):
            for w in range(width):
                v = x[p, h, w]
                dx[p, h, w] = dy[p, h, w] * power[p, h, w] + d_sq[p, h, w] * (np.float32(2.0) * v)
