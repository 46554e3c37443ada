"""Depthwise convolutions (one input channel per group, MobileNet's ``group`` = channels).

They have nothing for a GEMM to gain: a 1 x kh*kw by kh*kw x oh*ow product per channel. They
run as direct stencils over each (image, output channel) plane, in parallel over the planes;
the weight and bias gradients are kept per plane and summed over the images in order, so the
result does not depend on the thread count. Every output adds its taps in Caffe's im2col
order, the taps over the padding included (as ``w * 0``).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange
from .conv import epilogue_row
from .im2col import valid_range


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
def _taps3x3(wm, a0, a1, a2, b0, b1, b2, c0, c1, c2, dst):
    """``dst[i]`` = the nine taps ``wm[r, c] * (a, b, c)[r][c][i]`` added in (row, column)
    order: one vectorised loop over runs the stencils have lined up."""
    w00, w01, w02 = wm[0, 0], wm[0, 1], wm[0, 2]
    w10, w11, w12 = wm[1, 0], wm[1, 1], wm[1, 2]
    w20, w21, w22 = wm[2, 0], wm[2, 1], wm[2, 2]
    for i in range(dst.shape[0]):
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
def _side_columns(src, height, width, wm, out):
    """The first and last column of rows 1 .. height-2 of :func:`_stencil3x3_same` (at
    least 2 columns), their padding taps spelled out as ``w * 0``."""
    zero = np.float32(0.0)
    w00, w01, w02 = wm[0, 0], wm[0, 1], wm[0, 2]
    w10, w11, w12 = wm[1, 0], wm[1, 1], wm[1, 2]
    w20, w21, w22 = wm[2, 0], wm[2, 1], wm[2, 2]
    last = width - 1
    for y in range(1, height - 1):
        up, here, down = (y - 1) * width, y * width, (y + 1) * width
        total = np.float32(0.0)
        total += w00 * zero
        total += w01 * src[up]
        total += w02 * src[up + 1]
        total += w10 * zero
        total += w11 * src[here]
        total += w12 * src[here + 1]
        total += w20 * zero
        total += w21 * src[down]
        total += w22 * src[down + 1]
        out[here] = total
        total = np.float32(0.0)
        total += w00 * src[up + last - 1]
        total += w01 * src[up + last]
        total += w02 * zero
        total += w10 * src[here + last - 1]
        total += w11 * src[here + last]
        total += w12 * zero
        total += w20 * src[down + last - 1]
        total += w21 * src[down + last]
        total += w22 * zero
        out[here + last] = total


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
        _taps3x3(wm, a0, a1, a2, b0, b1, b2, c0, c1, c2, dst)
        if width >= 2:
            _side_columns(src, height, width, wm, out)
        else:
            for y in range(1, height - 1):
                out[y * width] = _tap_sum_at(src, height, width, wm, y, 0)
    if width >= 3 and height >= 2:
        # the first row (no row above) and the last (no row below), columns 1 .. width-2,
        # their padding taps written out: _taps3x3 with a row of zeros made 14x14 and 7x7
        # planes 1.2-1.3x slower
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
        # input rows 2*oy - 1, 2*oy, 2*oy + 1 (row 2*oy is always inside the plane)
        ea, oa = zeros, zeros
        if oy > 0:
            ea = evens[(2 * oy - 1) * span : 2 * oy * span]
            oa = odds[(2 * oy - 1) * span : 2 * oy * span]
        eb = evens[2 * oy * span : (2 * oy + 1) * span]
        ob = odds[2 * oy * span : (2 * oy + 1) * span]
        ec, oc = zeros, zeros
        if 2 * oy + 1 < height:
            ec = evens[(2 * oy + 1) * span : (2 * oy + 2) * span]
            oc = odds[(2 * oy + 1) * span : (2 * oy + 2) * span]
        a0, a1, a2 = oa[0:ow], ea[0:ow], oa[1 : 1 + ow]
        b0, b1, b2 = ob[0:ow], eb[0:ow], ob[1 : 1 + ow]
        c0, c1, c2 = oc[0:ow], ec[0:ow], oc[1 : 1 + ow]
        dst = out[oy * ow : (oy + 1) * ow]
        _taps3x3(wm, a0, a1, a2, b0, b1, b2, c0, c1, c2, dst)


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
        a0, a1, a2 = flat[:length], flat[o1 : o1 + length], flat[o2 : o2 + length]
        b0, b1, b2 = (flat[r1 : r1 + length], flat[r1 + o1 : r1 + o1 + length],
                      flat[r1 + o2 : r1 + o2 + length])
        c0, c1, c2 = (flat[r2 : r2 + length], flat[r2 + o1 : r2 + o1 + length],
                      flat[r2 + o2 : r2 + o2 + length])
        _taps3x3(wm, a0, a1, a2, b0, b1, b2, c0, c1, c2, acc)
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
                      post, has_bn, keep, has_scale, has_shift, has_relu, slope, kept, final,
                      final_c0):
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
                epilogue_row(target, final[n, final_c0 + m].reshape(spatial), m, post, has_bn, keep,
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
