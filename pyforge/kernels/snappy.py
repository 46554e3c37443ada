"""Snappy decompression of LevelDB's table blocks (Caffe's LevelDB databases compress them).

Serial on purpose: it runs in the data prefetch thread, and Numba's default threading layer must
not be entered from two threads at once.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit


@jit
def snappy_decompress(src, start, dst):
    """Decode the raw Snappy stream ``src[start:]`` into ``dst`` (sized from its preamble).

    LevelDB compresses table blocks with Snappy. Returns the number of bytes written, or -1
    when the stream is corrupt (a tag runs past the input, a copy reaches before the output's
    start, or the output would overflow ``dst``).
    """
    i = start
    n = src.shape[0]
    o = 0
    size = dst.shape[0]
    while i < n:
        tag = np.int64(src[i])
        i += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                if i + extra > n:
                    return -1
                length = 0
                for b in range(extra):
                    length |= np.int64(src[i + b]) << (8 * b)
                i += extra
            length += 1
            if i + length > n or o + length > size:
                return -1
            for b in range(length):
                dst[o + b] = src[i + b]
            i += length
            o += length
            continue
        if kind == 1:  # copy with a 1-byte offset
            if i >= n:
                return -1
            length = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | np.int64(src[i])
            i += 1
        elif kind == 2:  # copy with a 2-byte offset
            if i + 2 > n:
                return -1
            length = (tag >> 2) + 1
            offset = np.int64(src[i]) | (np.int64(src[i + 1]) << 8)
            i += 2
        else:  # copy with a 4-byte offset
            if i + 4 > n:
                return -1
            length = (tag >> 2) + 1
            offset = 0
            for b in range(4):
                offset |= np.int64(src[i + b]) << (8 * b)
            i += 4
        if offset == 0 or offset > o or o + length > size:
            return -1
        # Byte by byte: a copy may overlap the bytes it produces (run-length style).
        for b in range(length):
            dst[o + b] = dst[o - offset + b]
        o += length
    return o
