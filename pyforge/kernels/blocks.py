"""Copies between a blob and a band of columns of a wider one (Concat and Slice), in parallel.

Viewed as 2-D (the axes before the concatenation axis, then the rest), each bottom of a Concat
is a band of columns of its top. NumPy copies such bands on one thread; these kernels share
the rows, cut into pieces of ``PIECE`` values so that a batch of one still keeps both cores
busy (SqueezeNet's and GoogLeNet's Concats copy 200 MB per forward: the layer is memory
bound, and one core does not saturate the memory bus).
"""

from __future__ import annotations

from ._jit import pjit, prange

PIECE = 16384


@pjit
def place_columns(src, dst, offset):
    """``dst[:, offset:offset + src.shape[1]] = src`` for 2-D ``src`` and ``dst``."""
    rows, width = src.shape
    per_row = (width + PIECE - 1) // PIECE
    for k in prange(rows * per_row):
        r = k // per_row
        start = (k % per_row) * PIECE
        stop = min(width, start + PIECE)
        dst[r, offset + start:offset + stop] = src[r, start:stop]


@pjit
def take_columns(src, offset, dst):
    """``dst = src[:, offset:offset + dst.shape[1]]`` for 2-D ``src`` and ``dst``."""
    rows, width = dst.shape
    per_row = (width + PIECE - 1) // PIECE
    for k in prange(rows * per_row):
        r = k // per_row
        start = (k % per_row) * PIECE
        stop = min(width, start + PIECE)
        dst[r, start:stop] = src[r, offset + start:offset + stop]

