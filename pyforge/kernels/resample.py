"""Resampling kernels: PSPNet/DeepLab's Interp (bilinear) and SegNet's Upsample (max
unpooling), forward next to backward. Arrays are (planes, H, W) views of (N, C, H, W) blobs;
planes run in parallel and never share memory.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange


@jit
def _interp_ratio(size_in, size_out):
    # The fork maps the corners onto the corners: (in - 1) / (out - 1), in float32.
    if size_out > 1:
        return np.float32(size_in - 1) / np.float32(size_out - 1)
    return np.float32(0.0)


@jit
def _source(ratio, index, size_in):
    """The fork's source coordinate of output ``index``: its integer part, the step to the
    next neighbour (0 at the window's last row/column) and the two weights, in float32."""
    real = ratio * np.float32(index)
    whole = int(real)
    step = 1 if whole < size_in - 1 else 0
    far = real - np.float32(whole)
    return whole, step, np.float32(1.0) - far, far


@pjit
def interp_forward(x, off, height_in, width_in, y):
    """Bilinear resize of the window ``x[:, off:off+height_in, off:off+width_in]`` onto
    ``y``, as the fork's caffe_cpu_interp2 computes it: source coordinate
    ``ratio * out_index`` (float32), its integer part and the two weights per axis, the right
    or lower neighbour clamped to the window's last row/column. A window as large as the
    output is copied. (``off`` is -pad_beg for both axes: the fork crops both with pad_beg.)
    """
    planes, height_out, width_out = y.shape
    rh = _interp_ratio(height_in, height_out)
    rw = _interp_ratio(width_in, width_out)
    same = height_in == height_out and width_in == width_out
    for p in prange(planes):
        for h2 in range(height_out):
            h1, h1p, lh0, lh1 = _source(rh, h2, height_in)
            for w2 in range(width_out):
                if same:
                    y[p, h2, w2] = x[p, off + h2, off + w2]
                    continue
                w1, w1p, lw0, lw1 = _source(rw, w2, width_in)
                r0 = off + h1
                c0 = off + w1
                y[p, h2, w2] = (lh0 * (lw0 * x[p, r0, c0] + lw1 * x[p, r0, c0 + w1p])
                                + lh1 * (lw0 * x[p, r0 + h1p, c0]
                                         + lw1 * x[p, r0 + h1p, c0 + w1p]))


@pjit
def interp_backward(dy, off, height_in, width_in, dx):
    """The adjoint of :func:`interp_forward`: ``dx`` (zeroed here) receives each output
    diff times its four weights, added in the fork's order; pixels outside the window
    (cropped by a negative pad) get 0."""
    planes, height_out, width_out = dy.shape
    rh = _interp_ratio(height_in, height_out)
    rw = _interp_ratio(width_in, width_out)
    same = height_in == height_out and width_in == width_out
    for p in prange(planes):
        for i in range(dx.shape[1]):
            for j in range(dx.shape[2]):
                dx[p, i, j] = 0.0
        for h2 in range(height_out):
            h1, h1p, lh0, lh1 = _source(rh, h2, height_in)
            for w2 in range(width_out):
                g = dy[p, h2, w2]
                if same:
                    dx[p, off + h2, off + w2] += g
                    continue
                w1, w1p, lw0, lw1 = _source(rw, w2, width_in)
                r0 = off + h1
                c0 = off + w1
                dx[p, r0, c0] += lh0 * lw0 * g
                dx[p, r0, c0 + w1p] += lh0 * lw1 * g
                dx[p, r0 + h1p, c0] += lh1 * lw0 * g
                dx[p, r0 + h1p, c0 + w1p] += lh1 * lw1 * g


@pjit
def upsample_forward(x, mask, y):
    """SegNet's max unpooling: ``y`` is zero except ``y.flat[mask[i]] = x.flat[i]`` per
    plane (a later index wins when two positions share one). Returns the first plane index
    whose mask holds an index outside ``y``'s plane, or -1."""
    planes = x.shape[0]
    size_in = x.shape[1]
    size_out = y.shape[1]
    bad = np.full(planes, -1, dtype=np.int64)
    for p in prange(planes):
        for k in range(size_out):
            y[p, k] = 0.0
        for i in range(size_in):
            where = int(mask[p, i])
            if where < 0 or where >= size_out:
                bad[p] = p
                break
            y[p, where] = x[p, i]
    for p in range(planes):
        if bad[p] >= 0:
            return p
    return -1


@pjit
def upsample_backward(dy, mask, dx):
    """``dx.flat[i] = dy.flat[mask[i]]`` per plane, as the fork computes it (also where two
    positions share one index; the forward kept only the later one)."""
    planes = dx.shape[0]
    for p in prange(planes):
        for i in range(dx.shape[1]):
            dx[p, i] = dy[p, int(mask[p, i])]
