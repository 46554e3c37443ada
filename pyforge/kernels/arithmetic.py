"""Elementwise kernels of the Eltwise layer over flat float32 arrays, in parallel.

Each product with a coefficient is rounded before the sum, and a coefficient of 1 multiplies
nothing, as the layer computed with NumPy before (``out = a * c0``, then ``out += c1 * b``).
"""

from __future__ import annotations

from ._jit import pjit, prange


@pjit
def weighted_sum2(a, ca, b, cb, out):
    """``out = a * ca + b * cb`` (``b`` unscaled when ``cb`` is 1); ``out`` may be ``a``."""
    if cb == 1:
        for i in prange(out.size):
            out[i] = a[i] * ca + b[i]
    else:
        for i in prange(out.size):
            out[i] = a[i] * ca + b[i] * cb


@pjit
def add_scaled(out, b, cb):
    """``out += b * cb`` (``b`` unscaled when ``cb`` is 1)."""
    if cb == 1:
        for i in prange(out.size):
            out[i] += b[i]
    else:
        for i in prange(out.size):
            out[i] += b[i] * cb


@pjit
def scaled_copy(src, c, out):
    """``out = src * c``."""
    for i in prange(out.size):
        out[i] = src[i] * c
