"""Caffe's DataTransformer arithmetic (data_transformer.cpp, Transform of a Datum) as loops:
crop at (h_off, w_off), optional horizontal mirror, mean subtraction, then scaling.

Caffe computes in ``Dtype``, so this reference computes each element the way Caffe does, in
float32: ``(float(datum_element) - mean[data_index]) * scale``, with ``data_index`` the source
pixel inside the uncropped image and the mirrored column ``crop_w - 1 - w`` as destination.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def transform_batch(raw: np.ndarray, h_off, w_off, mirror, mean: np.ndarray, scale: float,
                    crop_hw: tuple[int, int]) -> np.ndarray:
    """``raw`` (N, C, H, W) uint8 or float32 -> (N, C, crop_h, crop_w) float32."""
    n_img, channels = raw.shape[:2]
    crop_h, crop_w = crop_hw
    out = np.empty((n_img, channels, crop_h, crop_w), F32)
    for n in range(n_img):
        for c in range(channels):
            for h in range(crop_h):
                for w in range(crop_w):
                    src_h, src_w = h + int(h_off[n]), w + int(w_off[n])
                    dst_w = crop_w - 1 - w if mirror[n] else w
                    element = F32(raw[n, c, src_h, src_w])
                    out[n, c, h, dst_w] = (element - F32(mean[c, src_h, src_w])) * F32(scale)
    return out
