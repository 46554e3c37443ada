"""Kernels of the data path: Caffe's DataTransformer arithmetic (crop, mirror, mean, scale) and
OpenCV's bilinear resize of 8-bit images.

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
