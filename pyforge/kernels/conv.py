"""Convolution forward and backward: image by image with BLAS, or direct for depthwise.

GEMM convolutions: each thread takes a contiguous share of the batch. For each of its images it
unrolls the input into a column buffer in Caffe's (channel, kernel row, kernel column) row order
(so .caffemodel weights apply unchanged), multiplies it with BLAS (one thread per GEMM), and
writes the result straight into the output. The buffers stay in cache, unlike one huge column
matrix for the whole batch, which made the layer memory-bound. A ``pointwise`` convolution (1x1
kernel, stride 1, no padding) skips the unrolling: the image *is* its column matrix. Weight and
bias gradients are summed per thread, in image order, and the per-thread sums are added in
thread order afterwards, so a fixed thread count gives bitwise-reproducible results.

Depthwise convolutions (one input channel per group, MobileNet's ``group`` = channels) have
nothing for a GEMM to gain: a 1 x kh*kw by kh*kw x oh*ow product per channel. They run as direct
stencils over each (image, output channel) plane, in parallel over the planes; the weight and
bias gradients are kept per plane and summed over the images in order, so the result does not
depend on the thread count.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange
from .im2col import col2im_one, im2col_one, valid_range

#: Rows of the ``post`` array of an epilogue: BatchNorm's mean and std, Scale's factor and
#: offset, one value per output channel.
POST_MEAN, POST_STD, POST_SCALE, POST_SHIFT = range(4)


@jit
def epilogue_row(src, row, m, post, has_bn, keep, has_scale, has_shift, has_relu, slope,
                 kept):
    """The layers that follow a convolution, on one run of channel ``m``'s output: from
    ``src`` into ``row`` (the same memory when the first of them works in place):
    BatchNorm with stored statistics ``(v - mean) / std``, then (after keeping that in
    ``kept`` for Scale's backward) Scale ``v * scale + shift``, then ReLU
    ``v if v > 0 else v * slope``: each rounded where its layer rounds, so the result is the
    layers' own, bit for bit, from one pass over a cache-warm output."""
    in_place = src.ctypes.data == row.ctypes.data
    deploy = has_bn and has_scale and has_shift and not keep
    mu = post[POST_MEAN, m] if has_bn else np.float32(0.0)
    sd = post[POST_STD, m] if has_bn else np.float32(1.0)
    g = post[POST_SCALE, m] if has_scale else np.float32(1.0)
    b = post[POST_SHIFT, m] if has_shift else np.float32(0.0)
    if deploy and not in_place:
        # Deploy nets whose BatchNorm writes a new blob (MobileNet v2): one pass from the
        # convolution's output. Two distinct arrays: LLVM's overlap check passes and the loop
        # vectorises.
        if has_relu:
            for i in range(row.shape[0]):
                v = ((src[i] - mu) / sd) * g + b
                row[i] = v if v > 0 else v * slope
        else:
            for i in range(row.shape[0]):
                row[i] = ((src[i] - mu) / sd) * g + b
        return
    if not in_place:
        row[:] = src
    # NOTE: every loop below reads and writes ``row`` alone: with a second array that may
    # alias it, LLVM's runtime overlap check fails in place and it runs the scalar loop.
    if deploy:
        # Deploy nets' BatchNorm + Scale (+ ReLU) in place: one loop.
        if has_relu:
            for i in range(row.shape[0]):
                v = ((row[i] - mu) / sd) * g + b
                row[i] = v if v > 0 else v * slope
        else:
            for i in range(row.shape[0]):
                row[i] = ((row[i] - mu) / sd) * g + b
        return
    if has_bn:
        for i in range(row.shape[0]):
            row[i] = (row[i] - mu) / sd
    if keep:
        kept[:] = row
    if has_scale:
        if has_shift:
            for i in range(row.shape[0]):
                row[i] = row[i] * g + b
        else:
            for i in range(row.shape[0]):
                row[i] = row[i] * g
    if has_relu:
        for i in range(row.shape[0]):
            v = row[i]
            row[i] = v if v > 0 else v * slope


@jit
def apply_epilogue(src, rows, first, post, has_bn, keep, has_scale, has_shift, has_relu,
                   slope, kept):
    """:func:`epilogue_row` over the rows of ``src`` into ``rows`` (channels ``first``,
    ``first + 1``, ...; ``kept`` has a row per channel when ``keep``)."""
    for r in range(rows.shape[0]):
        epilogue_row(src[r], rows[r], first + r, post, has_bn, keep, has_scale, has_shift,
                     has_relu, slope, kept[r])


@pjit
def conv_forward(x, weight, bias, use_bias, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, pointwise,
                 cols, out, post, has_bn, keep, has_scale, has_shift, has_relu, slope, kept,
                 final):
    """``out[n]`` (G, M/G, oh*ow) = ``weight`` (G, M/G, K/G) @ im2col(x[n]) (+ bias); with
    ``pointwise`` the image itself is the column matrix. Each image's output then goes
    through :func:`apply_epilogue` into ``final`` while it is in cache (nothing when no flag
    is set).

    Arrays are indexed with integers only (no slices), so Numba knows every operand of
    ``np.dot`` is C-contiguous and hands it to BLAS without a copy."""
    n_img = x.shape[0]
    threads = cols.shape[0]
    groups, m_g, k_g = weight.shape
    spatial = out.shape[3]
    for t in prange(threads):
        col = cols[t]
        for n in range(t * n_img // threads, (t + 1) * n_img // threads):
            if pointwise:
                col_g = x[n].reshape(groups, k_g, spatial)
            else:
                im2col_one(x, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col)
                col_g = col.reshape(groups, k_g, spatial)
            for g in range(groups):
                np.dot(weight[g], col_g[g], out[n, g])
            if use_bias:
                for g in range(groups):
                    for m in range(m_g):
                        b = bias[g * m_g + m]
                        for s in range(spatial):
                            out[n, g, m, s] += b
            if has_bn or has_scale or has_relu:
                apply_epilogue(out[n].reshape(groups * m_g, spatial),
                               final[n].reshape(groups * m_g, spatial), 0, post, has_bn, keep,
                               has_scale, has_shift, has_relu, slope,
                               kept[n].reshape(kept.shape[1], kept.shape[2] * kept.shape[3]))


@jit
def _sgemm_setup():
    """The by-address scalars of :func:`_tile_product`: six ints, alpha and beta, 'N'."""
    ints = np.empty(6, np.int32)
    scalars = np.empty(2, np.float32)
    scalars[0] = 1.0
    scalars[1] = 0.0
    no_transpose = np.empty(1, np.uint8)
    no_transpose[0] = 78  # 'N'
    return ints, scalars, no_transpose


@jit
def _tile_product(sgemm, ints, scalars, no_transpose, weight, columns, offset, stride, width,
                  result, result_offset, result_stride):
    """``result[m, j]`` (row ``m`` at ``result_offset + m * result_stride``) = sum over k of
    ``weight[m, k] * columns[offset + k * stride + j]`` for ``j < width``: one tile of
    columns of a row-major (K, S) matrix, through Fortran sgemm, which reads it in place.
    Column-major, that is result.T (width x M) = columns.T (width x K) @ weight.T (K x M)."""
    m_out, k = weight.shape
    ints[0] = width
    ints[1] = m_out
    ints[2] = k
    ints[3] = stride
    ints[4] = k
    ints[5] = result_stride
    sgemm(no_transpose.ctypes, no_transpose.ctypes, ints[0:].ctypes, ints[1:].ctypes,
          ints[2:].ctypes, scalars[0:].ctypes, columns[offset:].ctypes, ints[3:].ctypes,
          weight.ctypes, ints[4:].ctypes, scalars[1:].ctypes,
          result[result_offset:].ctypes, ints[5:].ctypes)


@pjit
def conv_forward_tiled(x, weight, bias, use_bias, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow,
                       pointwise, sgemm, cols, tiles, store, out, post, has_bn, keep,
                       has_scale, has_shift, has_relu, slope, kept, final):
    """A one-group convolution, ``out[n]`` (M, oh*ow) = ``weight`` (M, K) @ im2col(x[n])
    (+ bias), computed a tile of output columns at a time: each tile goes through the bias
    and :func:`epilogue_row` into ``final`` while it is in cache, where a whole image's
    output (3-5 MB for MobileNet's and ResNet's early layers) would have left it before the
    followers read it back. With ``pointwise`` the image itself is the column matrix.

    ``store`` false leaves ``out`` unwritten: each tile lands in the thread's ``tiles`` row
    and only the followers' result reaches ``final`` (the net elides the convolution's own
    output when nothing reads it; see :mod:`pyforge.net.fusion`). The products are the same
    BLAS calls either way, so both give the same bits."""
    n_img = x.shape[0]
    threads = cols.shape[0]
    m_out, k = weight.shape
    spatial = oh * ow
    tile = tiles.shape[1] // m_out
    follow = has_bn or has_scale or has_relu
    for t in prange(threads):
        col = cols[t]
        buffer = tiles[t]
        ints, scalars, no_transpose = _sgemm_setup()
        for n in range(t * n_img // threads, (t + 1) * n_img // threads):
            if pointwise:
                columns = x[n].reshape(k * spatial)
            else:
                im2col_one(x, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col)
                columns = col.reshape(k * spatial)
            flat_out = out[n].reshape(m_out * spatial)
            flat_final = final[n].reshape(m_out * spatial)
            flat_kept = kept[n].reshape(kept.shape[1] * kept.shape[2] * kept.shape[3])
            for start in range(0, spatial, tile):
                width = min(tile, spatial - start)
                if store:
                    result, result_offset, result_stride = flat_out, start, spatial
                else:
                    result, result_offset, result_stride = buffer, 0, width
                _tile_product(sgemm, ints, scalars, no_transpose, weight, columns, start,
                              spatial, width, result, result_offset, result_stride)
                if not (use_bias or follow):
                    continue
                for m in range(m_out):
                    at = result_offset + m * result_stride
                    span = result[at:at + width]
                    if use_bias:
                        b = bias[m]
                        for i in range(width):
                            span[i] += b
                    if follow:
                        at = m * spatial + start
                        epilogue_row(span, flat_final[at:at + width], m, post, has_bn, keep,
                                     has_scale, has_shift, has_relu, slope,
                                     flat_kept[at:at + width] if keep else flat_kept)


@jit
def _pad_image(x, n, ph, pw, plane, pad):
    """Image ``n`` of ``x`` zero-padded into ``pad``: one flat (H+2ph)*(W+2pw) plane per
    channel, ``plane`` apart (the tail after each plane stays zero too)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    wp = width + 2 * pw
    pad[:] = 0.0
    for c in range(channels):
        for y in range(height):
            start = c * plane + (y + ph) * wp + pw
            pad[start:start + width] = x[n, c, y]


@pjit
def conv_forward_shifted(x, taps, bias, use_bias, kh, kw, ph, pw, dh, dw, oh, ow, sgemm, pads,
                         parts, store, out, post, has_bn, keep, has_scale, has_shift, has_relu,
                         slope, kept, final):
    """A stride-1 convolution (one group) without im2col: the output over the padded width,
    (M, oh * Wp), is the sum over kernel taps of ``taps[tap]`` (M, C) times the padded image
    shifted by the tap's offset, a (C, oh * Wp) matrix that BLAS reads in place with row
    stride ``plane`` (``sgemm`` is SciPy's Fortran sgemm, called with strides). The columns
    past each row's ``ow`` are computed and dropped (2 of 58 for ResNet's 56x56 layers), while
    im2col would have written and read a column matrix 9 times the image.

    Per output element this adds the channel products tap by tap, where the im2col GEMM
    adds them in (channel, tap) order: the same sum, rounded differently (about 1e-7
    relative). Then the bias and :func:`epilogue_row`, row by row from the thread's cache-warm
    result; ``store`` false leaves ``out`` unwritten, as in :func:`conv_forward_tiled`."""
    n_img, channels = x.shape[0], x.shape[1]
    follow = has_bn or has_scale or has_relu
    m_out = taps.shape[1]
    wp = x.shape[3] + 2 * pw
    threads = pads.shape[0]
    plane = pads.shape[1] // channels
    columns = oh * wp
    spatial = oh * ow
    for t in prange(threads):
        pad = pads[t]
        part = parts[t]
        # Fortran sgemm takes every argument by address. Column-major, the product is
        # part.T (columns x M) = shifted.T (columns x C, leading dimension plane)
        # @ taps[tap].T (C x M).
        ints = np.empty(6, np.int32)
        ints[0] = columns
        ints[1] = m_out
        ints[2] = channels
        ints[3] = plane
        ints[4] = channels
        ints[5] = columns
        scalars = np.empty(2, np.float32)
        scalars[0] = 1.0
        no_transpose = np.empty(1, np.uint8)
        no_transpose[0] = 78  # 'N'
        for n in range(t * n_img // threads, (t + 1) * n_img // threads):
            _pad_image(x, n, ph, pw, plane, pad)
            for tap in range(kh * kw):
                offset = (tap // kw) * dh * wp + (tap % kw) * dw
                scalars[1] = 0.0 if tap == 0 else 1.0
                sgemm(no_transpose.ctypes, no_transpose.ctypes, ints[0:].ctypes,
                      ints[1:].ctypes, ints[2:].ctypes, scalars[0:].ctypes,
                      pad[offset:].ctypes, ints[3:].ctypes, taps[tap].ctypes, ints[4:].ctypes,
                      scalars[1:].ctypes, part.ctypes, ints[5:].ctypes)
            flat_kept = kept[n].reshape(kept.shape[1] * kept.shape[2] * kept.shape[3])
            dsts_final = final[n].reshape(m_out, spatial)
            for m in range(m_out):
                dst = out[n, 0, m]
                dst_final = dsts_final[m]
                for y in range(oh):
                    src = part[m, y * wp:y * wp + ow]
                    if use_bias:
                        b = bias[m]
                        for j in range(ow):
                            src[j] += b
                    if store:
                        dst[y * ow:(y + 1) * ow] = src
                    if follow:
                        at = m * spatial + y * ow
                        epilogue_row(src, dst_final[y * ow:(y + 1) * ow], m, post, has_bn,
                                     keep, has_scale, has_shift, has_relu, slope,
                                     flat_kept[at:at + ow] if keep else flat_kept)


@pjit
def conv_backward_shifted(x, taps, dy, kh, kw, ph, pw, dh, dw, oh, ow, sgemm, need_weight,
                          need_bias, need_data, pads, wides, dtaps, db_parts, dx):
    """:func:`conv_backward` for the layers :func:`conv_forward_shifted` runs, without im2col
    or col2im. Per image, ``dy`` is spread over the padded width (``wides[t]``, zeros in the
    dropped columns). The weight gradient of each tap, (M, C), is that times the shifted
    padded image transposed, summed over the thread's images into ``dtaps[t]`` (taps, C, M)
    by BLAS (beta = 1). The data gradient: each tap's ``taps[tap].T @ wide`` is added into a
    zeroed padded plane at the tap's offset (``pads[t]``), whose inside is then ``dx[n]``.
    Per-thread sums, deterministic for a fixed thread count, as in conv_backward."""
    n_img, channels, height, width = x.shape
    m_out = taps.shape[1]
    wp = width + 2 * pw
    threads = pads.shape[0]
    plane = pads.shape[1] // channels
    columns = oh * wp
    for t in prange(threads):
        pad = pads[t]
        wide = wides[t]
        dtap = dtaps[t]
        dtap[:] = 0.0
        db_parts[t] = 0.0
        ints = np.empty(4, np.int32)
        ints[0] = columns
        ints[1] = m_out
        ints[2] = channels
        ints[3] = plane
        scalars = np.empty(1, np.float32)
        scalars[0] = 1.0
        letters = np.empty(2, np.uint8)
        letters[0] = 78  # 'N'
        letters[1] = 84  # 'T'
        wide[:] = 0.0
        for n in range(t * n_img // threads, (t + 1) * n_img // threads):
            for m in range(m_out):
                for y in range(oh):
                    wide[m, y * wp:y * wp + ow] = dy[n, 0, m, y * ow:(y + 1) * ow]
            if need_bias:
                for m in range(m_out):
                    total = np.float32(0.0)
                    for s in range(oh * ow):
                        total += dy[n, 0, m, s]
                    db_parts[t, 0, m] += total
            if need_weight:
                _pad_image(x, n, ph, pw, plane, pad)
                for tap in range(kh * kw):
                    offset = (tap // kw) * dh * wp + (tap % kw) * dw
                    # Column-major: dtap[tap] (M x C) += wide (M x columns) @ the shifted
                    # image (columns x C, leading dimension plane).
                    sgemm(letters[1:].ctypes, letters[0:].ctypes, ints[1:].ctypes,
                          ints[2:].ctypes, ints[0:].ctypes, scalars.ctypes, wide.ctypes,
                          ints[0:].ctypes, pad[offset:].ctypes, ints[3:].ctypes,
                          scalars.ctypes, dtap[tap].ctypes, ints[1:].ctypes)
            if need_data:
                pad[:] = 0.0
                for tap in range(kh * kw):
                    # Column-major: the padded plane at the offset (columns x C, leading
                    # dimension plane) += wide (columns x M) @ taps[tap] (M x C).
                    offset = (tap // kw) * dh * wp + (tap % kw) * dw
                    sgemm(letters[0:].ctypes, letters[1:].ctypes, ints[0:].ctypes,
                          ints[2:].ctypes, ints[1:].ctypes, scalars.ctypes, wide.ctypes,
                          ints[0:].ctypes, taps[tap].ctypes, ints[2:].ctypes, scalars.ctypes,
                          pad[offset:].ctypes, ints[3:].ctypes)
                for c in range(channels):
                    for y in range(height):
                        start = c * plane + (y + ph) * wp + pw
                        dx[n, c, y] = pad[start:start + width]


@pjit
def conv_backward(x, weight, dy, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, pointwise,
                  need_weight, need_bias, need_data, cols, dcols, dw_parts, dw_tmp, db_parts,
                  dx):
    """Per-thread weight/bias gradient sums into ``dw_parts`` (T, G, K/G, M/G: the weight
    gradient *transposed*) and ``db_parts`` (T, G, M/G); the data gradient into ``dx``
    (overwritten). ``dy`` is (N, G, M/G, oh*ow). With ``pointwise`` the image is its own
    column matrix and the data gradient's columns are the data gradient.

    The transposed weight gradient ``col @ dy.T`` is the same product as ``dy @ col.T`` with
    the long oh*ow dimension as the inner one of both operands' rows, which OpenBLAS's
    AVX-512 sgemm runs about twice as fast (186 against 94 GFLOP/s on CIFAR-10 quick's conv2;
    the AVX2 kernels gain about 8%)."""
    n_img = x.shape[0]
    threads = cols.shape[0]
    groups, m_g, k_g = weight.shape
    spatial = dy.shape[3]
    for t in prange(threads):
        col = cols[t]
        dcol = dcols[t]
        tmp = dw_tmp[t]
        dw_parts[t] = 0.0
        db_parts[t] = 0.0
        for n in range(t * n_img // threads, (t + 1) * n_img // threads):
            if need_weight:
                if pointwise:
                    col_g = x[n].reshape(groups, k_g, spatial)
                else:
                    im2col_one(x, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col)
                    col_g = col.reshape(groups, k_g, spatial)
                for g in range(groups):
                    np.dot(col_g[g], dy[n, g].T, tmp[g])
                    dw_parts[t, g] += tmp[g]
            if need_bias:
                for g in range(groups):
                    for m in range(m_g):
                        total = np.float32(0.0)
                        for s in range(spatial):
                            total += dy[n, g, m, s]
                        db_parts[t, g, m] += total
            if need_data:
                if pointwise:
                    dx_g = dx[n].reshape(groups, k_g, spatial)
                    for g in range(groups):
                        np.dot(weight[g].T, dy[n, g], dx_g[g])
                else:
                    dcol_g = dcol.reshape(groups, k_g, spatial)
                    for g in range(groups):
                        np.dot(weight[g].T, dy[n, g], dcol_g[g])
                    col2im_one(dcol, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, dx)


@jit
def _pad_plane(src, ph, pw, pad):
    """``pad`` = ``src`` with ``ph`` zero rows above and below, ``pw`` zero columns each side
    (and any extra rows or columns of ``pad`` zero)."""
    height, width = src.shape
    pad[:ph, :] = 0.0
    pad[ph + height:, :] = 0.0
    for y in range(height):
        row = pad[ph + y]
        row[:pw] = 0.0
        row[pw + width:] = 0.0
        row[pw : pw + width] = src[y]


@jit
def _tap_sum_at(src, height, width, wm, y, x):
    """One output of a 3x3 stencil with one pixel of zero padding, at (``y``, ``x``) of a
    flat ``height`` x ``width`` plane: taps in order, those over the padding as ``w * 0``."""
    zero = np.float32(0.0)
    total = np.float32(0.0)
    for ki in range(3):
        iy = y + ki - 1
        for kj in range(3):
            ix = x + kj - 1
            inside = 0 <= iy < height and 0 <= ix < width
            total += wm[ki, kj] * (src[iy * width + ix] if inside else zero)
    return total


@jit
def _stencil3x3_same(src, height, width, wm, out):
    """A 3x3, stride-1 stencil with one pixel of zero padding, from the flat plane ``src``
    into the flat plane ``out``, without copying the plane into a padded buffer: the rows
    inside run as one flat vectorised loop over ``src`` (its first and last columns read
    across the row ends and are then recomputed with the padding taps), the first and last
    rows with their padding taps spelled out. Every output adds the same products in the
    same order as :func:`_stencil_flat` over the padded plane, padding taps included."""
    zero = np.float32(0.0)
    w00, w01, w02 = wm[0, 0], wm[0, 1], wm[0, 2]
    w10, w11, w12 = wm[1, 0], wm[1, 1], wm[1, 2]
    w20, w21, w22 = wm[2, 0], wm[2, 1], wm[2, 2]
    if height >= 3:
        # out[i] for i in [width + 1, width * (height - 1) - 1): rows 1 .. height-2
        start = width + 1
        length = width * (height - 2) - 2
        a0 = src[start - width - 1 : start - width - 1 + length]
        a1 = src[start - width : start - width + length]
        a2 = src[start - width + 1 : start - width + 1 + length]
        b0 = src[start - 1 : start - 1 + length]
        b1 = src[start : start + length]
        b2 = src[start + 1 : start + 1 + length]
        c0 = src[start + width - 1 : start + width - 1 + length]
        c1 = src[start + width : start + width + length]
        c2 = src[start + width + 1 : start + width + 1 + length]
        dst = out[start : start + length]
        for i in range(length):
            total = np.float32(0.0)
            total += w00 * a0[i]
            total += w01 * a1[i]
            total += w02 * a2[i]
            total += w10 * b0[i]
            total += w11 * b1[i]
            total += w12 * b2[i]
            total += w20 * c0[i]
            total += w21 * c1[i]
            total += w22 * c2[i]
            dst[i] = total
        for y in range(1, height - 1):
            out[y * width] = _tap_sum_at(src, height, width, wm, y, 0)
            out[y * width + width - 1] = _tap_sum_at(src, height, width, wm, y, width - 1)
    if width >= 3 and height >= 2:
        # the first row (no row above) and the last (no row below), columns 1 .. width-2
        length = width - 2
        b0, b1, b2 = src[0:length], src[1 : 1 + length], src[2 : 2 + length]
        c0 = src[width : width + length]
        c1 = src[width + 1 : width + 1 + length]
        c2 = src[width + 2 : width + 2 + length]
        dst = out[1 : 1 + length]
        for i in range(length):
            total = np.float32(0.0)
            total += w00 * zero
            total += w01 * zero
            total += w02 * zero
            total += w10 * b0[i]
            total += w11 * b1[i]
            total += w12 * b2[i]
            total += w20 * c0[i]
            total += w21 * c1[i]
            total += w22 * c2[i]
            dst[i] = total
        last = (height - 1) * width
        a0 = src[last - width : last - width + length]
        a1 = src[last - width + 1 : last - width + 1 + length]
        a2 = src[last - width + 2 : last - width + 2 + length]
        b0 = src[last : last + length]
        b1 = src[last + 1 : last + 1 + length]
        b2 = src[last + 2 : last + 2 + length]
        dst = out[last + 1 : last + 1 + length]
        for i in range(length):
            total = np.float32(0.0)
            total += w00 * a0[i]
            total += w01 * a1[i]
            total += w02 * a2[i]
            total += w10 * b0[i]
            total += w11 * b1[i]
            total += w12 * b2[i]
            total += w20 * zero
            total += w21 * zero
            total += w22 * zero
            dst[i] = total
        for y in (0, height - 1):
            out[y * width] = _tap_sum_at(src, height, width, wm, y, 0)
            out[y * width + width - 1] = _tap_sum_at(src, height, width, wm, y, width - 1)
    else:
        for y in range(height):
            for x in range(width):
                out[y * width + x] = _tap_sum_at(src, height, width, wm, y, x)


@jit
def _stencil3x3_stride2(src, height, width, wm, oh, ow, work, out):
    """A 3x3 stencil with stride 2 and one pixel of zero padding, from the flat plane
    ``src`` into the flat (``oh``, ``ow``) plane ``out``. The plane's even and odd columns
    are first split into rows of their own in ``work`` (the odd ones behind a zero, the
    left padding), so that each tap of an output row reads a contiguous run and the row is
    one vectorised loop; rows above and below the plane read a row of zeros. Each output adds
    the same products in the same order as Caffe's im2col columns give them (padding taps as
    ``w * 0``)."""
    w00, w01, w02 = wm[0, 0], wm[0, 1], wm[0, 2]
    w10, w11, w12 = wm[1, 0], wm[1, 1], wm[1, 2]
    w20, w21, w22 = wm[2, 0], wm[2, 1], wm[2, 2]
    span = ow + 1
    evens = work[: height * span]
    odds = work[height * span : 2 * height * span]
    zeros = work[2 * height * span : 2 * height * span + span]
    zeros[:] = 0.0
    # Input column 2*j is evens[j]; 2*j - 1 is odds[j] (odds[0] is the left padding) and
    # 2*j + 1 is odds[j + 1]; columns past the plane read 0.
    for y in range(height):
        row = src[y * width : (y + 1) * width]
        even = evens[y * span : (y + 1) * span]
        odd = odds[y * span : (y + 1) * span]
        odd[0] = 0.0
        for j in range(ow):
            even[j] = row[2 * j]
        for j in range(width // 2):
            odd[j + 1] = row[2 * j + 1]
        for j in range(width // 2, ow):
            odd[j + 1] = 0.0
    for oy in range(oh):
        rows = np.empty(3, np.int64)
        for ki in range(3):
            iy = 2 * oy - 1 + ki
            rows[ki] = iy if 0 <= iy < height else -1
        ea, oa = zeros, zeros
        if rows[0] >= 0:
            ea = evens[rows[0] * span : (rows[0] + 1) * span]
            oa = odds[rows[0] * span : (rows[0] + 1) * span]
        eb, ob = zeros, zeros
        if rows[1] >= 0:
            eb = evens[rows[1] * span : (rows[1] + 1) * span]
            ob = odds[rows[1] * span : (rows[1] + 1) * span]
        ec, oc = zeros, zeros
        if rows[2] >= 0:
            ec = evens[rows[2] * span : (rows[2] + 1) * span]
            oc = odds[rows[2] * span : (rows[2] + 1) * span]
        a0, a1, a2 = oa[0:ow], ea[0:ow], oa[1 : 1 + ow]
        b0, b1, b2 = ob[0:ow], eb[0:ow], ob[1 : 1 + ow]
        c0, c1, c2 = oc[0:ow], ec[0:ow], oc[1 : 1 + ow]
        dst = out[oy * ow : (oy + 1) * ow]
        for i in range(ow):
            total = np.float32(0.0)
            total += w00 * a0[i]
            total += w01 * a1[i]
            total += w02 * a2[i]
            total += w10 * b0[i]
            total += w11 * b1[i]
            total += w12 * b2[i]
            total += w20 * c0[i]
            total += w21 * c1[i]
            total += w22 * c2[i]
            dst[i] = total


@jit
def _stencil_flat(flat, wm, wp, dh, dw, acc):
    """``acc[i] = sum over taps (ki, kj), in that order, of w[ki, kj] * flat[i + ki*dh*wp +
    kj*dw]``: a stride-1 stencil over a padded plane of width ``wp`` laid out flat, so one
    long loop covers every output row (the columns past each row's end are computed and
    dropped). The 3x3 case is written out so that a whole tap set is one vectorised loop."""
    length = acc.shape[0]
    kh, kw = wm.shape
    if kh == 3 and kw == 3:
        o1 = dw
        o2 = 2 * dw
        r1 = dh * wp
        r2 = 2 * dh * wp
        w00, w01, w02 = wm[0, 0], wm[0, 1], wm[0, 2]
        w10, w11, w12 = wm[1, 0], wm[1, 1], wm[1, 2]
        w20, w21, w22 = wm[2, 0], wm[2, 1], wm[2, 2]
        a0, a1, a2 = flat[:length], flat[o1 : o1 + length], flat[o2 : o2 + length]
        b0, b1, b2 = (flat[r1 : r1 + length], flat[r1 + o1 : r1 + o1 + length],
                      flat[r1 + o2 : r1 + o2 + length])
        c0, c1, c2 = (flat[r2 : r2 + length], flat[r2 + o1 : r2 + o1 + length],
                      flat[r2 + o2 : r2 + o2 + length])
        for i in range(length):
            total = np.float32(0.0)
            total += w00 * a0[i]
            total += w01 * a1[i]
            total += w02 * a2[i]
            total += w10 * b0[i]
            total += w11 * b1[i]
            total += w12 * b2[i]
            total += w20 * c0[i]
            total += w21 * c1[i]
            total += w22 * c2[i]
            acc[i] = total
        return
    acc[:] = 0.0
    for ki in range(kh):
        for kj in range(kw):
            offset = ki * dh * wp + kj * dw
            src = flat[offset : offset + length]
            w = wm[ki, kj]
            for i in range(length):
                acc[i] += w * src[i]


@pjit
def depthwise_forward(x, weight, bias, use_bias, ph, pw, sh, sw, dh, dw, pads, store, out,
                      post, has_bn, keep, has_scale, has_shift, has_relu, slope, kept, final):
    """``out[n, m]`` = the kh x kw stencil ``weight[m]`` over ``x[n, m // mult]`` (+ bias),
    for ``x`` (N, C, H, W), ``weight`` (M, kh, kw), ``out`` (N, M, oh, ow), M = mult * C;
    each plane then goes through :func:`epilogue_row` into ``final`` while it is in cache.
    ``store`` false leaves ``out`` unwritten: each plane is made in the thread's buffer
    (as in :func:`conv_forward_tiled`).

    Each thread takes a share of the planes. A 3x3 stencil with stride 1 or 2 and one pixel
    of padding (MobileNet's) reads the plane in place (:func:`_stencil3x3_same`,
    :func:`_stencil3x3_stride2`). Other stride-1 stencils copy the plane into the thread's
    zero-padded buffer (``pads[t]``: the padded plane, then room for the flat result) and run
    as one flat loop (:func:`_stencil_flat`); padding taps add ``w * 0``, as Caffe's im2col
    columns do. Other strides go row by row over the taps inside the image. Taps in (kernel
    row, kernel column) order, the bias last, as the GEMM convolution adds it after its
    product."""
    n_img, channels, height, width = x.shape
    outputs, kh, kw = weight.shape
    oh, ow = out.shape[2], out.shape[3]
    mult = outputs // channels
    threads = pads.shape[0]
    planes = n_img * outputs
    hp = height + 2 * ph
    wp = width + 2 * pw
    length = (oh - 1) * wp + ow
    spatial = oh * ow
    follow = has_bn or has_scale or has_relu
    same3x3 = (kh == 3 and kw == 3 and ph == 1 and pw == 1 and sh == 1 and sw == 1
               and dh == 1 and dw == 1)
    halving3x3 = (kh == 3 and kw == 3 and ph == 1 and pw == 1 and sh == 2 and sw == 2
                  and dh == 1 and dw == 1)
    for t in prange(threads):
        buffer = pads[t]
        pad = buffer[: hp * wp].reshape(hp, wp)
        acc = buffer[hp * wp : hp * wp + length]
        own = buffer[buffer.shape[0] - spatial :]
        for p in range(t * planes // threads, (t + 1) * planes // threads):
            n = p // outputs
            m = p % outputs
            c = m // mult
            target = out[n, m].reshape(spatial) if store else own
            if same3x3:
                _stencil3x3_same(x[n, c].reshape(height * width), height, width, weight[m],
                                 target)
            elif halving3x3:
                _stencil3x3_stride2(x[n, c].reshape(height * width), height, width, weight[m],
                                    oh, ow, buffer, target)
            elif sh == 1 and sw == 1:
                _pad_plane(x[n, c], ph, pw, pad)
                _stencil_flat(buffer[: hp * wp], weight[m], wp, dh, dw, acc)
                for oy in range(oh):
                    target[oy * ow : (oy + 1) * ow] = acc[oy * wp : oy * wp + ow]
            else:
                for oy in range(oh):
                    dst = target[oy * ow : (oy + 1) * ow]
                    dst[:] = 0.0
                    for ki in range(kh):
                        iy = oy * sh - ph + ki * dh
                        if iy < 0 or iy >= height:
                            continue
                        for kj in range(kw):
                            x0, x1 = valid_range(ow, width, pw, sw, kj * dw)
                            if x1 <= x0:
                                continue
                            w = weight[m, ki, kj]
                            start = x0 * sw - pw + kj * dw
                            d = dst[x0:x1]
                            if sw == 1:
                                row = x[n, c, iy, start : start + x1 - x0]
                            else:
                                row = x[n, c, iy, start : start + (x1 - x0 - 1) * sw + 1 : sw]
                            for i in range(x1 - x0):
                                d[i] += w * row[i]
            if use_bias:
                b = bias[m]
                for i in range(spatial):
                    target[i] += b
            if follow:
                epilogue_row(target, final[n, m].reshape(spatial), m, post, has_bn, keep,
                             has_scale, has_shift, has_relu, slope,
                             kept[n, m].reshape(kept.shape[2] * kept.shape[3]))


@pjit
def depthwise_backward(x, weight, dy, ph, pw, sh, sw, dh, dw, need_weight, need_bias,
                       need_data, dw_planes, db_planes, dx):
    """Per (image, output channel) plane: the weight gradient into ``dw_planes`` (N, M, kh,
    kw) and the bias gradient into ``db_planes`` (N, M), each overwritten (the caller sums
    over N in order); with ``need_data`` the data gradient into ``dx`` (N, C, H, W),
    overwritten. Input channel c collects the gradients of its ``mult`` output channels in
    channel order, so the planes of one input channel are handled by one iteration."""
    n_img, channels, height, width = x.shape
    outputs, kh, kw = weight.shape
    oh, ow = dy.shape[2], dy.shape[3]
    mult = outputs // channels
    for p in prange(n_img * channels):
        n = p // channels
        c = p % channels
        # Column sums of one tap's products, so that the inner loops stay elementwise (and
        # vectorised); a plane's buffer, not the loop's.
        acc = np.empty(ow, np.float32)
        if need_data:
            dx[n, c] = 0.0
        for m in range(c * mult, (c + 1) * mult):
            if need_bias:
                total = np.float32(0.0)
                for oy in range(oh):
                    g_row = dy[n, m, oy]
                    for i in range(ow):
                        total += g_row[i]
                db_planes[n, m] = total
            for ki in range(kh):
                oy0, oy1 = valid_range(oh, height, ph, sh, ki * dh)
                for kj in range(kw):
                    x0, x1 = valid_range(ow, width, pw, sw, kj * dw)
                    if x1 <= x0 or oy1 <= oy0:
                        if need_weight:
                            dw_planes[n, m, ki, kj] = 0.0
                        continue
                    count = x1 - x0
                    start = x0 * sw - pw + kj * dw
                    stop = start + (count - 1) * sw + 1
                    w = weight[m, ki, kj]
                    a = acc[:count]
                    a[:] = 0.0
                    for oy in range(oy0, oy1):
                        iy = oy * sh - ph + ki * dh
                        g = dy[n, m, oy, x0:x1]
                        if need_weight:
                            if sw == 1:
                                row = x[n, c, iy, start:stop]
                            else:
                                row = x[n, c, iy, start:stop:sw]
                            for i in range(count):
                                a[i] += g[i] * row[i]
                        if need_data:
                            if sw == 1:
                                d = dx[n, c, iy, start:stop]
                            else:
                                d = dx[n, c, iy, start:stop:sw]
                            for i in range(count):
                                d[i] += w * g[i]
                    if need_weight:
                        total = np.float32(0.0)
                        for i in range(count):
                            total += a[i]
                        dw_planes[n, m, ki, kj] = total
