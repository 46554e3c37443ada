"""Kernels of SENet's Axpy (``top = scale * x + y`` with one scale per image and channel),
forward next to backward. Blobs are viewed as (N, C, S); scale as (N, C)."""

from __future__ import annotations

import numpy as np

from ._jit import pjit, prange


@pjit
def axpy_forward(scale, x, y, top):
    """``top = scale[n, c] * x + y``; ``top`` may be ``y``."""
    n_img, channels, spatial = x.shape
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        a = scale[n, c]
        for s in range(spatial):
            top[n, c, s] = a * x[n, c, s] + y[n, c, s]


@pjit
def axpy_backward(scale, x, dtop, need_scale, need_x, dscale, dx):
    """``dscale[n, c] = sum_s(dtop * x)`` and ``dx = scale * dtop`` (the diff of ``y`` is
    ``dtop`` itself and is copied by the caller)."""
    n_img, channels, spatial = x.shape
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        if need_scale:
            total = 0.0
            for s in range(spatial):
                total += dtop[n, c, s] * x[n, c, s]
            dscale[n, c] = np.float32(total)
        if need_x:
            a = scale[n, c]
            for s in range(spatial):
                dx[n, c, s] = a * dtop[n, c, s]
