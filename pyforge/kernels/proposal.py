"""Region-proposal kernels: py-faster-rcnn's ``rpn/proposal_layer.py`` steps in float32.

Proposals are enumerated in py-faster-rcnn's order: feature-map row ``h``, column ``w``,
anchor ``a`` (slowest to fastest). Boxes are ``[x1, y1, x2, y2]`` in image pixels with
inclusive corners (a width is ``x2 - x1 + 1``), as Fast R-CNN counts them.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange


@pjit
def decode_proposals(anchors, deltas, scores, feat_stride, im_h, im_w, min_size, boxes,
                     box_scores, keep):
    """Shift the (A, 4) ``anchors`` to every cell, apply the (4A, H, W) ``deltas``
    (bbox_transform_inv), clip to the image ([0, im_w - 1] x [0, im_h - 1]) and mark in
    ``keep`` the boxes whose sides are both at least ``min_size``. ``scores`` is the (A, H, W)
    foreground half of the RPN's class probabilities."""
    n_anchors = anchors.shape[0]
    height, width = scores.shape[1], scores.shape[2]
    one = np.float32(1.0)
    half = np.float32(0.5)
    zero = np.float32(0.0)
    x_max = im_w - one
    y_max = im_h - one
    for h in prange(height):
        for w in range(width):
            shift_x = np.float32(w * feat_stride)
            shift_y = np.float32(h * feat_stride)
            for a in range(n_anchors):
                i = (h * width + w) * n_anchors + a
                x1 = anchors[a, 0] + shift_x
                y1 = anchors[a, 1] + shift_y
                bw = anchors[a, 2] + shift_x - x1 + one
                bh = anchors[a, 3] + shift_y - y1 + one
                cx = x1 + half * bw
                cy = y1 + half * bh
                pcx = deltas[4 * a, h, w] * bw + cx
                pcy = deltas[4 * a + 1, h, w] * bh + cy
                pw = np.exp(deltas[4 * a + 2, h, w]) * bw
                ph = np.exp(deltas[4 * a + 3, h, w]) * bh
                bx1 = max(min(pcx - half * pw, x_max), zero)
                by1 = max(min(pcy - half * ph, y_max), zero)
                bx2 = max(min(pcx + half * pw, x_max), zero)
                by2 = max(min(pcy + half * ph, y_max), zero)
                boxes[i, 0] = bx1
                boxes[i, 1] = by1
                boxes[i, 2] = bx2
                boxes[i, 3] = by2
                box_scores[i] = scores[a, h, w]
                keep[i] = (bx2 - bx1 + one >= min_size) and (by2 - by1 + one >= min_size)


@jit
def greedy_nms(boxes, threshold, limit, kept):
    """Non-maximum suppression over ``boxes`` sorted by falling score: a box is dropped when
    its overlap (intersection over union, inclusive pixel areas, float32) with a kept box is
    above ``threshold`` (py-faster-rcnn's GPU NMS, its default). Stops after ``limit`` boxes
    (``limit <= 0``: no limit). Writes the kept positions into ``kept``; returns their count.
    """
    n = boxes.shape[0]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    suppressed = np.zeros(n, dtype=np.bool_)
    count = 0
    for i in range(n):
        if suppressed[i]:
            continue
        kept[count] = i
        count += 1
        if limit > 0 and count >= limit:
            break
        ix1, iy1, ix2, iy2 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        i_area = (ix2 - ix1 + one) * (iy2 - iy1 + one)
        for j in range(i + 1, n):
            if suppressed[j]:
                continue
            iw = max(min(ix2, boxes[j, 2]) - max(ix1, boxes[j, 0]) + one, zero)
            ih = max(min(iy2, boxes[j, 3]) - max(iy1, boxes[j, 1]) + one, zero)
            inter = iw * ih
            j_area = (boxes[j, 2] - boxes[j, 0] + one) * (boxes[j, 3] - boxes[j, 1] + one)
            if inter / (i_area + j_area - inter) > threshold:
                suppressed[j] = True
    return count
