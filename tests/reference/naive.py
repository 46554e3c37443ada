"""Plain-NumPy, loop-based reference implementations of Caffe's layer arithmetic.

Written straight from Caffe's C++ loops (im2col.cpp, conv_layer.cpp, pooling_layer.cpp,
embed_layer.cpp, softmax_loss_layer.cpp, accuracy_layer.cpp), deliberately slow and obvious, so
that the fast pyforge kernels can be compared with them: convolution forward and backward,
im2col/col2im, pooling, row scatter-add, softmax, its loss and accuracy. Everything computes in
float64 unless said otherwise.
"""

from __future__ import annotations

import math

import numpy as np

FLT_MIN = np.float32(1.17549435e-38)
FLT_MAX = np.float32(3.4028234663852886e38)


# --- convolution ----------------------------------------------------------------------------------
def conv_out_size(size: int, k: int, pad: int, stride: int, dilation: int = 1) -> int:
    """Caffe's convolution output size: floor division."""
    extent = dilation * (k - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


def im2col(x: np.ndarray, kh: int, kw: int, ph: int = 0, pw: int = 0, sh: int = 1, sw: int = 1,
           dh: int = 1, dw: int = 1) -> np.ndarray:
    """One image (C, H, W) -> columns (C*kh*kw, OH*OW); rows in Caffe's (c, ki, kj) order."""
    channels, height, width = x.shape
    oh = conv_out_size(height, kh, ph, sh, dh)
    ow = conv_out_size(width, kw, pw, sw, dw)
    col = np.zeros((channels * kh * kw, oh * ow), dtype=x.dtype)
    for c in range(channels):
        for ki in range(kh):
            for kj in range(kw):
                row = (c * kh + ki) * kw + kj
                for y in range(oh):
                    iy = y * sh - ph + ki * dh
                    for xo in range(ow):
                        ix = xo * sw - pw + kj * dw
                        if 0 <= iy < height and 0 <= ix < width:
                            col[row, y * ow + xo] = x[c, iy, ix]
    return col


def im2col_batch(x: np.ndarray, kh: int, kw: int, ph: int = 0, pw: int = 0, sh: int = 1,
                 sw: int = 1, dh: int = 1, dw: int = 1) -> np.ndarray:
    """(N, C, H, W) -> (C*kh*kw, N*OH*OW): each image's columns, one image after another."""
    return np.concatenate([im2col(img, kh, kw, ph, pw, sh, sw, dh, dw) for img in x], axis=1)


def col2im(col: np.ndarray, shape: tuple[int, int, int], kh: int, kw: int, ph: int = 0,
           pw: int = 0, sh: int = 1, sw: int = 1, dh: int = 1, dw: int = 1) -> np.ndarray:
    """Columns (C*kh*kw, OH*OW) -> image (C, H, W), adding every column entry at its pixel."""
    channels, height, width = shape
    oh = conv_out_size(height, kh, ph, sh, dh)
    ow = conv_out_size(width, kw, pw, sw, dw)
    out = np.zeros(shape, dtype=np.float64)
    for c in range(channels):
        for ki in range(kh):
            for kj in range(kw):
                row = (c * kh + ki) * kw + kj
                for y in range(oh):
                    iy = y * sh - ph + ki * dh
                    for xo in range(ow):
                        ix = xo * sw - pw + kj * dw
                        if 0 <= iy < height and 0 <= ix < width:
                            out[c, iy, ix] += col[row, y * ow + xo]
    return out


def col2im_batch(col: np.ndarray, shape: tuple[int, int, int, int], kh: int, kw: int,
                 ph: int = 0, pw: int = 0, sh: int = 1, sw: int = 1, dh: int = 1,
                 dw: int = 1) -> np.ndarray:
    n_img, channels, height, width = shape
    oh = conv_out_size(height, kh, ph, sh, dh)
    ow = conv_out_size(width, kw, pw, sw, dw)
    per = oh * ow
    return np.stack([
        col2im(col[:, n * per : (n + 1) * per], (channels, height, width), kh, kw, ph, pw, sh,
               sw, dh, dw)
        for n in range(n_img)
    ])


def conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                 pad: tuple[int, int] = (0, 0), stride: tuple[int, int] = (1, 1),
                 dilation: tuple[int, int] = (1, 1), group: int = 1) -> np.ndarray:
    """Direct (no im2col) grouped, dilated 2-D cross-correlation, as Caffe's Convolution.

    x (N, C, H, W), weight (M, C/group, kh, kw), bias (M,) -> (N, M, OH, OW).
    """
    n_img, channels, height, width = x.shape
    num_out, c_per_group, kh, kw = weight.shape
    assert channels == c_per_group * group and num_out % group == 0
    m_per_group = num_out // group
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    oh = conv_out_size(height, kh, ph, sh, dh)
    ow = conv_out_size(width, kw, pw, sw, dw)
    out = np.zeros((n_img, num_out, oh, ow), dtype=np.float64)
    for n in range(n_img):
        for m in range(num_out):
            g = m // m_per_group
            for y in range(oh):
                for xo in range(ow):
                    total = 0.0
                    for cg in range(c_per_group):
                        c = g * c_per_group + cg
                        for ki in range(kh):
                            iy = y * sh - ph + ki * dh
                            if not 0 <= iy < height:
                                continue
                            for kj in range(kw):
                                ix = xo * sw - pw + kj * dw
                                if 0 <= ix < width:
                                    total += float(weight[m, cg, ki, kj]) * float(x[n, c, iy, ix])
                    if bias is not None:
                        total += float(bias[m])
                    out[n, m, y, xo] = total
    return out


def conv_backward(x: np.ndarray, weight: np.ndarray, dy: np.ndarray,
                  pad: tuple[int, int] = (0, 0), stride: tuple[int, int] = (1, 1),
                  dilation: tuple[int, int] = (1, 1), group: int = 1
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_forward` for the top gradient ``dy`` (N, M, OH, OW): (weight
    gradient (M, C/group, kh, kw), bias gradient (M,), data gradient (N, C, H, W)), each tap's
    product added where the forward multiplied it."""
    n_img, channels, height, width = x.shape
    num_out, c_per_group, kh, kw = weight.shape
    m_per_group = num_out // group
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    _, _, oh, ow = dy.shape
    d_weight = np.zeros(weight.shape, dtype=np.float64)
    d_bias = np.zeros(num_out, dtype=np.float64)
    d_x = np.zeros(x.shape, dtype=np.float64)
    for n in range(n_img):
        for m in range(num_out):
            g = m // m_per_group
            for y in range(oh):
                for xo in range(ow):
                    grad = float(dy[n, m, y, xo])
                    d_bias[m] += grad
                    for cg in range(c_per_group):
                        c = g * c_per_group + cg
                        for ki in range(kh):
                            iy = y * sh - ph + ki * dh
                            if not 0 <= iy < height:
                                continue
                            for kj in range(kw):
                                ix = xo * sw - pw + kj * dw
                                if 0 <= ix < width:
                                    d_weight[m, cg, ki, kj] += grad * float(x[n, c, iy, ix])
                                    d_x[n, c, iy, ix] += grad * float(weight[m, cg, ki, kj])
    return d_weight, d_bias, d_x


# --- pooling --------------------------------------------------------------------------------------
def pooled_size(size: int, k: int, stride: int, pad: int, round_mode: str = "CEIL") -> int:
    """Caffe's pooled size: ceil (or floor) of a float ratio, plus one; then, with padding,
    drop the last window if it would start inside the padding."""
    ratio = np.float32(size + 2 * pad - k) / np.float32(stride)
    rounded = math.ceil(ratio) if round_mode == "CEIL" else math.floor(ratio)
    pooled = int(rounded) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def _pool_geometry(shape, kh, kw, sh, sw, ph, pw, round_mode):
    _, _, height, width = shape
    return (pooled_size(height, kh, sh, ph, round_mode),
            pooled_size(width, kw, sw, pw, round_mode))


def max_pool(x: np.ndarray, kh: int, kw: int, sh: int = 1, sw: int = 1, ph: int = 0,
             pw: int = 0, round_mode: str = "CEIL", out_hw: tuple[int, int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """MAX pooling: (top, argmax) where argmax is the flat index ``h*W + w`` of the first
    maximum (strict ``>`` starting from -FLT_MAX), windows clipped to the image."""
    n_img, channels, height, width = x.shape
    oh, ow = out_hw or _pool_geometry(x.shape, kh, kw, sh, sw, ph, pw, round_mode)
    top = np.zeros((n_img, channels, oh, ow), dtype=np.float32)
    mask = np.full((n_img, channels, oh, ow), -1, dtype=np.int64)
    for n in range(n_img):
        for c in range(channels):
            for y in range(oh):
                hstart = y * sh - ph
                hend = min(hstart + kh, height)
                hstart = max(hstart, 0)
                for xo in range(ow):
                    wstart = xo * sw - pw
                    wend = min(wstart + kw, width)
                    wstart = max(wstart, 0)
                    best = -FLT_MAX
                    idx = -1
                    for i in range(hstart, hend):
                        for j in range(wstart, wend):
                            if x[n, c, i, j] > best:
                                best = x[n, c, i, j]
                                idx = i * width + j
                    top[n, c, y, xo] = best
                    mask[n, c, y, xo] = idx
    return top, mask


def max_pool_backward(top_diff: np.ndarray, mask: np.ndarray, bottom_shape) -> np.ndarray:
    n_img, channels, height, width = bottom_shape
    out = np.zeros(bottom_shape, dtype=np.float64)
    for n in range(n_img):
        for c in range(channels):
            for y in range(top_diff.shape[2]):
                for xo in range(top_diff.shape[3]):
                    idx = mask[n, c, y, xo]
                    if idx >= 0:
                        out[n, c, idx // width, idx % width] += top_diff[n, c, y, xo]
    return out


def _ave_window(y, xo, kh, kw, sh, sw, ph, pw, height, width):
    hstart = y * sh - ph
    wstart = xo * sw - pw
    hend = min(hstart + kh, height + ph)
    wend = min(wstart + kw, width + pw)
    pool_size = (hend - hstart) * (wend - wstart)  # before clipping to the image
    return (max(hstart, 0), min(hend, height), max(wstart, 0), min(wend, width), pool_size)


def ave_pool(x: np.ndarray, kh: int, kw: int, sh: int = 1, sw: int = 1, ph: int = 0,
             pw: int = 0, round_mode: str = "CEIL", out_hw: tuple[int, int] | None = None
             ) -> np.ndarray:
    """AVE pooling: sum over the window clipped to the image, divided by the window size
    clipped to the *padded* image (padding counts in the divisor)."""
    n_img, channels, height, width = x.shape
    oh, ow = out_hw or _pool_geometry(x.shape, kh, kw, sh, sw, ph, pw, round_mode)
    top = np.zeros((n_img, channels, oh, ow), dtype=np.float64)
    for n in range(n_img):
        for c in range(channels):
            for y in range(oh):
                for xo in range(ow):
                    h0, h1, w0, w1, size = _ave_window(y, xo, kh, kw, sh, sw, ph, pw, height,
                                                       width)
                    total = 0.0
                    for i in range(h0, h1):
                        for j in range(w0, w1):
                            total += float(x[n, c, i, j])
                    top[n, c, y, xo] = total / size
    return top


def ave_pool_backward(top_diff: np.ndarray, bottom_shape, kh: int, kw: int, sh: int = 1,
                      sw: int = 1, ph: int = 0, pw: int = 0) -> np.ndarray:
    n_img, channels, height, width = bottom_shape
    out = np.zeros(bottom_shape, dtype=np.float64)
    for n in range(n_img):
        for c in range(channels):
            for y in range(top_diff.shape[2]):
                for xo in range(top_diff.shape[3]):
                    h0, h1, w0, w1, size = _ave_window(y, xo, kh, kw, sh, sw, ph, pw, height,
                                                       width)
                    g = float(top_diff[n, c, y, xo]) / size
                    for i in range(h0, h1):
                        for j in range(w0, w1):
                            out[n, c, i, j] += g
    return out


# --- gather / scatter -----------------------------------------------------------------------------
def scatter_add_rows(src: np.ndarray, index: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``dst[index[i]] += src[i]`` row after row, in source order, in ``dst``'s precision (the
    order Caffe's CPU loops add in, so float32 sums round as in Caffe); returns a new array."""
    out = np.array(dst, copy=True)
    for i in range(src.shape[0]):
        out[index[i]] += src[i]
    return out


# --- softmax, loss, accuracy ----------------------------------------------------------------------
def _as_outer_channels_inner(x: np.ndarray, axis: int) -> tuple[np.ndarray, int, int, int]:
    axis = axis % x.ndim
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    channels = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
    return x.reshape(outer, channels, inner), outer, channels, inner


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    x3, outer, channels, inner = _as_outer_channels_inner(np.asarray(x, np.float64), axis)
    out = np.zeros_like(x3)
    for i in range(outer):
        for j in range(inner):
            v = x3[i, :, j]
            e = np.exp(v - v.max())
            out[i, :, j] = e / e.sum()
    return out.reshape(np.shape(x))


def softmax_loss(x: np.ndarray, labels: np.ndarray, axis: int = 1,
                 ignore_label: int | None = None, normalization: str = "VALID",
                 loss_weight: float = 1.0) -> tuple[float, np.ndarray]:
    """Caffe's SoftmaxWithLoss: (loss, bottom gradient) for one ``loss_weight``.

    ``normalization`` is one of FULL, VALID, BATCH_SIZE, NONE; VALID without ``ignore_label``
    counts every position.
    """
    prob = softmax(x, axis)
    p3, outer, channels, inner = _as_outer_channels_inner(prob, axis)
    lab = np.asarray(labels).reshape(outer, inner)
    grad = p3.copy()
    total = 0.0
    count = 0
    for i in range(outer):
        for j in range(inner):
            label = int(lab[i, j])
            if ignore_label is not None and label == ignore_label:
                grad[i, :, j] = 0.0
                continue
            total -= math.log(max(p3[i, label, j], float(FLT_MIN)))
            grad[i, label, j] -= 1.0
            count += 1
    if normalization == "FULL":
        norm = outer * inner
    elif normalization == "VALID":
        norm = count if ignore_label is not None else outer * inner
    elif normalization == "BATCH_SIZE":
        norm = outer
    elif normalization == "NONE":
        norm = 1
    else:
        raise ValueError(normalization)
    norm = max(1.0, float(norm))
    return total / norm, (grad * loss_weight / norm).reshape(np.shape(x))


def accuracy(scores: np.ndarray, labels: np.ndarray, top_k: int = 1, axis: int = 1,
             ignore_label: int | None = None) -> tuple[float, np.ndarray]:
    """Caffe's Accuracy loop: (accuracy, per-class accuracy).

    The true class counts itself once (start value -1): an item is correct iff fewer than
    ``top_k`` classes have a score ``>=`` the true class's, so ties count against.
    """
    s3, outer, channels, inner = _as_outer_channels_inner(np.asarray(scores), axis)
    lab = np.asarray(labels).reshape(outer, inner)
    correct = 0
    count = 0
    per_class_hits = np.zeros(channels)
    per_class_count = np.zeros(channels)
    for i in range(outer):
        for j in range(inner):
            label = int(lab[i, j])
            if ignore_label is not None and label == ignore_label:
                continue
            per_class_count[label] += 1
            true_score = s3[i, label, j]
            better = -1
            for k in range(channels):
                better += int(s3[i, k, j] >= true_score)
            if better < top_k:
                correct += 1
                per_class_hits[label] += 1
            count += 1
    per_class = np.where(per_class_count > 0, per_class_hits / np.maximum(per_class_count, 1), 0)
    return (correct / count if count else 0.0), per_class
