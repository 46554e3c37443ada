"""pyforge.kernels.pooling against the loop-based reference of tests/reference/naive.py (Caffe's
pooling_layer.cpp rules): MAX and AVE, forward and backward, over ceil and floor rounding
edges, padding, overlapping and gapped windows, ties (first maximum wins) and infinities."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels.pooling import (
    ave_pool_backward,
    ave_pool_forward,
    max_pool_backward,
    max_pool_forward,
    max_pool_forward_maskless,
)
from pyforge.layers.pooling import row_buffer_shape
from tests.reference import naive

# (N, C, H, W, kh, kw, sh, sw, ph, pw)
GEOMETRIES = [
    pytest.param((2, 3, 7, 7, 3, 3, 2, 2, 1, 1), id="H7_k3_s2_p1"),
    pytest.param((1, 2, 7, 7, 3, 3, 2, 2, 0, 0), id="H7_k3_s2"),
    pytest.param((2, 2, 6, 6, 3, 3, 2, 2, 0, 0), id="H6_k3_s2_ceil_partial_window"),
    pytest.param((1, 2, 5, 5, 2, 2, 2, 2, 1, 1), id="H5_k2_s2_p1_last_window_dropped"),
    pytest.param((1, 2, 4, 4, 2, 2, 2, 2, 1, 1), id="H4_k2_s2_p1"),
    pytest.param((2, 2, 24, 24, 2, 2, 2, 2, 0, 0), id="lenet"),
    pytest.param((1, 1, 13, 13, 3, 3, 2, 2, 0, 0), id="alexnet_pool5"),
    pytest.param((1, 2, 8, 8, 3, 3, 1, 1, 1, 1), id="k3_s1_p1_same"),
    pytest.param((1, 2, 9, 9, 5, 5, 3, 3, 2, 2), id="k5_s3_p2"),
    pytest.param((1, 2, 6, 5, 3, 2, 2, 1, 1, 0), id="non_square"),
    pytest.param((2, 1, 7, 9, 2, 3, 3, 2, 1, 1), id="stride_gt_kernel_rows"),
    pytest.param((1, 2, 5, 4, 5, 4, 1, 1, 0, 0), id="global"),
    pytest.param((1, 2, 3, 3, 3, 3, 1, 1, 2, 2), id="pad_2_of_k3"),
    pytest.param((1, 1, 1, 1, 1, 1, 1, 1, 0, 0), id="single_pixel"),
]


def _setup(g, seed=0, data="gaussian", round_mode="CEIL"):
    n, c, h, w, kh, kw, sh, sw, ph, pw = g
    rng = np.random.default_rng(seed)
    if data == "gaussian":
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    else:
        x = rng.integers(-2, 3, size=(n, c, h, w)).astype(np.float32)  # many ties
    oh = naive.pooled_size(h, kh, sh, ph, round_mode)
    ow = naive.pooled_size(w, kw, sw, pw, round_mode)
    return x, (kh, kw, sh, sw, ph, pw), (n, c, oh, ow)


@pytest.mark.parametrize("data", ["gaussian", "ties"])
@pytest.mark.parametrize("g", GEOMETRIES)
def test_max_pool_forward(g, data):
    x, geom, out_shape = _setup(g, data=data)
    top = np.full(out_shape, np.nan, dtype=np.float32)
    mask = np.full(out_shape, -7, dtype=np.int64)
    max_pool_forward(x, *geom, top, mask)
    ref_top, ref_mask = naive.max_pool(x, *geom)
    np.testing.assert_array_equal(top, ref_top)
    np.testing.assert_array_equal(mask, ref_mask)


@pytest.mark.parametrize("g", GEOMETRIES)
def test_max_pool_backward(g):
    x, geom, out_shape = _setup(g, data="ties")
    top = np.empty(out_shape, dtype=np.float32)
    mask = np.empty(out_shape, dtype=np.int64)
    max_pool_forward(x, *geom, top, mask)
    dy = np.random.default_rng(5).standard_normal(out_shape).astype(np.float32)
    dx = np.full(x.shape, 1e6, dtype=np.float32)  # must be overwritten
    max_pool_backward(dy, mask, dx)
    np.testing.assert_allclose(dx, naive.max_pool_backward(dy, mask, x.shape), rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("g", GEOMETRIES)
def test_ave_pool_forward(g):
    x, geom, out_shape = _setup(g)
    top = np.full(out_shape, np.nan, dtype=np.float32)
    ave_pool_forward(x, *geom, top)
    np.testing.assert_allclose(top, naive.ave_pool(x, *geom), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("g", GEOMETRIES)
def test_ave_pool_backward(g):
    x, geom, out_shape = _setup(g)
    dy = np.random.default_rng(6).standard_normal(out_shape).astype(np.float32)
    dx = np.full(x.shape, 1e6, dtype=np.float32)
    ave_pool_backward(dy, *geom, dx)
    expected = naive.ave_pool_backward(dy, x.shape, *geom)
    np.testing.assert_allclose(dx, expected, rtol=1e-5, atol=1e-6)


def test_max_pool_ties_keep_the_first_index():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    top = np.empty((1, 1, 2, 2), dtype=np.float32)
    mask = np.empty((1, 1, 2, 2), dtype=np.int64)
    max_pool_forward(x, 2, 2, 2, 2, 0, 0, top, mask)
    np.testing.assert_array_equal(mask[0, 0], [[0, 2], [8, 10]])
    dx = np.empty_like(x)
    max_pool_backward(np.ones_like(top), mask, dx)
    assert dx.sum() == 4 and dx[0, 0, 0, 0] == 1 and dx[0, 0, 0, 1] == 0


def test_max_pool_padding_is_not_a_zero():
    """Windows are clipped to the image: all-negative inputs stay negative at the border."""
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    top = np.empty((1, 1, 2, 2), dtype=np.float32)
    mask = np.empty((1, 1, 2, 2), dtype=np.int64)
    max_pool_forward(x, 2, 2, 2, 2, 1, 1, top, mask)
    np.testing.assert_array_equal(top[0, 0], [[-1, -2], [-4, -5]])


def test_ave_pool_divides_by_the_window_clipped_to_the_padded_image():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    # H=4, k=3, s=2, p=1: pooled = ceil(3/2)+1 = 3. Window 0 covers rows -1..1 (3 rows, 2 in
    # the image); window 2 covers rows 3..5 clipped to H+p=5, i.e. rows 3..4 (2 rows, 1 in
    # the image).
    top = np.empty((1, 1, 3, 3), dtype=np.float32)
    ave_pool_forward(x, 3, 3, 2, 2, 1, 1, top)
    expected = np.array([[4 / 9, 6 / 9, 2 / 6], [6 / 9, 9 / 9, 3 / 6], [2 / 6, 3 / 6, 1 / 4]])
    np.testing.assert_allclose(top[0, 0], expected, rtol=1e-6)


# FLOOR rounding (PoolingParameter.round_mode): fewer windows, none partly outside the padding.
FLOOR_GEOMETRIES = [
    pytest.param((1, 2, 6, 6, 3, 3, 2, 2, 0, 0), id="H6_k3_s2_floor"),
    pytest.param((2, 1, 7, 8, 3, 2, 2, 3, 1, 0), id="mixed_floor"),
    pytest.param((1, 2, 5, 5, 2, 2, 2, 2, 1, 1), id="H5_k2_s2_p1_floor"),
]


@pytest.mark.parametrize("g", FLOOR_GEOMETRIES)
def test_floor_rounding_forward_and_backward(g):
    x, geom, out_shape = _setup(g, seed=7, data="ties", round_mode="FLOOR")
    out_hw = out_shape[2:]
    top = np.full(out_shape, np.nan, dtype=np.float32)
    mask = np.full(out_shape, -7, dtype=np.int64)
    max_pool_forward(x, *geom, top, mask)
    ref_top, ref_mask = naive.max_pool(x, *geom, out_hw=out_hw)
    np.testing.assert_array_equal(top, ref_top)
    np.testing.assert_array_equal(mask, ref_mask)
    dy = np.random.default_rng(8).standard_normal(out_shape).astype(np.float32)
    dx = np.full(x.shape, 1e6, dtype=np.float32)
    max_pool_backward(dy, mask, dx)
    # Each input adds the gradients of the windows whose maximum it is: exact for one window,
    # a few float32 roundings where windows overlap.
    np.testing.assert_allclose(dx, naive.max_pool_backward(dy, mask, x.shape), rtol=1e-6,
                               atol=1e-6)
    ave = np.full(out_shape, np.nan, dtype=np.float32)
    ave_pool_forward(x, *geom, ave)
    np.testing.assert_allclose(ave, naive.ave_pool(x, *geom, out_hw=out_hw), rtol=1e-5,
                               atol=1e-6)
    ave_pool_backward(dy, *geom, dx)
    np.testing.assert_allclose(dx, naive.ave_pool_backward(dy, x.shape, *geom), rtol=1e-5,
                               atol=1e-6)


def test_max_pool_overlapping_windows_add_their_gradients():
    """One input that is the maximum of every window it lies in (stride 1, kernel 3) receives
    the sum of all their gradients."""
    x = np.zeros((1, 1, 5, 5), dtype=np.float32)
    x[0, 0, 2, 2] = 9.0
    top = np.empty((1, 1, 3, 3), dtype=np.float32)
    mask = np.empty((1, 1, 3, 3), dtype=np.int64)
    max_pool_forward(x, 3, 3, 1, 1, 0, 0, top, mask)
    assert (mask == 12).all()
    dy = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    dx = np.full_like(x, np.nan)
    max_pool_backward(dy, mask, dx)
    assert dx[0, 0, 2, 2] == 45.0 and np.count_nonzero(dx) == 1


def test_max_pool_infinities_and_nan_follow_caffes_comparisons():
    """+inf wins; -inf and NaN never beat the -FLT_MAX start value (Caffe's strict ``>``), so a
    window of only those keeps -FLT_MAX with no argmax (-1), and Backward routes nothing."""
    x = np.array([[[[np.inf, 1.0, -np.inf, -np.inf],
                    [0.0, 2.0, -np.inf, np.nan]]]], dtype=np.float32)
    top = np.empty((1, 1, 1, 2), dtype=np.float32)
    mask = np.empty((1, 1, 1, 2), dtype=np.int64)
    max_pool_forward(x, 2, 2, 2, 2, 0, 0, top, mask)
    np.testing.assert_array_equal(top[0, 0, 0], [np.inf, -naive.FLT_MAX])
    np.testing.assert_array_equal(mask[0, 0, 0], [0, -1])
    dx = np.full_like(x, np.nan)
    max_pool_backward(np.full_like(top, 5.0), mask, dx)
    np.testing.assert_array_equal(dx[0, 0], [[5, 0, 0, 0], [0, 0, 0, 0]])


def test_ave_pool_of_infinities():
    x = np.array([[[[np.inf, 1.0, np.inf, -np.inf]]]], dtype=np.float32)
    top = np.empty((1, 1, 1, 2), dtype=np.float32)
    ave_pool_forward(x, 1, 2, 1, 2, 0, 0, top)
    np.testing.assert_array_equal(top[0, 0, 0], [np.inf, np.nan])


def _maskless(x, geom, out_shape):
    kh, kw, sh, sw, ph, pw = geom
    top = np.full(out_shape, np.nan, dtype=np.float32)
    rows = np.empty(row_buffer_shape(x.shape, out_shape, kw, sw, pw), dtype=np.float32)
    rows[...] = np.nan  # the kernel must initialise its own buffers
    max_pool_forward_maskless(x, *geom, top, rows)
    return top


@pytest.mark.parametrize("round_mode", ["CEIL", "FLOOR"])
@pytest.mark.parametrize("data", ["gaussian", "ties"])
@pytest.mark.parametrize("g", GEOMETRIES)
def test_maskless_max_pool_equals_caffes_maxima(g, data, round_mode):
    """The separable forward-only kernel gives the values of Caffe's window loop."""
    x, geom, out_shape = _setup(g, data=data, round_mode=round_mode)
    ref_top, _ = naive.max_pool(x, *geom, out_hw=out_shape[2:])
    np.testing.assert_array_equal(_maskless(x, geom, out_shape), ref_top)


def test_maskless_max_pool_many_planes_and_special_values():
    """More planes than chunks (uneven split), and NaN / +-inf / -FLT_MAX windows: the masked
    kernel (its written-out 2x2 and 3x3 windows included) equals Caffe's loop value for value
    and index for index, and the maskless one equals it (NaN never wins: Caffe's strict ``>``)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 37, 11, 10)).astype(np.float32)
    picks = rng.random(x.shape)
    x[picks < 0.05] = np.nan
    x[(picks >= 0.05) & (picks < 0.08)] = np.inf
    x[(picks >= 0.08) & (picks < 0.11)] = -np.inf
    x[0, 0] = np.nan  # a plane of NaN only: every output keeps -FLT_MAX
    for geom in [(3, 3, 2, 2, 1, 1), (3, 3, 1, 1, 0, 0), (2, 2, 2, 2, 0, 0), (2, 3, 1, 2, 0, 1),
                 (3, 2, 3, 1, 1, 0)]:
        kh, kw, sh, sw, ph, pw = geom
        oh = naive.pooled_size(11, kh, sh, ph, "CEIL")
        ow = naive.pooled_size(10, kw, sw, pw, "CEIL")
        shape = (3, 37, oh, ow)
        masked = np.empty(shape, dtype=np.float32)
        mask = np.empty(shape, dtype=np.int32)
        max_pool_forward(x, *geom, masked, mask)
        ref_top, ref_mask = naive.max_pool(x, *geom, out_hw=shape[2:])
        np.testing.assert_array_equal(masked, ref_top)
        np.testing.assert_array_equal(mask, ref_mask)
        np.testing.assert_array_equal(_maskless(x, geom, shape), masked)
        assert (masked[0, 0] == -naive.FLT_MAX).all()
