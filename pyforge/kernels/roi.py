"""Region-of-interest pooling kernels, forward next to backward.

``rois`` is (R, 5) float32: ``[batch_index, x1, y1, x2, y2]`` in input-image pixels; the
feature map is (N, C, H, W). The arithmetic follows the forks' kernels step by step in
float32 (the bin sizes, the products and the rounding), because a bin edge moved by one ulp
moves a whole row of the window.

* ``roi_pool_*``: Fast R-CNN's ROIPooling (rbgirshick/caffe-fast-rcnn). Max over each of
  ``pooled_h x pooled_w`` bins, the first maximum wins, its flat ``h*W + w`` index is kept.
* ``psroi_pool_*``: R-FCN's position-sensitive average pooling (daijifeng001/caffe-rfcn).
  Output channel ``ctop`` of bin ``(ph, pw)`` averages input channel
  ``(ctop*group + ph)*group + pw`` over the bin.

Backward passes run in parallel over channels and visit the ROIs in order, so the sums that
several ROIs add into one input pixel are always formed in the same order.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit, pjit, prange

_NEG_FLT_MAX = np.float32(-3.4028234663852886e38)


@jit
def round_half_away(value):
    """C's ``round``: halves go away from zero (NumPy's ``round`` goes to even)."""
    v = float(value)
    if v >= 0.0:
        return int(math.floor(v + 0.5))
    return -int(math.floor(-v + 0.5))


@jit
def _roi_box(roi, scale):
    """Fast R-CNN's integer ROI on the feature map and its float32 bin sizes."""
    start_w = round_half_away(roi[1] * scale)
    start_h = round_half_away(roi[2] * scale)
    end_w = round_half_away(roi[3] * scale)
    end_h = round_half_away(roi[4] * scale)
    # Malformed ROIs (end before start) are forced to 1x1.
    roi_h = max(end_h - start_h + 1, 1)
    roi_w = max(end_w - start_w + 1, 1)
    return start_h, start_w, end_h, end_w, roi_h, roi_w


@pjit
def roi_pool_forward(x, rois, scale, top, argmax):
    """Max over every bin; an empty bin (clipped away) gives 0 and argmax -1."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    pooled_h, pooled_w = top.shape[2], top.shape[3]
    for r in prange(rois.shape[0]):
        b = int(rois[r, 0])
        start_h, start_w, _, _, roi_h, roi_w = _roi_box(rois[r], scale)
        bin_h = np.float32(roi_h) / np.float32(pooled_h)
        bin_w = np.float32(roi_w) / np.float32(pooled_w)
        for c in range(channels):
            for ph in range(pooled_h):
                hs = min(max(math.floor(np.float32(ph) * bin_h) + start_h, 0), height)
                he = min(max(math.ceil(np.float32(ph + 1) * bin_h) + start_h, 0), height)
                for pw in range(pooled_w):
                    ws = min(max(math.floor(np.float32(pw) * bin_w) + start_w, 0), width)
                    we = min(max(math.ceil(np.float32(pw + 1) * bin_w) + start_w, 0), width)
                    best = np.float32(0.0) if he <= hs or we <= ws else _NEG_FLT_MAX
                    where = -1
                    for h in range(hs, he):
                        for w in range(ws, we):
                            v = x[b, c, h, w]
                            if v > best:
                                best = v
                                where = h * width + w
                    top[r, c, ph, pw] = best
                    argmax[r, c, ph, pw] = where


@pjit
def roi_pool_backward(top_diff, argmax, rois, scale, dx):
    """The fork's gradient: pixel ``(h, w)`` of ROI ``r`` gets the diffs of the bins whose
    argmax it is, but only when it lies inside the ROI's rounded box and only from the bins
    ``[floor((h - start) / bin), ceil((h - start + 1) / bin))`` (the fork's candidate set).
    So a malformed box (x2 < x1 or y2 < y1), which the forward pools as the 1x1 box at its
    start, passes no gradient, as in the fork."""
    channels, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    pooled_h, pooled_w = top_diff.shape[2], top_diff.shape[3]
    for c in prange(channels):
        for n in range(dx.shape[0]):
            for h in range(height):
                for w in range(width):
                    dx[n, c, h, w] = 0.0
        for r in range(rois.shape[0]):
            b = int(rois[r, 0])
            start_h, start_w, end_h, end_w, roi_h, roi_w = _roi_box(rois[r], scale)
            bin_h = np.float32(roi_h) / np.float32(pooled_h)
            bin_w = np.float32(roi_w) / np.float32(pooled_w)
            for ph in range(pooled_h):
                for pw in range(pooled_w):
                    where = argmax[r, c, ph, pw]
                    if where < 0:
                        continue
                    h = where // width
                    w = where % width
                    if h < start_h or h > end_h or w < start_w or w > end_w:
                        continue
                    ph_lo = min(max(math.floor(np.float32(h - start_h) / bin_h), 0), pooled_h)
                    ph_hi = min(max(math.ceil(np.float32(h - start_h + 1) / bin_h), 0),
                                pooled_h)
                    pw_lo = min(max(math.floor(np.float32(w - start_w) / bin_w), 0), pooled_w)
                    pw_hi = min(max(math.ceil(np.float32(w - start_w + 1) / bin_w), 0),
                                pooled_w)
                    if ph_lo <= ph < ph_hi and pw_lo <= pw < pw_hi:
                        dx[b, c, h, w] += top_diff[r, c, ph, pw]


@jit
def _psroi_box(roi, scale, group):
    """R-FCN's float32 ROI on the feature map: start and bin size in each direction."""
    start_w = np.float32(round_half_away(roi[1])) * scale
    start_h = np.float32(round_half_away(roi[2])) * scale
    end_w = np.float32(round_half_away(roi[3]) + 1.0) * scale
    end_h = np.float32(round_half_away(roi[4]) + 1.0) * scale
    # Too small ROIs are widened to 0.1 (the fork's guard against a zero bin).
    roi_w = max(end_w - start_w, np.float32(0.1))
    roi_h = max(end_h - start_h, np.float32(0.1))
    return start_h, start_w, roi_h / np.float32(group), roi_w / np.float32(group)


@jit
def _psroi_bin(start, bin_size, index, limit):
    lo = math.floor(np.float32(index) * bin_size + start)
    hi = math.ceil(np.float32(index + 1) * bin_size + start)
    return min(max(lo, 0), limit), min(max(hi, 0), limit)


@pjit
def psroi_pool_forward(x, rois, scale, group, top):
    """Average of input channel ``(ctop*group + ph)*group + pw`` over bin ``(ph, pw)``,
    summed in float32 row by row as the fork does; an empty bin gives 0."""
    height, width = x.shape[2], x.shape[3]
    output_dim = top.shape[1]
    for r in prange(rois.shape[0]):
        b = int(rois[r, 0])
        start_h, start_w, bin_h, bin_w = _psroi_box(rois[r], scale, group)
        for ctop in range(output_dim):
            for ph in range(group):
                hs, he = _psroi_bin(start_h, bin_h, ph, height)
                for pw in range(group):
                    ws, we = _psroi_bin(start_w, bin_w, pw, width)
                    c = (ctop * group + ph) * group + pw
                    total = np.float32(0.0)
                    for h in range(hs, he):
                        for w in range(ws, we):
                            total += x[b, c, h, w]
                    if he <= hs or we <= ws:
                        top[r, ctop, ph, pw] = 0.0
                    else:
                        top[r, ctop, ph, pw] = total / np.float32((he - hs) * (we - ws))


@pjit
def psroi_pool_backward(top_diff, rois, scale, group, dx):
    """Each bin spreads ``diff / area`` over its pixels of its input channel. Every input
    channel belongs to one (ctop, ph, pw), so channels run in parallel without sharing."""
    n_img, channels, height, width = dx.shape
    for c in prange(channels):
        ctop = c // (group * group)
        ph = (c // group) % group
        pw = c % group
        for n in range(n_img):
            for h in range(height):
                for w in range(width):
                    dx[n, c, h, w] = 0.0
        for r in range(rois.shape[0]):
            b = int(rois[r, 0])
            start_h, start_w, bin_h, bin_w = _psroi_box(rois[r], scale, group)
            hs, he = _psroi_bin(start_h, bin_h, ph, height)
            ws, we = _psroi_bin(start_w, bin_w, pw, width)
            if he <= hs or we <= ws:
                continue
            g = top_diff[r, ctop, ph, pw] / np.float32((he - hs) * (we - ws))
            for h in range(hs, he):
                for w in range(ws, we):
                    dx[b, c, h, w] += g
