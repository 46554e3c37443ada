"""Kernels of the data path: Caffe's DataTransformer arithmetic (crop, mirror, mean, scale).
(Decoding and resizing are OpenCV's own calls, in pyforge.io.datum.)

Serial on purpose: these run in the prefetch thread, and Numba's default threading layer must not
be entered from two threads at once.
"""

from __future__ import annotations

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
