"""Kernels of the data path: Caffe's DataTransformer arithmetic (crop, mirror, mean, scale),
OpenCV's bilinear resize of 8-bit images, and Snappy decompression of LevelDB blocks.

Serial on purpose: these run in the prefetch thread, and Numba's default threading layer must not
be entered from two threads at once.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit


@jit
def transform_batch(raw, h_off, w_off, mirror, mean, scale, out):
    """``out[n, c, h, w] = (raw[n, c, h+h_off[n], w'+w_off[n]] - mean[c, h+h_off, w'+w_off])
    * scale`` with ``w' = W_out-1-w`` when ``mirror[n]``.

    ``raw`` is (N, C, H, W) uint8 or float32; ``mean`` is the full uncropped (C, H, W) mean
    (zeros when there is none); ``out`` is (N, C, crop_h, crop_w) float32. Caffe subtracts the
    mean before scaling.
    """
    n_img, channels, out_h, out_w = out.shape
    for p in range(n_img * channels):
        n = p // channels
        c = p % channels
        ho = h_off[n]
        wo = w_off[n]
        flip = mirror[n]
        for h in range(out_h):
            for w in range(out_w):
                src_w = w + wo
                dst_w = out_w - 1 - w if flip else w
                value = raw[n, c, h + ho, src_w] - mean[c, h + ho, src_w]
                out[n, c, h, dst_w] = value * scale


@jit
def resize_linear(src, xofs, alpha, yofs, beta, out):
    """OpenCV's ``cv::resize(..., INTER_LINEAR)`` of 8-bit planar images, in its fixed-point form.

    ``src`` is (C, H, W) uint8 and ``out`` (C, h, w) uint8. ``xofs``/``yofs`` hold the left/top
    source pixel of each output column/row and ``alpha``/``beta`` its two weights scaled by 2048
    (see :func:`pyforge.io.datum.linear_resize_tables`). The horizontal pass keeps integer sums;
    the vertical pass rounds as OpenCV's vectorised loop does:
    ``((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16) + 2 >> 2``. (OpenCV's scalar tail of each
    row rounds the exact sum instead, which can differ by one grey level.)
    """
    channels, src_h, src_w = src.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for c in range(channels):
        for dy in range(out_h):
            y0 = yofs[dy]
            y1 = min(y0 + 1, src_h - 1)
            b0 = beta[dy, 0]
            b1 = beta[dy, 1]
            for dx in range(out_w):
                x0 = xofs[dx]
                x1 = min(x0 + 1, src_w - 1)
                a0 = alpha[dx, 0]
                a1 = alpha[dx, 1]
                h0 = np.int64(src[c, y0, x0]) * a0 + np.int64(src[c, y0, x1]) * a1
                h1 = np.int64(src[c, y1, x0]) * a0 + np.int64(src[c, y1, x1]) * a1
                value = (((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16)
                value = (value + 2) >> 2
                out[c, dy, dx] = min(max(value, 0), 255)


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
