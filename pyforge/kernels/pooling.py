"""Max and average pooling, forward next to backward, with Caffe's window rules.

Windows start at ``y*stride - pad``. MAX clips the window to the image and keeps the first
maximum (strict ``>``), recording its flat index ``h*W + w`` in ``mask``. AVE divides by the
window size clipped to the *padded* image (padding counts), then sums only the pixels inside.
"""

from __future__ import annotations

import numpy as np

from ._jit import pjit, prange

_NEG_FLT_MAX = np.float32(-3.4028234663852886e38)


@pjit
def max_pool_forward(x, kh, kw, sh, sw, ph, pw, top, mask):
    n_img, channels, height, width = x.shape
    oh = top.shape[2]
    ow = top.shape[3]
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        # 2-D views of one plane: fewer index computations in the innermost loops.
        plane = x[n, c]
        out = top[n, c]
        where = mask[n, c]
        for y in range(oh):
            hs = y * sh - ph
            he = min(hs + kh, height)
            hs = max(hs, 0)
            for xo in range(ow):
                ws = xo * sw - pw
                we = min(ws + kw, width)
                ws = max(ws, 0)
                best = _NEG_FLT_MAX
                idx = -1
                for i in range(hs, he):
                    row = plane[i]
                    for j in range(ws, we):
                        v = row[j]
                        if v > best:
                            best = v
                            idx = i * width + j
                out[y, xo] = best
                where[y, xo] = idx


@pjit
def max_pool_backward(top_diff, mask, dx):
    n_img, channels, height, width = dx.shape
    oh = top_diff.shape[2]
    ow = top_diff.shape[3]
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        for i in range(height):
            for j in range(width):
                dx[n, c, i, j] = 0.0
        for y in range(oh):
            for xo in range(ow):
                idx = mask[n, c, y, xo]
                if idx >= 0:
                    dx[n, c, idx // width, idx % width] += top_diff[n, c, y, xo]


@pjit
def ave_pool_forward(x, kh, kw, sh, sw, ph, pw, top):
    n_img, channels, height, width = x.shape
    oh = top.shape[2]
    ow = top.shape[3]
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        for y in range(oh):
            hs = y * sh - ph
            he = min(hs + kh, height + ph)
            for xo in range(ow):
                ws = xo * sw - pw
                we = min(ws + kw, width + pw)
                pool_size = (he - hs) * (we - ws)
                total = np.float32(0.0)
                for i in range(max(hs, 0), min(he, height)):
                    for j in range(max(ws, 0), min(we, width)):
                        total += x[n, c, i, j]
                top[n, c, y, xo] = total / pool_size


@pjit
def ave_pool_backward(top_diff, kh, kw, sh, sw, ph, pw, dx):
    n_img, channels, height, width = dx.shape
    oh = top_diff.shape[2]
    ow = top_diff.shape[3]
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        for i in range(height):
            for j in range(width):
                dx[n, c, i, j] = 0.0
        for y in range(oh):
            hs = y * sh - ph
            he = min(hs + kh, height + ph)
            for xo in range(ow):
                ws = xo * sw - pw
                we = min(ws + kw, width + pw)
                pool_size = (he - hs) * (we - ws)
                g = top_diff[n, c, y, xo] / pool_size
                for i in range(max(hs, 0), min(he, height)):
                    for j in range(max(ws, 0), min(we, width)):
                        dx[n, c, i, j] += g
