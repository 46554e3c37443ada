"""Kernels of the forks' ``BN`` layer (PSPNet's and SegNet's), forward next to backward.

``x`` is viewed as (N, C, S). Both forks normalise with per-channel statistics and then
apply a learned per-channel ``scale`` (PSPNet: slope) and ``shift`` (PSPNet: bias):
``y = scale * x_norm + shift``. They differ in how they get ``x_norm`` from ``x``:
PSPNet multiplies ``x - mean`` by ``(var + eps)^-1/2``, SegNet divides it by
``sqrt(var + eps)``; the caller passes the per-channel factor and ``divide``.
Sums accumulate in float64 and store float32 (the forks sum in float32 with BLAS).
"""

from __future__ import annotations

import numpy as np

from ._jit import pjit, prange


@pjit
def channel_mean_and_square(x, mean, mean_sq):
    """Per channel over N and S: ``E(x)`` and ``E(x^2)`` (SegNet takes the variance as
    ``E(x^2) - E(x)^2``)."""
    n_img, channels, spatial = x.shape
    m = n_img * spatial
    for c in prange(channels):
        total = 0.0
        squares = 0.0
        for n in range(n_img):
            for s in range(spatial):
                v = x[n, c, s]
                total += v
                squares += v * v
        mean[c] = np.float32(total / m)
        mean_sq[c] = np.float32(squares / m)


@pjit
def bn_forward(x, mean, factor, divide, scale, shift, y, x_norm):
    """``x_norm = (x - mean) * factor`` (or ``/ factor`` when ``divide``), then
    ``y = scale * x_norm + shift``; ``y`` may be ``x``."""
    n_img, channels, spatial = x.shape
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        mu = mean[c]
        f = factor[c]
        a = scale[c]
        b = shift[c]
        for s in range(spatial):
            d = x[n, c, s] - mu
            v = d / f if divide else d * f
            x_norm[n, c, s] = v
            y[n, c, s] = v * a + b


@pjit
def bn_affine_forward(x, scale, shift, y):
    """SegNet's INFERENCE mode: ``y = scale * x + shift`` (the statistics are folded into
    scale and shift by the fork's compute_bn_statistics script)."""
    n_img, channels, spatial = x.shape
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        a = scale[c]
        b = shift[c]
        for s in range(spatial):
            y[n, c, s] = x[n, c, s] * a + b


@pjit
def bn_backward(x_norm, dy, scale, factor, divide, need_scale, need_shift, need_dx, dscale,
                dshift, dx):
    """The batch-statistics gradient of both forks, with ``g = dy * scale`` and
    ``m = N * S``::

        dscale += sum(dy * x_norm)     dshift += sum(dy)
        dx = (g - (sum(g) + x_norm * sum(g * x_norm)) / m) * factor   (or / factor)

    Parameter diffs accumulate; all sums of a channel are taken before its ``dx`` is
    written, so ``dx`` may be ``dy``."""
    n_img, channels, spatial = x_norm.shape
    inv_m = np.float32(-1.0 / (n_img * spatial))
    for c in prange(channels):
        sum_dy = 0.0
        sum_dy_xn = 0.0
        for n in range(n_img):
            for s in range(spatial):
                g = dy[n, c, s]
                sum_dy += g
                sum_dy_xn += g * x_norm[n, c, s]
        if need_scale:
            dscale[c] += np.float32(sum_dy_xn)
        if need_shift:
            dshift[c] += np.float32(sum_dy)
        if not need_dx:
            continue
        a = scale[c]
        sum_g = np.float32(sum_dy) * a
        sum_g_xn = np.float32(sum_dy_xn) * a
        f = factor[c]
        for n in range(n_img):
            for s in range(spatial):
                t = (dy[n, c, s] * a + inv_m * (sum_g + x_norm[n, c, s] * sum_g_xn))
                dx[n, c, s] = t / f if divide else t * f


@pjit
def bn_affine_backward(x, dy, scale, need_scale, need_shift, need_dx, dscale, dshift, dx):
    """Gradient of ``y = scale * x + shift`` with constant statistics: ``dx = dy * scale``,
    ``dscale += sum(dy * x)``, ``dshift += sum(dy)`` (each when asked). ``x`` is
    what the bottom holds at backward time (the top itself when the layer ran in place, as
    in the fork). ``dx`` may be ``dy``."""
    n_img, channels, spatial = x.shape
    for c in prange(channels):
        if need_scale or need_shift:
            sum_dy = 0.0
            sum_dy_x = 0.0
            for n in range(n_img):
                for s in range(spatial):
                    g = dy[n, c, s]
                    sum_dy += g
                    sum_dy_x += g * x[n, c, s]
            if need_scale:
                dscale[c] += np.float32(sum_dy_x)
            if need_shift:
                dshift[c] += np.float32(sum_dy)
        if need_dx:
            a = scale[c]
            for n in range(n_img):
                for s in range(spatial):
                    dx[n, c, s] = dy[n, c, s] * a
