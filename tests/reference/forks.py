"""Loop-by-loop NumPy references of the forks' layer kernels, written from the forks' sources
(their loop structure and float32 steps), for tests/kernels/test_fork_kernels.py.

Slow on purpose: one Python step per element, in the fork's order.
"""

from __future__ import annotations

import math

import numpy as np

F = np.float32


def c_round(value: float) -> int:
    """C's round(): halves away from zero."""
    v = float(value)
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


# --- Fast R-CNN ROIPooling (roi_pooling_layer.cpp forward, .cu backward) -------------------------
def _roi_geometry(roi, scale):
    sw, sh = c_round(F(roi[1]) * F(scale)), c_round(F(roi[2]) * F(scale))
    ew, eh = c_round(F(roi[3]) * F(scale)), c_round(F(roi[4]) * F(scale))
    return sh, sw, eh, ew, max(eh - sh + 1, 1), max(ew - sw + 1, 1)


def roi_pool_forward(x, rois, scale, pooled_h, pooled_w):
    n_rois, (_, channels, height, width) = len(rois), x.shape
    top = np.full((n_rois, channels, pooled_h, pooled_w), F(-3.4028234663852886e38), F)
    argmax = np.full(top.shape, -1, np.int64)
    for n, roi in enumerate(rois):
        b = int(roi[0])
        sh, sw, _, _, rh, rw = _roi_geometry(roi, scale)
        bin_h, bin_w = F(rh) / F(pooled_h), F(rw) / F(pooled_w)
        for c in range(channels):
            for ph in range(pooled_h):
                for pw in range(pooled_w):
                    hs = min(max(math.floor(F(ph) * bin_h) + sh, 0), height)
                    he = min(max(math.ceil(F(ph + 1) * bin_h) + sh, 0), height)
                    ws = min(max(math.floor(F(pw) * bin_w) + sw, 0), width)
                    we = min(max(math.ceil(F(pw + 1) * bin_w) + sw, 0), width)
                    if he <= hs or we <= ws:
                        top[n, c, ph, pw] = 0
                    for h in range(hs, he):
                        for w in range(ws, we):
                            if x[b, c, h, w] > top[n, c, ph, pw]:
                                top[n, c, ph, pw] = x[b, c, h, w]
                                argmax[n, c, ph, pw] = h * width + w
    return top, argmax


def roi_pool_backward(top_diff, argmax, rois, scale, x_shape):
    """The fork's GPU backward: for every input element, gather over ROIs and bins."""
    n_img, channels, height, width = x_shape
    pooled_h, pooled_w = top_diff.shape[2:]
    dx = np.zeros(x_shape, F)
    for n in range(n_img):
        for c in range(channels):
            for h in range(height):
                for w in range(width):
                    gradient = F(0)
                    for r, roi in enumerate(rois):
                        if int(roi[0]) != n:
                            continue
                        sh, sw, eh, ew, rh, rw = _roi_geometry(roi, scale)
                        if not (sw <= w <= ew and sh <= h <= eh):
                            continue
                        bin_h, bin_w = F(rh) / F(pooled_h), F(rw) / F(pooled_w)
                        phs = min(max(math.floor(F(h - sh) / bin_h), 0), pooled_h)
                        phe = min(max(math.ceil(F(h - sh + 1) / bin_h), 0), pooled_h)
                        pws = min(max(math.floor(F(w - sw) / bin_w), 0), pooled_w)
                        pwe = min(max(math.ceil(F(w - sw + 1) / bin_w), 0), pooled_w)
                        for ph in range(phs, phe):
                            for pw in range(pws, pwe):
                                if argmax[r, c, ph, pw] == h * width + w:
                                    gradient += top_diff[r, c, ph, pw]
                    dx[n, c, h, w] = gradient
    return dx


# --- R-FCN PSROIPooling (psroi_pooling_layer.cpp forward, .cu backward) -------------------------
def _psroi_bins(roi, scale, group, ph, pw, height, width):
    start_w = F(c_round(roi[1])) * F(scale)
    start_h = F(c_round(roi[2])) * F(scale)
    end_w = F(c_round(roi[3]) + 1.0) * F(scale)
    end_h = F(c_round(roi[4]) + 1.0) * F(scale)
    roi_w, roi_h = max(end_w - start_w, F(0.1)), max(end_h - start_h, F(0.1))
    bin_h, bin_w = roi_h / F(group), roi_w / F(group)
    hs = min(max(math.floor(F(ph) * bin_h + start_h), 0), height)
    ws = min(max(math.floor(F(pw) * bin_w + start_w), 0), width)
    he = min(max(math.ceil(F(ph + 1) * bin_h + start_h), 0), height)
    we = min(max(math.ceil(F(pw + 1) * bin_w + start_w), 0), width)
    return hs, he, ws, we


def psroi_pool_forward(x, rois, scale, output_dim, group):
    height, width = x.shape[2:]
    top = np.zeros((len(rois), output_dim, group, group), F)
    for n, roi in enumerate(rois):
        b = int(roi[0])
        for ctop in range(output_dim):
            for ph in range(group):
                for pw in range(group):
                    hs, he, ws, we = _psroi_bins(roi, scale, group, ph, pw, height, width)
                    c = (ctop * group + ph) * group + pw
                    total = F(0)
                    for h in range(hs, he):
                        for w in range(ws, we):
                            total += x[b, c, h, w]
                    area = F((he - hs) * (we - ws))
                    top[n, ctop, ph, pw] = 0 if he <= hs or we <= ws else total / area
    return top


def psroi_pool_backward(top_diff, rois, scale, x_shape):
    height, width = x_shape[2:]
    _, output_dim, group, _ = top_diff.shape
    dx = np.zeros(x_shape, F)
    for n, roi in enumerate(rois):
        b = int(roi[0])
        for ctop in range(output_dim):
            for ph in range(group):
                for pw in range(group):
                    hs, he, ws, we = _psroi_bins(roi, scale, group, ph, pw, height, width)
                    if he <= hs or we <= ws:
                        continue
                    c = (ctop * group + ph) * group + pw
                    g = top_diff[n, ctop, ph, pw] / F((he - hs) * (we - ws))
                    for h in range(hs, he):
                        for w in range(ws, we):
                            dx[b, c, h, w] += g
    return dx


# --- PSPNet/DeepLab Interp (util/interp.cpp, unpacked) ------------------------------------------
def _interp_steps(h1, w1, h2, w2):
    rh = F(h1 - 1) / F(h2 - 1) if h2 > 1 else F(0)
    rw = F(w1 - 1) / F(w2 - 1) if w2 > 1 else F(0)
    for y in range(h2):
        h1r = rh * F(y)
        hi = int(h1r)
        hp = 1 if hi < h1 - 1 else 0
        l1 = h1r - F(hi)
        for x in range(w2):
            w1r = rw * F(x)
            wi = int(w1r)
            wp = 1 if wi < w1 - 1 else 0
            m1 = w1r - F(wi)
            yield y, x, hi, hp, F(1) - l1, l1, wi, wp, F(1) - m1, m1


def interp_forward(x, pad_beg, height_in, width_in, out_h, out_w):
    off = -pad_beg
    y = np.zeros((*x.shape[:2], out_h, out_w), F)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            src, dst = x[n, c], y[n, c]
            if (height_in, width_in) == (out_h, out_w):
                dst[...] = src[off:off + out_h, off:off + out_w]
                continue
            for yy, xx, hi, hp, l0, l1, wi, wp, m0, m1 in _interp_steps(height_in, width_in,
                                                                        out_h, out_w):
                r, k = off + hi, off + wi
                dst[yy, xx] = (l0 * (m0 * src[r, k] + m1 * src[r, k + wp])
                               + l1 * (m0 * src[r + hp, k] + m1 * src[r + hp, k + wp]))
    return y


def interp_backward(dy, pad_beg, height_in, width_in, x_shape):
    off = -pad_beg
    dx = np.zeros(x_shape, F)
    out_h, out_w = dy.shape[2:]
    for n in range(x_shape[0]):
        for c in range(x_shape[1]):
            src, dst = dy[n, c], dx[n, c]
            if (height_in, width_in) == (out_h, out_w):
                dst[off:off + out_h, off:off + out_w] += src
                continue
            for yy, xx, hi, hp, l0, l1, wi, wp, m0, m1 in _interp_steps(height_in, width_in,
                                                                        out_h, out_w):
                r, k, g = off + hi, off + wi, src[yy, xx]
                dst[r, k] += l0 * m0 * g
                dst[r, k + wp] += l0 * m1 * g
                dst[r + hp, k] += l1 * m0 * g
                dst[r + hp, k + wp] += l1 * m1 * g
    return dx


# --- SegNet Upsample ------------------------------------------------------------------------------
def upsample_forward(x, mask, out_h, out_w):
    n, c, h, w = x.shape
    y = np.zeros((n, c, out_h * out_w), F)
    for i in range(n):
        for j in range(c):
            for k in range(h * w):
                y[i, j, int(mask[i, j].flat[k])] = x[i, j].flat[k]
    return y.reshape(n, c, out_h, out_w)


def upsample_backward(dy, mask):
    n, c, h, w = mask.shape
    dx = np.zeros(mask.shape, F)
    for i in range(n):
        for j in range(c):
            for k in range(h * w):
                dx[i, j].flat[k] = dy[i, j].flat[int(mask[i, j].flat[k])]
    return dx


# --- ShuffleNet ShuffleChannel, SENet Axpy --------------------------------------------------------
def shuffle_channel(x, group):
    out = np.empty_like(x)
    columns = x.shape[1] // group
    for i in range(group):
        for j in range(columns):
            out[:, j * group + i] = x[:, i * columns + j]
    return out


def axpy(scale, x, y):
    out = y.copy()
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[n, c] += scale.reshape(x.shape[:2])[n, c] * x[n, c]
    return out


# --- py-faster-rcnn rpn/proposal_layer.py (TEST), with its GPU NMS's "> threshold" -----------
def anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32)):
    base = np.array([1, 1, base_size, base_size]) - 1
    w, h = base[2] - base[0] + 1, base[3] - base[1] + 1
    cx, cy = base[0] + 0.5 * (w - 1), base[1] + 0.5 * (h - 1)
    out = []
    for ratio in ratios:
        rw = np.round(np.sqrt(w * h / ratio))
        rh = np.round(rw * ratio)
        for s in scales:
            sw, sh = rw * s, rh * s
            out.append([cx - 0.5 * (sw - 1), cy - 0.5 * (sh - 1), cx + 0.5 * (sw - 1),
                        cy + 0.5 * (sh - 1)])
    return np.array(out)


def nms(dets, thresh):
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort(kind="stable")[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]])
                       + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]])
                       + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def proposals(cls_prob, deltas, im_info, base, feat_stride=16, pre_nms=6000, post_nms=300,
              thresh=0.7, min_size=16):
    a = base.shape[0]
    scores = cls_prob[:, a:, :, :]
    height, width = scores.shape[-2:]
    sx, sy = np.meshgrid(np.arange(width) * feat_stride, np.arange(height) * feat_stride)
    shifts = np.vstack((sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel())).transpose()
    boxes = (base.reshape((1, a, 4)) + shifts.reshape((1, -1, 4)).transpose((1, 0, 2)))
    boxes = boxes.reshape((-1, 4)).astype(np.float32)
    d = deltas.transpose((0, 2, 3, 1)).reshape((-1, 4))
    s = scores.transpose((0, 2, 3, 1)).reshape((-1, 1))
    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    cx, cy = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
    pcx, pcy = d[:, 0] * widths + cx, d[:, 1] * heights + cy
    pw, ph = np.exp(d[:, 2]) * widths, np.exp(d[:, 3]) * heights
    p = np.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], axis=1)
    p[:, 0::2] = np.maximum(np.minimum(p[:, 0::2], im_info[1] - 1), 0)
    p[:, 1::2] = np.maximum(np.minimum(p[:, 1::2], im_info[0] - 1), 0)
    ws, hs = p[:, 2] - p[:, 0] + 1, p[:, 3] - p[:, 1] + 1
    keep = np.where((ws >= min_size * im_info[2]) & (hs >= min_size * im_info[2]))[0]
    p, s = p[keep], s[keep]
    order = s.ravel().argsort(kind="stable")[::-1][:pre_nms]
    p, s = p[order], s[order]
    keep = nms(np.hstack((p, s)), thresh)[:post_nms]
    return np.hstack((np.zeros((len(keep), 1), np.float32), p[keep])), s[keep]


# --- BN: PSPNet (bn_layer.cpp) and SegNet (bn_layer.cpp of caffe-segnet) -----------------------
def pspnet_bn_train(x, slope, bias, mean_blob, var_blob, momentum, eps):
    """Returns y, x_norm, inv_std and the updated moving mean and variance."""
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, dtype=np.float64).astype(F)
    centred = (x - mean[None, :, None, None]).astype(F)
    var = (centred * centred).mean(axis=axes, dtype=np.float64).astype(F)
    new_mean = (F(1) - momentum) * mean + momentum * mean_blob
    new_var = (F(1) - momentum) * var + momentum * var_blob
    inv_std = np.power(var + eps, F(-0.5))
    x_norm = centred * inv_std[None, :, None, None]
    y = x_norm * slope[None, :, None, None] + bias[None, :, None, None]
    return y, x_norm, inv_std, new_mean, new_var


def bn_train_backward(dy, x_norm, scale, inv_std):
    """Both forks' batch-statistics gradient (returns dx, dscale, dshift)."""
    axes = (0, 2, 3)
    m = dy.shape[0] * dy.shape[2] * dy.shape[3]
    g = dy * scale[None, :, None, None]
    sum_g = g.sum(axis=axes, dtype=np.float64)
    sum_gx = (g * x_norm).sum(axis=axes, dtype=np.float64)
    dx = (g - (sum_g[None, :, None, None] + x_norm * sum_gx[None, :, None, None]) / m)
    dx = dx * inv_std[None, :, None, None]
    return (dx.astype(F), (dy * x_norm).sum(axis=axes, dtype=np.float64).astype(F),
            dy.sum(axis=axes, dtype=np.float64).astype(F))


def segnet_bn_learn(x, scale, shift, eps=1e-9):
    """Returns y, batch mean, batch variance (E(x^2) - E(x)^2) and x_norm."""
    eps = F(eps)
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, dtype=np.float64).astype(F)
    var = (x.astype(np.float64) ** 2).mean(axis=axes).astype(F) - mean * mean
    std = np.sqrt(var + eps)
    x_norm = (x - mean[None, :, None, None]) / std[None, :, None, None]
    return x_norm * scale[None, :, None, None] + shift[None, :, None, None], mean, var, x_norm
