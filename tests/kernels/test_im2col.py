"""pyforge.kernels.im2col against the loop-based reference of tests/reference/naive.py (Caffe's
im2col.cpp order): the per-image im2col_one/col2im_one the convolution threads call and the
whole-batch im2col_batch/col2im_batch, exactly for the layout moves and within float32 rounding
for col2im's sums; the (N, C, S) <-> (C, N*S) moves exactly."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels.im2col import (
    cn_to_nc_bias,
    col2im_batch,
    col2im_one,
    im2col_batch,
    im2col_one,
    nc_to_cn,
)
from tests.reference import naive
from tests.reference.float32 import assert_close

# (N, C, H, W, kh, kw, ph, pw, sh, sw, dh, dw)
GEOMETRIES = [
    pytest.param((1, 1, 4, 4, 3, 3, 0, 0, 1, 1, 1, 1), id="1x1x4x4_k3"),
    pytest.param((2, 3, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1), id="pad1"),
    pytest.param((2, 2, 7, 6, 3, 3, 1, 1, 2, 2, 1, 1), id="pad1_stride2"),
    pytest.param((1, 2, 7, 7, 3, 3, 0, 0, 1, 1, 2, 2), id="dilation2"),
    pytest.param((2, 2, 8, 7, 3, 2, 2, 1, 2, 1, 2, 1), id="mixed_hw"),
    pytest.param((2, 3, 6, 4, 2, 3, 0, 1, 1, 2, 1, 1), id="non_square"),
    pytest.param((1, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1), id="k1"),
    pytest.param((1, 2, 5, 5, 5, 5, 0, 0, 1, 1, 1, 1), id="kernel_is_image"),
    pytest.param((2, 1, 5, 5, 2, 2, 0, 0, 3, 3, 1, 1), id="stride_gt_kernel"),
    pytest.param((1, 1, 3, 3, 3, 3, 2, 2, 1, 1, 1, 1), id="pad_ge_kernel_minus_1"),
    pytest.param((3, 2, 9, 5, 3, 3, 2, 1, 3, 2, 2, 1), id="everything"),
]


def _geometry(g):
    n, c, h, w, kh, kw, ph, pw, sh, sw, dh, dw = g
    oh = naive.conv_out_size(h, kh, ph, sh, dh)
    ow = naive.conv_out_size(w, kw, pw, sw, dw)
    return (n, c, h, w), (kh, kw, ph, pw, sh, sw, dh, dw, oh, ow)


@pytest.mark.parametrize("g", GEOMETRIES)
def test_im2col_matches_reference(g):
    shape, geom = _geometry(g)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    kh, kw, ph, pw, sh, sw, dh, dw, oh, ow = geom
    col = np.full((shape[1] * kh * kw, shape[0] * oh * ow), np.nan, dtype=np.float32)
    im2col_batch(x, *geom, col)
    expected = naive.im2col_batch(x, kh, kw, ph, pw, sh, sw, dh, dw)
    np.testing.assert_array_equal(col, expected)


def test_im2col_row_order_is_channel_kernel_row_kernel_col():
    """Row r = (c*kh + ki)*kw + kj, so a Caffe weight (M, C, kh, kw) flattens onto it."""
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(1, 2, 3, 3)
    col = np.empty((2 * 2 * 2, 4), dtype=np.float32)
    im2col_batch(x, 2, 2, 0, 0, 1, 1, 1, 1, 2, 2, col)
    # channel 0, ki 0, kj 1: the pixels right of each window's top-left corner
    np.testing.assert_array_equal(col[1], [1, 2, 4, 5])
    # channel 1, ki 1, kj 0
    np.testing.assert_array_equal(col[(1 * 2 + 1) * 2 + 0], [12, 13, 15, 16])


@pytest.mark.parametrize("g", GEOMETRIES)
def test_col2im_matches_reference_and_overwrites(g):
    shape, geom = _geometry(g)
    kh, kw, ph, pw, sh, sw, dh, dw, oh, ow = geom
    rng = np.random.default_rng(1)
    col = rng.standard_normal((shape[1] * kh * kw, shape[0] * oh * ow)).astype(np.float32)
    dx = np.full(shape, 1e6, dtype=np.float32)  # garbage: col2im must overwrite
    col2im_batch(col, *geom, dx)
    expected = naive.col2im_batch(col.astype(np.float64), shape, kh, kw, ph, pw, sh, sw, dh, dw)
    magnitude = naive.col2im_batch(np.abs(col.astype(np.float64)), shape, kh, kw, ph, pw, sh, sw,
                                   dh, dw)
    # Each pixel sums at most kh*kw column entries in float32.
    assert_close(dx, expected, magnitude, roundings=kh * kw)


@pytest.mark.parametrize("g", GEOMETRIES[:6])
def test_col2im_is_the_adjoint_of_im2col(g):
    shape, geom = _geometry(g)
    kh, kw, ph, pw, sh, sw, dh, dw, oh, ow = geom
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    c = rng.standard_normal((shape[1] * kh * kw, shape[0] * oh * ow)).astype(np.float32)
    col = np.empty_like(c)
    im2col_batch(x, *geom, col)
    back = np.empty_like(x)
    col2im_batch(c, *geom, back)
    lhs = float(np.dot(col.ravel().astype(np.float64), c.ravel()))
    rhs = float(np.dot(x.ravel().astype(np.float64), back.ravel()))
    assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("use_bias", [True, False])
def test_cn_to_nc_bias_and_back(use_bias):
    rng = np.random.default_rng(3)
    n, c, s = 3, 4, 5
    src = rng.standard_normal((c, n * s)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    dst = np.full((n, c, s), np.nan, dtype=np.float32)
    cn_to_nc_bias(src, bias, use_bias, dst)
    # A move plus at most one float32 addition, which NumPy rounds the same way: exact.
    moved = src.reshape(c, n, s).transpose(1, 0, 2)
    np.testing.assert_array_equal(dst, moved + bias[None, :, None] if use_bias else moved)
    again = np.full_like(src, np.nan)
    nc_to_cn(dst, again)
    np.testing.assert_array_equal(again, src + bias[:, None] if use_bias else src)


@pytest.mark.parametrize("g", GEOMETRIES)
def test_im2col_one_matches_reference_for_each_image(g):
    """The per-image variant the convolution threads call: image ``n`` only, exactly."""
    shape, geom = _geometry(g)
    kh, kw, ph, pw, sh, sw, dh, dw, oh, ow = geom
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    for n in range(shape[0]):
        col = np.full((shape[1] * kh * kw, oh * ow), np.nan, dtype=np.float32)
        im2col_one(x, n, *geom, col)
        np.testing.assert_array_equal(col, naive.im2col(x[n], kh, kw, ph, pw, sh, sw, dh, dw))


@pytest.mark.parametrize("g", GEOMETRIES)
def test_col2im_one_matches_reference_and_leaves_other_images(g):
    shape, geom = _geometry(g)
    kh, kw, ph, pw, sh, sw, dh, dw, oh, ow = geom
    rng = np.random.default_rng(8)
    n_last = shape[0] - 1
    col = rng.standard_normal((shape[1] * kh * kw, oh * ow)).astype(np.float32)
    dx = np.full(shape, 1e6, dtype=np.float32)  # image n_last must be overwritten, no other
    col2im_one(col, n_last, *geom, dx)
    expected = naive.col2im(col.astype(np.float64), shape[1:], kh, kw, ph, pw, sh, sw, dh, dw)
    magnitude = naive.col2im(np.abs(col.astype(np.float64)), shape[1:], kh, kw, ph, pw, sh, sw,
                             dh, dw)
    # Each pixel sums at most kh*kw column entries in float32.
    assert_close(dx[n_last], expected, magnitude, roundings=kh * kw)
    assert (dx[:n_last] == 1e6).all()


@pytest.mark.parametrize(
    ("shape", "num_output", "kernel", "pad", "stride", "dilation", "group"),
    [
        pytest.param((2, 4, 6, 5), 6, (3, 3), (1, 1), (1, 1), (1, 1), 2, id="group2"),
        pytest.param((1, 6, 5, 5), 3, (3, 2), (0, 1), (2, 1), (1, 2), 3, id="group3_mixed"),
        pytest.param((2, 3, 7, 7), 3, (3, 3), (1, 1), (2, 2), (1, 1), 3, id="depthwise"),
        pytest.param((2, 3, 6, 6), 4, (3, 3), (2, 2), (1, 1), (2, 2), 1, id="dilated"),
    ],
)
def test_grouped_gemm_over_im2col_is_a_convolution(shape, num_output, kernel, pad, stride,
                                                  dilation, group):
    """The layer's algorithm (im2col, one GEMM per group of rows) equals a direct convolution."""
    rng = np.random.default_rng(4)
    n, c, h, w = shape
    x = rng.standard_normal(shape).astype(np.float32)
    weight = rng.standard_normal((num_output, c // group, *kernel)).astype(np.float32)
    bias = rng.standard_normal(num_output).astype(np.float32)
    kh, kw = kernel
    oh = naive.conv_out_size(h, kh, pad[0], stride[0], dilation[0])
    ow = naive.conv_out_size(w, kw, pad[1], stride[1], dilation[1])
    col = np.empty((c * kh * kw, n * oh * ow), dtype=np.float32)
    im2col_batch(x, kh, kw, pad[0], pad[1], stride[0], stride[1], dilation[0], dilation[1],
                 oh, ow, col)
    rows = c // group * kh * kw
    outs = num_output // group
    wg = weight.reshape(group, outs, rows)
    out_t = np.concatenate([wg[g] @ col[g * rows : (g + 1) * rows] for g in range(group)])
    y = np.empty((n, num_output, oh * ow), dtype=np.float32)
    cn_to_nc_bias(out_t, bias, True, y)
    expected = naive.conv_forward(x, weight, bias, pad, stride, dilation, group)
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)
