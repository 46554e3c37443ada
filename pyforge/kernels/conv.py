"""Convolution forward and backward with BLAS (depthwise ones run as stencils elsewhere).

GEMM convolutions: each thread takes a contiguous share of the batch. For each of its images it
unrolls the input into a column buffer in Caffe's (channel, kernel row, kernel column) row order
(so .caffemodel weights apply unchanged) and multiplies it with BLAS (one thread per GEMM): a
tile of output columns at a time for one group (:func:`conv_forward_tiled`), several images at
once for small outputs (:func:`conv_forward_batched`), one product per group otherwise
(:func:`conv_forward`); stride-1 3x3 layers skip the unrolling (:func:`conv_forward_shifted`).
The buffers stay in cache, unlike one huge column matrix for the whole batch, which made the
layer memory-bound. The followers' result goes to ``final`` (N, C, oh, ow) at channels
``final_c0`` onwards: the output itself, a new blob, or a Concat's top that the net has the
convolution fill in place of the Concat's copy (:mod:`pyforge.net.fusion`). A ``pointwise``
convolution (1x1 kernel, stride 1, no padding) skips the unrolling: the image *is* its column
matrix. Weight and bias gradients are summed per thread, in image order, and the per-thread
sums are added in thread order afterwards, so a fixed thread count gives bitwise-reproducible
results.

Depthwise convolutions run as direct stencils in :mod:`pyforge.kernels.depthwise`.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange
from .gemm import gemm_into, gemm_letters
from .im2col import col2im_one, im2col_one

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


@jit
def finish_run(span, m, bias, use_bias, store, stored, follow, final_row, post, has_bn, keep,
               has_scale, has_shift, has_relu, slope, kept_row):
    """One run of channel ``m``'s output fresh from BLAS, in cache: the bias, then a copy
    into ``stored`` (the output) when ``store``, then the followers (:func:`epilogue_row`)
    into ``final_row``."""
    if use_bias:
        b = bias[m]
        for i in range(span.shape[0]):
            span[i] += b
    if store:
        stored[:] = span
    if follow:
        epilogue_row(span, final_row, m, post, has_bn, keep, has_scale, has_shift, has_relu,
                     slope, kept_row)


@pjit
def conv_forward(x, weight, bias, use_bias, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, pointwise,
                 sgemm, cols, out, post, has_bn, keep, has_scale, has_shift, has_relu, slope,
                 kept, final, final_c0):
    """``out[n]`` (G, M/G, oh*ow) = ``weight`` (G, M/G, K/G) @ im2col(x[n]) (+ bias); with
    ``pointwise`` the image itself is the column matrix. Each image's output then goes
    through :func:`apply_epilogue` into ``final`` while it is in cache (nothing when no flag
    is set), at channels ``final_c0`` onwards (``final`` may be a Concat's top).

    Arrays are indexed with integers only (no slices): every operand of :func:`gemm_into`
    is C-contiguous."""
    n_img = x.shape[0]
    threads = cols.shape[0]
    groups, m_g, k_g = weight.shape
    spatial = out.shape[3]
    for t in prange(threads):
        col = cols[t]
        ints, scalars, letters = gemm_letters()
        for n in range(t * n_img // threads, (t + 1) * n_img // threads):
            if pointwise:
                col_g = x[n].reshape(groups, k_g, spatial)
            else:
                im2col_one(x, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col)
                col_g = col.reshape(groups, k_g, spatial)
            for g in range(groups):
                gemm_into(sgemm, ints, scalars, letters, weight[g], False, col_g[g], False,
                          out[n, g])
            if use_bias:
                for g in range(groups):
                    for m in range(m_g):
                        b = bias[g * m_g + m]
                        for s in range(spatial):
                            out[n, g, m, s] += b
            if has_bn or has_scale or has_relu:
                rows = groups * m_g
                apply_epilogue(out[n].reshape(rows, spatial),
                               final[n, final_c0:final_c0 + rows].reshape(rows, spatial), 0,
                               post, has_bn, keep, has_scale, has_shift, has_relu, slope,
                               kept[n].reshape(kept.shape[1], kept.shape[2] * kept.shape[3]))


@jit
def _tile_product(sgemm, ints, scalars, letters, weight, columns, offset, stride, width,
                  result, result_offset, result_stride):
    """``result[m, j]`` (row ``m`` at ``result_offset + m * result_stride``) = sum over k of
    ``weight[m, k] * columns[offset + k * stride + j]`` for ``j < width`` (added to what is
    there when the caller sets beta, ``scalars[1]``, to 1): one tile of columns of a
    row-major (K, S) matrix, through Fortran sgemm, which takes every argument by address and
    reads the matrix in place. Column-major, that is result.T (width x M) = columns.T
    (width x K) @ weight.T (K x M)."""
    m_out, k = weight.shape
    ints[0] = width
    ints[1] = m_out
    ints[2] = k
    ints[3] = stride
    ints[4] = k
    ints[5] = result_stride
    sgemm(letters.ctypes, letters.ctypes, ints[0:].ctypes, ints[1:].ctypes,
          ints[2:].ctypes, scalars[0:].ctypes, columns[offset:].ctypes, ints[3:].ctypes,
          weight.ctypes, ints[4:].ctypes, scalars[1:].ctypes,
          result[result_offset:].ctypes, ints[5:].ctypes)


@pjit
def conv_forward_tiled(x, weight, bias, use_bias, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow,
                       pointwise, sgemm, cols, tiles, store, out, post, has_bn, keep,
                       has_scale, has_shift, has_relu, slope, kept, final, final_c0):
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
        ints, scalars, letters = gemm_letters()
        for n in range(t * n_img // threads, (t + 1) * n_img // threads):
            if pointwise:
                columns = x[n].reshape(k * spatial)
            else:
                im2col_one(x, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col)
                columns = col.reshape(k * spatial)
            flat_out = out[n].reshape(m_out * spatial)
            flat_final = final[n, final_c0:final_c0 + m_out].reshape(m_out * spatial)
            flat_kept = kept[n].reshape(kept.shape[1] * kept.shape[2] * kept.shape[3])
            for start in range(0, spatial, tile):
                width = min(tile, spatial - start)
                if store:
                    result, result_offset, result_stride = flat_out, start, spatial
                else:
                    result, result_offset, result_stride = buffer, 0, width
                _tile_product(sgemm, ints, scalars, letters, weight, columns, start,
                              spatial, width, result, result_offset, result_stride)
                if not (use_bias or follow):
                    continue
                for m in range(m_out):
                    at = result_offset + m * result_stride
                    span = result[at:at + width]
                    at = m * spatial + start
                    # (``result`` is the output itself when storing: nothing to copy)
                    finish_run(span, m, bias, use_bias, False, span, follow,
                               flat_final[at:at + width], post, has_bn, keep, has_scale,
                               has_shift, has_relu, slope,
                               flat_kept[at:at + width] if keep else flat_kept)


@jit
def _stack_image(x, n, j, pointwise, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col, stack,
                 width):
    """Image ``n``'s column matrix (the image itself when ``pointwise``, else its im2col in
    ``col``) into columns ``j * oh*ow`` onwards of the (K, ``width``) matrix ``stack``."""
    spatial = oh * ow
    k = stack.shape[0] // width if width else 0
    if pointwise:
        columns = x[n].reshape(k, spatial)
    else:
        im2col_one(x, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col)
        columns = col
    for r in range(k):
        at = r * width + j * spatial
        stack[at:at + spatial] = columns[r]


@pjit
def conv_forward_batched(x, weight, bias, use_bias, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow,
                         pointwise, sgemm, cols, stacks, tiles, store, out, post, has_bn, keep,
                         has_scale, has_shift, has_relu, slope, kept, final, final_c0):
    """:func:`conv_forward_tiled` for small outputs (7x7, or the 1x1 of a classifier made
    of convolutions): one image's product would be too narrow for BLAS to run well, so the
    column matrices of several of the thread's images are laid side by side in its
    ``stacks`` row and multiplied at once, into its ``tiles`` row; each image's part then
    gets the bias, goes to ``out`` (when ``store``) and through :func:`epilogue_row` into
    ``final``."""
    n_img = x.shape[0]
    threads = cols.shape[0]
    m_out, k = weight.shape
    spatial = oh * ow
    per = stacks.shape[1] // (k * spatial)
    follow = has_bn or has_scale or has_relu
    for t in prange(threads):
        col = cols[t]
        stack = stacks[t]
        buffer = tiles[t]
        ints, scalars, letters = gemm_letters()
        last = (t + 1) * n_img // threads
        for first in range(t * n_img // threads, last, per):
            count = min(per, last - first)
            width = count * spatial
            for j in range(count):
                _stack_image(x, first + j, j, pointwise, kh, kw, ph, pw, sh, sw, dh, dw, oh,
                             ow, col, stack[:k * width], width)
            _tile_product(sgemm, ints, scalars, letters, weight, stack, 0, width, width,
                          buffer, 0, width)
            for j in range(count):
                n = first + j
                flat_out = out[n].reshape(m_out * spatial)
                flat_final = final[n, final_c0:final_c0 + m_out].reshape(m_out * spatial)
                flat_kept = kept[n].reshape(kept.shape[1] * kept.shape[2] * kept.shape[3])
                for m in range(m_out):
                    at = m * width + j * spatial
                    span = buffer[at:at + spatial]
                    at = m * spatial
                    finish_run(span, m, bias, use_bias, store, flat_out[at:at + spatial],
                               follow, flat_final[at:at + spatial], post, has_bn, keep,
                               has_scale, has_shift, has_relu, slope,
                               flat_kept[at:at + spatial] if keep else flat_kept)


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
                         parts, band, store, out, post, has_bn, keep, has_scale, has_shift,
                         has_relu, slope, kept, final, final_c0):
    """A stride-1 convolution (one group) without im2col: the output over the padded width,
    (M, oh * Wp), is the sum over kernel taps of ``taps[tap]`` (M, C) times the padded image
    shifted by the tap's offset, a (C, oh * Wp) matrix that BLAS reads in place with row
    stride ``plane`` (``sgemm``: :func:`pyforge.layers.blas.fortran_sgemm`, called with
    strides). The columns past each row's ``ow`` are computed and dropped (2 of 58 for
    ResNet's 56x56 layers), while im2col would have written and read a column matrix 9 times
    the image.

    The image is done ``band`` output rows at a time, so that the result the taps add into
    stays in cache (VGG's 224x224 layers: 13 MB for the whole image).

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
        flat_part = parts[t].reshape(m_out * columns)
        ints, scalars, letters = gemm_letters()
        for n in range(t * n_img // threads, (t + 1) * n_img // threads):
            _pad_image(x, n, ph, pw, plane, pad)
            flat_kept = kept[n].reshape(kept.shape[1] * kept.shape[2] * kept.shape[3])
            dsts_final = final[n, final_c0:final_c0 + m_out].reshape(m_out, spatial)
            for y0 in range(0, oh, band):
                rows = min(band, oh - y0)
                width = rows * wp
                for tap in range(kh * kw):
                    # part (M, width) (+)= taps[tap] (M, C) @ the padded image from row y0,
                    # shifted by the tap's offset, read as a (C, width) matrix with row
                    # stride plane
                    offset = y0 * wp + (tap // kw) * dh * wp + (tap % kw) * dw
                    scalars[1] = 0.0 if tap == 0 else 1.0
                    _tile_product(sgemm, ints, scalars, letters, taps[tap], pad, offset,
                                  plane, width, flat_part, 0, width)
                for m in range(m_out):
                    dst = out[n, 0, m]
                    dst_final = dsts_final[m]
                    for y in range(y0, y0 + rows):
                        at = m * width + (y - y0) * wp
                        row = slice(y * ow, (y + 1) * ow)
                        at_kept = m * spatial + y * ow
                        finish_run(flat_part[at:at + ow], m, bias, use_bias, store, dst[row],
                                   follow, dst_final[row], post, has_bn, keep, has_scale,
                                   has_shift, has_relu, slope,
                                   flat_kept[at_kept:at_kept + ow] if keep else flat_kept)


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
def conv_backward(x, weight, dy, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, pointwise, sgemm,
                  need_weight, need_bias, need_data, cols, dcols, dw_parts, dw_tmp, db_parts,
                  stacks, dy_stacks, dx):
    """Per-thread weight/bias gradient sums into ``dw_parts`` (T, G, K/G, M/G: the weight
    gradient *transposed*) and ``db_parts`` (T, G, M/G); the data gradient into ``dx``
    (overwritten). ``dy`` is (N, G, M/G, oh*ow). With ``pointwise`` the image is its own
    column matrix and the data gradient's columns are the data gradient.

    The transposed weight gradient ``col @ dy.T`` is the same product as ``dy @ col.T`` with
    the long oh*ow dimension as the inner one of both operands' rows, which OpenBLAS's
    AVX-512 sgemm runs about twice as fast (186 against 94 GFLOP/s on CIFAR-10 quick's conv2;
    the AVX2 kernels gain about 8%).

    Small outputs of one group (7x7: 49 columns) take the weight and data gradients for
    several images at once, as :func:`conv_forward_batched` does the forward: their columns
    side by side in the thread's ``stacks`` row and their output gradients in its
    ``dy_stacks`` row (as many images as fit; one image each when they are empty). The weight
    product's inner dimension is then long, its K x M partial sum is read and written once
    per group, not per image, and the data product is as wide as the group."""
    n_img = x.shape[0]
    threads = cols.shape[0]
    groups, m_g, k_g = weight.shape
    spatial = dy.shape[3]
    per = stacks.shape[1] // (k_g * spatial)
    for t in prange(threads):
        col = cols[t]
        dcol = dcols[t]
        tmp = dw_tmp[t]
        dw_parts[t] = 0.0
        db_parts[t] = 0.0
        ints, scalars, letters = gemm_letters()
        last = (t + 1) * n_img // threads
        if (need_weight or need_data) and per > 1:
            stack = stacks[t]
            dy_stack = dy_stacks[t]
            for first in range(t * n_img // threads, last, per):
                count = min(per, last - first)
                width = count * spatial
                for j in range(count):
                    for m in range(m_g):
                        at = m * width + j * spatial
                        dy_stack[at:at + spatial] = dy[first + j, 0, m]
                gradients = dy_stack[:m_g * width].reshape(m_g, width)
                columns_all = stack[:k_g * width].reshape(k_g, width)
                if need_weight:
                    for j in range(count):
                        _stack_image(x, first + j, j, pointwise, kh, kw, ph, pw, sh, sw, dh,
                                     dw, oh, ow, col, stack[:k_g * width], width)
                    gemm_into(sgemm, ints, scalars, letters, columns_all, False, gradients,
                              True, tmp[0])
                    dw_parts[t, 0] += tmp[0]
                if need_data:
                    # the group's column gradients, then each image's share of them
                    gemm_into(sgemm, ints, scalars, letters, weight[0], True, gradients, False,
                              columns_all)
                    for j in range(count):
                        n = first + j
                        target = dx[n].reshape(k_g, spatial) if pointwise else dcol
                        for r in range(k_g):
                            at = r * width + j * spatial
                            target[r, :] = stack[at:at + spatial]
                        if not pointwise:
                            col2im_one(dcol, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, dx)
        for n in range(t * n_img // threads, last):
            if need_weight and per <= 1:
                if pointwise:
                    col_g = x[n].reshape(groups, k_g, spatial)
                else:
                    im2col_one(x, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col)
                    col_g = col.reshape(groups, k_g, spatial)
                for g in range(groups):
                    gemm_into(sgemm, ints, scalars, letters, col_g[g], False, dy[n, g], True,
                              tmp[g])
                    dw_parts[t, g] += tmp[g]
            if need_bias:
                for g in range(groups):
                    for m in range(m_g):
                        total = np.float32(0.0)
                        for s in range(spatial):
                            total += dy[n, g, m, s]
                        db_parts[t, g, m] += total
            if need_data and per <= 1:
                if pointwise:
                    dx_g = dx[n].reshape(groups, k_g, spatial)
                    for g in range(groups):
                        gemm_into(sgemm, ints, scalars, letters, weight[g], True, dy[n, g],
                                  False, dx_g[g])
                else:
                    dcol_g = dcol.reshape(groups, k_g, spatial)
                    for g in range(groups):
                        gemm_into(sgemm, ints, scalars, letters, weight[g], True, dy[n, g],
                                  False, dcol_g[g])
                    col2im_one(dcol, n, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, dx)
