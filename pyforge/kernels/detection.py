"""Kernels of the SSD fork's layers (weiliu89/caffe, branch ssd): PriorBox, Normalize and
DetectionOutput (box decoding, per-class non-maximum suppression, keep_top_k).

Arrays are contiguous; boxes are (xmin, ymin, xmax, ymax) float32 rows. The arithmetic follows
the fork's float code, so that the detections are the fork's, in the fork's order.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange

_HALF = np.float32(0.5)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)

# PriorBoxParameter.CodeType
CORNER = 1
CENTER_SIZE = 2
CORNER_SIZE = 3


# --- PriorBox ------------------------------------------------------------------------------------
@jit
def _put_box(out, idx, cx, cy, box_w, box_h, img_w, img_h):
    # The fork computes (center - size / 2.) / image in double and stores a float.
    out[idx] = (cx - box_w / 2.0) / img_w
    out[idx + 1] = (cy - box_h / 2.0) / img_h
    out[idx + 2] = (cx + box_w / 2.0) / img_w
    out[idx + 3] = (cy + box_h / 2.0) / img_h
    return idx + 4


@jit
def prior_boxes(layer_h, layer_w, img_h, img_w, step_h, step_w, offset, min_sizes, max_sizes,
                aspect_ratios, reduce_boxes, clip, variances, out):
    """Fill ``out`` (2, layer_h * layer_w * num_priors * 4): boxes, then their variances.

    Per cell (row-major) and per min_size: the square min_size box (halved with
    ``reduce_boxes``), the sqrt(min_size * max_size) square when max sizes are given, then one
    box per aspect ratio other than 1. Sizes are whole numbers: the fork reads each min/max
    size into an int."""
    boxes = out[0]
    idx = 0
    for h in range(layer_h):
        for w in range(layer_w):
            cx = np.float32(np.float32(w) + offset) * step_w
            cy = np.float32(np.float32(h) + offset) * step_h
            for s in range(min_sizes.size):
                min_size = min_sizes[s]
                side = np.float32(min_size / 2.0) if reduce_boxes else np.float32(min_size)
                idx = _put_box(boxes, idx, cx, cy, side, side, img_w, img_h)
                if max_sizes.size > 0:
                    side = np.float32(np.sqrt(np.float64(min_size * max_sizes[s])))
                    idx = _put_box(boxes, idx, cx, cy, side, side, img_w, img_h)
                for r in range(aspect_ratios.size):
                    ratio = aspect_ratios[r]
                    if abs(ratio - 1.0) < 1e-6:
                        continue
                    root = np.sqrt(ratio)
                    idx = _put_box(boxes, idx, cx, cy, np.float32(min_size * root),
                                   np.float32(min_size / root), img_w, img_h)
    if clip:
        for d in range(idx):
            boxes[d] = min(max(boxes[d], _ZERO), _ONE)
    var = out[1]
    for d in range(idx):
        var[d] = variances[0] if variances.size == 1 else variances[d % 4]


# --- Normalize: x viewed as (N, C, S) ------------------------------------------------------------
@pjit
def normalize_forward(x, scale, across_spatial, eps, y, norm):
    """``y = x / sqrt(sum x^2 + eps) * scale``; the sum runs over C and S (``across_spatial``)
    or over C at each location. ``norm`` (N, S) keeps the norms (column 0 when across)."""
    n_img, channels, spatial = x.shape
    shared = scale.size == 1
    for n in prange(n_img):
        if across_spatial:
            total = 0.0
            for c in range(channels):
                for s in range(spatial):
                    total += np.float64(x[n, c, s]) * x[n, c, s]
            value = np.float32(np.sqrt(np.float32(total) + eps))
            for s in range(spatial):
                norm[n, s] = value
        else:
            for s in range(spatial):
                total = 0.0
                for c in range(channels):
                    total += np.float64(x[n, c, s]) * x[n, c, s]
                norm[n, s] = np.float32(np.sqrt(np.float32(total + eps)))
        for c in range(channels):
            k = scale[0] if shared else scale[c]
            for s in range(spatial):
                y[n, c, s] = x[n, c, s] / norm[n, s] * k


@pjit
def normalize_backward(x, dy, scale, across_spatial, norm, dx):
    """``dx = (dy - x * <x, dy> / norm^2) / norm * scale``, the inner product over what the
    norm summed."""
    n_img, channels, spatial = x.shape
    shared = scale.size == 1
    for n in prange(n_img):
        if across_spatial:
            total = 0.0
            for c in range(channels):
                for s in range(spatial):
                    total += np.float64(x[n, c, s]) * dy[n, c, s]
            dot = np.float32(total)
            nm = norm[n, 0]
            for c in range(channels):
                k = scale[0] if shared else scale[c]
                for s in range(spatial):
                    dx[n, c, s] = (dy[n, c, s] - x[n, c, s] * (dot / nm / nm)) / nm * k
        else:
            for s in range(spatial):
                total = 0.0
                for c in range(channels):
                    total += np.float64(x[n, c, s]) * dy[n, c, s]
                dot = np.float32(total)
                nm = norm[n, s]
                for c in range(channels):
                    k = scale[0] if shared else scale[c]
                    dx[n, c, s] = (dy[n, c, s] - x[n, c, s] * dot / (nm * nm)) / nm * k


@pjit
def normalize_scale_backward(y, dy, scale, dscale):
    """``dscale += sum(y * dy) / scale`` (``y`` is the scaled output), per channel or shared."""
    n_img, channels, spatial = y.shape
    if scale.size == 1:
        total = 0.0
        for n in range(n_img):
            for c in range(channels):
                for s in range(spatial):
                    total += np.float64(y[n, c, s]) * dy[n, c, s]
        dscale[0] += np.float32(total) / scale[0]
        return
    for c in prange(channels):
        total = 0.0
        for n in range(n_img):
            for s in range(spatial):
                total += np.float64(y[n, c, s]) * dy[n, c, s]
        dscale[c] += np.float32(total) / scale[c]


# --- DetectionOutput -----------------------------------------------------------------------------
@jit
def _box_size(xmin, ymin, xmax, ymax):
    if xmax < xmin or ymax < ymin:
        return _ZERO
    return (xmax - xmin) * (ymax - ymin)


@pjit
def decode_boxes(loc, priors, variances, code_type, variance_encoded_in_target, skip_label,
                 boxes, sizes):
    """Decode ``loc`` (N, P, L, 4) against ``priors`` / ``variances`` (P, 4) into ``boxes``
    (N, L, P, 4) and their areas ``sizes`` (N, L, P); location class ``skip_label`` (the
    background, when locations are per class) is left undecoded, as the fork leaves it."""
    n_img, n_priors, n_loc = loc.shape[0], loc.shape[1], loc.shape[2]
    for task in prange(n_img * n_loc):
        n = task // n_loc
        label = task % n_loc
        if label == skip_label:
            continue
        for p in range(n_priors):
            pxmin, pymin, pxmax, pymax = priors[p, 0], priors[p, 1], priors[p, 2], priors[p, 3]
            v0, v1, v2, v3 = _ONE, _ONE, _ONE, _ONE
            if not variance_encoded_in_target:
                v0, v1, v2, v3 = (variances[p, 0], variances[p, 1], variances[p, 2],
                                  variances[p, 3])
            t0, t1 = loc[n, p, label, 0], loc[n, p, label, 1]
            t2, t3 = loc[n, p, label, 2], loc[n, p, label, 3]
            if code_type == CORNER:
                xmin, ymin = pxmin + v0 * t0, pymin + v1 * t1
                xmax, ymax = pxmax + v2 * t2, pymax + v3 * t3
            elif code_type == CENTER_SIZE:
                pw, ph = pxmax - pxmin, pymax - pymin
                pcx = np.float32((pxmin + pxmax) / 2.0)
                pcy = np.float32((pymin + pymax) / 2.0)
                cx = v0 * t0 * pw + pcx
                cy = v1 * t1 * ph + pcy
                bw = np.float32(np.exp(v2 * t2)) * pw
                bh = np.float32(np.exp(v3 * t3)) * ph
                xmin, ymin = np.float32(cx - bw / 2.0), np.float32(cy - bh / 2.0)
                xmax, ymax = np.float32(cx + bw / 2.0), np.float32(cy + bh / 2.0)
            else:  # CORNER_SIZE
                pw, ph = pxmax - pxmin, pymax - pymin
                xmin, ymin = pxmin + v0 * t0 * pw, pymin + v1 * t1 * ph
                xmax, ymax = pxmax + v2 * t2 * pw, pymax + v3 * t3 * ph
            boxes[n, label, p, 0] = xmin
            boxes[n, label, p, 1] = ymin
            boxes[n, label, p, 2] = xmax
            boxes[n, label, p, 3] = ymax
            sizes[n, label, p] = _box_size(boxes[n, label, p, 0], boxes[n, label, p, 1],
                                           boxes[n, label, p, 2], boxes[n, label, p, 3])


@jit
def _overlap(boxes, sizes, a, b):
    """The fork's JaccardOverlap of boxes ``a`` and ``b`` (areas as stored when decoded)."""
    if (boxes[b, 0] > boxes[a, 2] or boxes[b, 2] < boxes[a, 0]
            or boxes[b, 1] > boxes[a, 3] or boxes[b, 3] < boxes[a, 1]):
        return _ZERO
    width = min(boxes[a, 2], boxes[b, 2]) - max(boxes[a, 0], boxes[b, 0])
    height = min(boxes[a, 3], boxes[b, 3]) - max(boxes[a, 1], boxes[b, 1])
    if width > 0 and height > 0:
        inter = width * height
        return inter / (sizes[a] + sizes[b] - inter)
    return _ZERO


@pjit
def nms_per_class(boxes, sizes, conf, share_location, background, confidence_threshold,
                  nms_threshold, eta, top_k, kept, counts):
    """Greedy NMS per image and class (``ApplyNMSFast``): candidates score above the threshold,
    sorted by score (stable, descending), the first ``top_k``; a candidate is kept when it
    overlaps no kept box by more than the threshold, which shrinks by ``eta`` while above 0.5.
    ``kept`` (N, C, P) receives the prior indices in keeping order, ``counts`` (N, C) their
    number; the background class keeps nothing."""
    n_img, n_priors, n_classes = conf.shape
    for task in prange(n_img * n_classes):
        n = task // n_classes
        c = task % n_classes
        counts[n, c] = 0
        if c == background:
            continue
        scores = conf[n, :, c]
        candidates = np.nonzero(scores > confidence_threshold)[0]
        order = candidates[np.argsort(-scores[candidates], kind="mergesort")]
        if top_k > -1 and top_k < order.size:
            order = order[:top_k]
        label = 0 if share_location else c
        label_boxes = boxes[n, label]
        label_sizes = sizes[n, label]
        threshold = nms_threshold
        found = 0
        for i in range(order.size):
            idx = order[i]
            keep = True
            for k in range(found):
                if _overlap(label_boxes, label_sizes, idx, kept[n, c, k]) > threshold:
                    keep = False
                    break
            if keep:
                kept[n, c, found] = idx
                found += 1
                if eta < 1 and threshold > 0.5:
                    threshold *= eta
        counts[n, c] = found


@pjit
def keep_top_k(kept, counts, conf, limit):
    """Where an image kept more than ``limit`` boxes over all classes, keep its ``limit`` best
    (sorted by score, descending; ties stay in class order), regrouped by class in that order.
    ``kept`` / ``counts`` are rewritten in place."""
    n_img, n_classes, n_priors = kept.shape
    for n in prange(n_img):
        total = 0
        for c in range(n_classes):
            total += counts[n, c]
        if limit < 0 or total <= limit:
            continue
        scores = np.empty(total, np.float32)
        labels = np.empty(total, np.int64)
        indices = np.empty(total, np.int64)
        j = 0
        for c in range(n_classes):
            for k in range(counts[n, c]):
                idx = kept[n, c, k]
                scores[j] = conf[n, idx, c]
                labels[j] = c
                indices[j] = idx
                j += 1
        best = np.argsort(-scores, kind="mergesort")[:limit]
        for c in range(n_classes):
            counts[n, c] = 0
        for j in range(limit):
            c = labels[best[j]]
            kept[n, c, counts[n, c]] = indices[best[j]]
            counts[n, c] += 1


@jit
def write_detections(boxes, conf, kept, counts, share_location, out):
    """Rows ``[image, label, score, xmin, ymin, xmax, ymax]`` by image, class, keeping order."""
    n_img, n_classes = counts.shape
    row = 0
    for n in range(n_img):
        for c in range(n_classes):
            label = 0 if share_location else c
            for k in range(counts[n, c]):
                idx = kept[n, c, k]
                out[row, 0] = n
                out[row, 1] = c
                out[row, 2] = conf[n, idx, c]
                for d in range(4):
                    out[row, 3 + d] = boxes[n, label, idx, d]
                row += 1
    return row
