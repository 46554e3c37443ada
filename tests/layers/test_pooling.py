"""Pooling (MAX, AVE, global; Caffe's rounding and padding) and SPP."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from pyforge.layers.pooling import level_geometry
from tests.gradient_check import blob_from, build_layer, setup_forward
from tests.layers.util import rand
from tests.reference import forks as ref
from tests.reference import naive


def spp(params: str, x):
    layer = build_layer(f'name: "spp" type: "SPP" bottom: "x" top: "y" spp_param {{ {params} }}')
    bottom, top = [blob_from(x)], [Blob()]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def caffe_level(level: int, size: int) -> tuple[int, int]:
    """(kernel, pad) of GetPoolingParam, written out independently."""
    bins = 2**level
    kernel = math.ceil(size / bins)
    return kernel, (kernel * bins - size + 1) // 2


def pool(params: str, x, tops: int = 1):
    names = " ".join(f'top: "t{i}"' for i in range(tops))
    layer = build_layer(f'name: "p" type: "Pooling" bottom: "x" {names} '
                        f"pooling_param {{ {params} }}")
    bottom = [blob_from(x)]
    top = [Blob() for _ in range(tops)]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def out_hw(params: str, shape) -> tuple[int, ...]:
    _, _, top = pool(params, np.zeros(shape, np.float32))
    return top[0].shape


def roi_layer(params: str, x, rois, kind: str = "ROIPooling"):
    field = "roi_pooling_param" if kind == "ROIPooling" else "psroi_pooling_param"
    layer = build_layer(f'name: "pool" type: "{kind}" bottom: "x" bottom: "rois" top: "y" '
                        f"{field} {{ {params} }}")
    bottom, top = [blob_from(x), blob_from(rois)], [Blob()]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


@pytest.mark.parametrize(
    ("level", "size", "expected"),
    [(0, 13, (13, 0)), (1, 13, (7, 1)), (2, 13, (4, 2)), (1, 8, (4, 0)), (2, 6, (2, 1)),
     (2, 7, (2, 1)), (3, 13, (2, 2))],
)
def test_level_geometry(level, size, expected):
    kh, kw, ph, pw = level_geometry(level, size, size)
    assert (kh, ph) == expected == (kw, pw)


def test_divisible_input_pools_exact_blocks():
    """An 8x8 input: level 0 is the global max, level 1 the 2x2 quadrants, level 2 the 4x4
    grid of 2x2 blocks; each flattened per item (channel-major) and concatenated."""
    x = rand(2, 3, 8, 8)
    _, _, top = spp("pyramid_height: 3", x)
    assert top[0].shape == (2, 3 * (1 + 4 + 16))
    parts = []
    for bins in (1, 2, 4):
        blocks = x.reshape(2, 3, bins, 8 // bins, bins, 8 // bins).max(axis=(3, 5))
        parts.append(blocks.reshape(2, -1))
    np.testing.assert_array_equal(top[0].data, np.concatenate(parts, axis=1))


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize(("shape", "height"), [((2, 2, 6, 6), 3), ((1, 3, 7, 5), 2),
                                               ((2, 1, 13, 9), 3)])
def test_spp_matches_pooling_levels(pool, shape, height):
    x = rand(*shape)
    layer, bottom, top = spp(f"pyramid_height: {height} pool: {pool}", x)
    n = shape[0]
    parts, backs = [], []
    dy = rand(*top[0].shape, seed=1)
    offset = 0
    for level in range(height):
        kh, ph = caffe_level(level, shape[2])
        kw, pw = caffe_level(level, shape[3])
        if pool == "MAX":
            out, mask = naive.max_pool(x, kh, kw, kh, kw, ph, pw)
        else:
            out = naive.ave_pool(x, kh, kw, kh, kw, ph, pw)
        parts.append(out.reshape(n, -1))
        g = dy[:, offset : offset + parts[-1].shape[1]].reshape(out.shape)
        offset += parts[-1].shape[1]
        if pool == "MAX":
            backs.append(naive.max_pool_backward(g, mask, shape))
        else:
            backs.append(naive.ave_pool_backward(g, shape, kh, kw, kh, kw, ph, pw))
    np.testing.assert_allclose(top[0].data, np.concatenate(parts, axis=1), rtol=1e-5,
                               atol=1e-6)
    top[0].diff[...] = dy
    bottom[0].diff[...] = np.nan
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, sum(backs), rtol=1e-5, atol=1e-5)


def test_pyramid_height_1_keeps_the_pooling_shape():
    """Caffe hands the top straight to its one Pooling layer: (N, C, 1, 1), not flattened."""
    x = rand(2, 3, 4, 5)
    layer, bottom, top = spp("pyramid_height: 1", x)
    assert top[0].shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(top[0].data[..., 0, 0], x.max(axis=(2, 3)))
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    assert bottom[0].diff.sum() == pytest.approx(6)


def test_spp_follows_a_new_input_size():
    layer, bottom, top = spp("pyramid_height: 2 pool: AVE", rand(1, 2, 4, 4))
    assert top[0].shape == (1, 2 * 5)
    x = rand(3, 2, 6, 8, seed=1)
    bottom[0].reshape(x.shape)
    bottom[0].data[...] = x
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (3, 2 * 5)
    np.testing.assert_allclose(top[0].data[:, :2], x.mean(axis=(2, 3)), rtol=1e-5)


@pytest.mark.parametrize(
    ("params", "shape", "match"),
    [
        ("pool: MAX", (1, 1, 4, 4), "pyramid_height"),
        ("pyramid_height: 3", (1, 1, 5, 5), "too small"),  # level 2: kernel 2, pad 2
        ("pyramid_height: 2 pool: STOCHASTIC", (1, 1, 4, 4), "STOCHASTIC"),
        ("pyramid_height: 2", (2, 4, 4), "4 axes"),
    ],
)
def test_spp_errors(params, shape, match):
    with pytest.raises(PyforgeError, match=match):
        spp(params, np.zeros(shape, np.float32))


@pytest.mark.parametrize(
    ("h", "k", "s", "p", "expected"),
    [
        (24, 2, 2, 0, 12),  # LeNet
        (28, 3, 2, 0, 14),  # ceil((28-3)/2)+1 = 13+1 (floor would give 13)
        (32, 3, 2, 0, 16),  # CIFAR-10 quick: ceil(29/2)+1
        (55, 3, 2, 0, 27),  # AlexNet pool1
        (112, 3, 2, 0, 56),  # GoogLeNet pool1: ceil(109/2)+1
        (7, 3, 2, 1, 4),  # ceil(6/2)+1 = 4; (4-1)*2 = 6 < 7+1 so kept
        (5, 2, 2, 1, 3),  # ceil(5/2)+1 = 4; (4-1)*2 = 6 >= 5+1: last window dropped
        (4, 2, 2, 1, 3),  # ceil(4/2)+1 = 3; (3-1)*2 = 4 < 5: kept
        (6, 3, 3, 1, 3),  # ceil(5/3)+1 = 3; (3-1)*3 = 6 < 7: kept
        (6, 2, 3, 1, 3),  # ceil(6/3)+1 = 3; (3-1)*3 = 6 < 7: kept
        (3, 3, 1, 2, 5),  # pad 2 < kernel 3 allowed
        (1, 1, 1, 0, 1),
        (7, 7, 1, 0, 1),
    ],
)
def test_ceil_output_size(h, k, s, p, expected):
    shape = out_hw(f"pool: MAX kernel_size: {k} stride: {s} pad: {p}", (1, 1, h, h))
    assert shape == (1, 1, expected, expected)
    assert naive.pooled_size(h, k, s, p) == expected


@pytest.mark.parametrize(
    ("h", "k", "s", "p", "expected"),
    [(28, 3, 2, 0, 13), (112, 3, 2, 0, 55), (24, 2, 2, 0, 12), (7, 3, 2, 1, 4), (5, 2, 2, 1, 3),
     (6, 3, 2, 1, 3)],
)
def test_floor_round_mode(h, k, s, p, expected):
    params = f"pool: AVE kernel_size: {k} stride: {s} pad: {p} round_mode: FLOOR"
    assert out_hw(params, (2, 3, h, h)) == (2, 3, expected, expected)
    assert naive.pooled_size(h, k, s, p, "FLOOR") == expected


def test_rectangular_output_size():
    params = "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 1"
    assert out_hw(params, (1, 2, 7, 5)) == (1, 2, 4, 6)


def test_global_pooling_shape_and_values():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    _, _, top = pool("pool: AVE global_pooling: true", x)
    assert top[0].shape == (2, 3, 1, 1)
    np.testing.assert_allclose(top[0].data[:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-5)
    _, _, top = pool("pool: MAX global_pooling: true", x)
    np.testing.assert_array_equal(top[0].data[:, :, 0, 0], x.max(axis=(2, 3)))


def test_global_pooling_follows_the_input_size():
    layer, bottom, top = pool("pool: MAX global_pooling: true", np.ones((1, 1, 3, 3)))
    bottom[0].reshape((1, 1, 5, 6))
    bottom[0].data[...] = np.arange(30, dtype=np.float32).reshape(1, 1, 5, 6)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (1, 1, 1, 1) and top[0].data.item() == 29


@pytest.mark.parametrize(
    "params",
    [
        pytest.param("pool: MAX kernel_size: 3 stride: 2 pad: 1", id="max_k3s2p1"),
        pytest.param("pool: AVE kernel_size: 3 stride: 2 pad: 1", id="ave_k3s2p1"),
        pytest.param("pool: MAX kernel_size: 2 stride: 2", id="max_k2s2"),
        pytest.param("pool: AVE kernel_size: 2 stride: 2 pad: 1", id="ave_k2s2p1_drop"),
        pytest.param("pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 2 "
                     "pad_w: 1", id="ave_rect"),
        pytest.param("pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR", id="max_floor"),
    ],
)
def test_forward_matches_reference(params):
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6)).astype(np.float32)
    layer, _, top = pool(params, x)
    kh, kw = layer.kernel
    sh, sw = layer.stride
    ph, pw = layer.pad
    mode = "FLOOR" if "FLOOR" in params else "CEIL"
    if "MAX" in params:
        expected, _ = naive.max_pool(x, kh, kw, sh, sw, ph, pw, mode)
        np.testing.assert_array_equal(top[0].data, expected)
    else:
        expected = naive.ave_pool(x, kh, kw, sh, sw, ph, pw, mode)
        np.testing.assert_allclose(top[0].data, expected, rtol=1e-5, atol=1e-6)


def test_ave_padding_counts_in_the_divisor():
    # H=W=3, k=3, s=2, p=1: two windows per axis, each 3 wide (one padded row/column each),
    # holding 2x2 image pixels: 4/9 everywhere, not 4/4.
    _, _, top = pool("pool: AVE kernel_size: 3 stride: 2 pad: 1", np.ones((1, 1, 3, 3)))
    np.testing.assert_allclose(top[0].data, np.full((1, 1, 2, 2), 4 / 9), rtol=1e-6)


def test_ave_divisor_is_clipped_to_the_padded_image():
    # H=W=4, k=3, s=2, p=1: the last window starts at row 3 and is clipped to H+p = 5, so it
    # is 2 rows high (1 image row + 1 padding row): the corner is 1/(2*2), not 1/9 nor 1/1.
    _, _, top = pool("pool: AVE kernel_size: 3 stride: 2 pad: 1", np.ones((1, 1, 4, 4)))
    assert top[0].shape == (1, 1, 3, 3)
    assert top[0].data[0, 0, 2, 2] == pytest.approx(0.25)
    assert top[0].data[0, 0, 1, 1] == pytest.approx(1.0)
    assert top[0].data[0, 0, 0, 2] == pytest.approx(2 / 6)


def test_ave_backward_spreads_by_the_same_divisor():
    layer, bottom, top = pool("pool: AVE kernel_size: 3 stride: 2 pad: 1", np.ones((1, 1, 3, 3)))
    top[0].diff[...] = 9
    layer.backward(top, [True], bottom)
    # Corner pixel is in one window, edge pixels in two, the centre in four; each gives 9/9.
    np.testing.assert_allclose(bottom[0].diff[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_max_ties_keep_the_first_index():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = 5  # two maxima in window (0, 0): row-major first wins
    layer, bottom, top = pool("pool: MAX kernel_size: 2 stride: 2", x, tops=2)
    assert top[1].shape == top[0].shape
    np.testing.assert_array_equal(top[1].data[0, 0], [[1, 2], [8, 10]])
    assert top[1].data.dtype == np.float32
    top[0].diff[...] = 1
    layer.backward(top, [True, False], bottom)
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[0, 2] = expected[2, 0] = expected[2, 2] = 1
    np.testing.assert_array_equal(bottom[0].diff[0, 0], expected)


def test_max_overlapping_windows_accumulate_in_backward():
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    layer, bottom, top = pool("pool: MAX kernel_size: 2 stride: 1", x)
    np.testing.assert_array_equal(top[0].data[0, 0], [[4, 5], [7, 8]])
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    assert bottom[0].diff[0, 0, 2, 2] == 1 and bottom[0].diff.sum() == 4


def test_max_padding_never_wins():
    x = -np.ones((1, 1, 3, 3), np.float32)
    _, _, top = pool("pool: MAX kernel_size: 3 stride: 1 pad: 1", x)
    np.testing.assert_array_equal(top[0].data, -np.ones((1, 1, 3, 3)))


def test_backward_overwrites_the_bottom_diff():
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 5)).astype(np.float32)
    for params in ("pool: MAX kernel_size: 3 stride: 2", "pool: AVE kernel_size: 3 stride: 2"):
        layer, bottom, top = pool(params, x)
        top[0].diff[...] = 1
        bottom[0].diff[...] = 1000
        layer.backward(top, [True], bottom)
        assert np.abs(bottom[0].diff).max() < 100


@pytest.mark.parametrize(
    ("params", "match", "tops"),
    [
        ("pool: MAX kernel_size: 2 pad: 2", "pad", 1),
        ("pool: AVE kernel_size: 3 pad: 3", "pad", 1),
        ("pool: MAX kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 2", "pad", 1),
        ("pool: MAX global_pooling: true kernel_size: 2", "global", 1),
        ("pool: MAX global_pooling: true pad: 1", "global|pad", 1),
        ("pool: MAX global_pooling: true stride: 2", "global|stride", 1),
        ("pool: MAX", "kernel", 1),
        ("pool: MAX kernel_h: 2", "kernel", 1),
        ("pool: MAX kernel_size: 2 pad: 1 pad_h: 1 pad_w: 1", "pad", 1),
        ("pool: MAX kernel_size: 2 stride: 1 stride_h: 1 stride_w: 1", "stride", 1),
        ("pool: STOCHASTIC kernel_size: 2", "STOCHASTIC", 1),
        ("pool: AVE kernel_size: 2", "mask|MAX", 2),  # a mask top needs MAX
    ],
)
def test_setup_errors(params, match, tops):
    with pytest.raises(PyforgeError, match=f"(?i){match}"):
        pool(params, np.zeros((1, 1, 6, 6), np.float32), tops=tops)


@pytest.mark.parametrize("params", ["pool: MAX kernel_size: 3 pad_h: 1",
                                    "pool: MAX kernel_size: 3 pad_w: 1"])
def test_pad_h_without_pad_w_is_an_error(params):
    """Caffe: CHECK "pad is pad OR pad_h and pad_w are required." (pooling only)."""
    with pytest.raises(PyforgeError, match="(?i)pad"):
        pool(params, np.zeros((1, 1, 6, 6), np.float32))


def test_input_must_be_4d():
    with pytest.raises(PyforgeError, match="4"):
        pool("pool: MAX kernel_size: 2", np.zeros((2, 6, 6), np.float32))


def test_reshape_follows_a_new_input_size():
    layer, bottom, top = pool("pool: MAX kernel_size: 3 stride: 2", np.zeros((1, 1, 7, 7)))
    assert top[0].shape == (1, 1, 3, 3)
    bottom[0].reshape((2, 1, 9, 9))
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (2, 1, 4, 4)


# --- ceil_mode (BVLC PR #3057 forks: DenseNet, OpenCV) -------------------------------------------
@pytest.mark.parametrize(("h", "k", "s", "p"), [(28, 3, 2, 0), (112, 3, 2, 0), (7, 3, 2, 1),
                                                (5, 2, 2, 1), (6, 3, 2, 1), (56, 2, 2, 0)])
def test_ceil_mode_false_is_floor_rounding(h, k, s, p):
    base = f"pool: MAX kernel_size: {k} stride: {s} pad: {p}"
    assert out_hw(f"{base} ceil_mode: false", (1, 2, h, h)) == out_hw(
        f"{base} round_mode: FLOOR", (1, 2, h, h))
    assert out_hw(f"{base} ceil_mode: true", (1, 2, h, h)) == out_hw(base, (1, 2, h, h))


def test_ceil_mode_false_drops_the_partial_window():
    # DenseNet's 3x3/2 pooling on 56 + pad 1: floor((58-3)/2)+1 = 28 (ceil would give 29).
    assert out_hw("pool: MAX kernel_size: 3 stride: 2 pad: 1 ceil_mode: false",
                  (1, 1, 56, 56)) == (1, 1, 28, 28)
    assert out_hw("pool: MAX kernel_size: 3 stride: 2 pad: 1", (1, 1, 56, 56)) == (1, 1, 29, 29)


def test_ceil_mode_contradicting_round_mode_is_an_error():
    with pytest.raises(PyforgeError,
                       match="ceil_mode: true contradicts round_mode: FLOOR; give one"):
        out_hw("pool: MAX kernel_size: 2 stride: 2 ceil_mode: true round_mode: FLOOR",
               (1, 1, 4, 4))
    assert out_hw("pool: MAX kernel_size: 2 stride: 2 ceil_mode: false round_mode: FLOOR",
                  (1, 1, 5, 5)) == (1, 1, 2, 2)


def test_roi_pooling_takes_the_maximum_of_each_bin():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = 100  # the top-left bin's maximum is its first pixel
    # ROI (1, 1)-(3, 4) in image pixels at scale 0.5 -> map box (1, 1)-(2, 2): C rounds 0.5
    # up to 1 (NumPy would give 0) and 1.5 to 2. Then the whole map.
    rois = [[0, 1, 1, 3, 4], [0, 0, 0, 6, 6]]
    _, _, top = roi_layer("pooled_h: 2 pooled_w: 2 spatial_scale: 0.5", x, rois)
    assert top[0].shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(top[0].data[0, 0], [[5, 6], [9, 10]])
    np.testing.assert_array_equal(top[0].data[1, 0], [[100, 7], [13, 15]])


def test_roi_pooling_bins_clipped_away_give_zero_and_no_gradient():
    x = -np.ones((1, 2, 3, 3), np.float32)
    layer, bottom, top = roi_layer("pooled_h: 2 pooled_w: 2", x, [[0, 2, 2, 5, 5]])
    # The box (2, 2)-(5, 5) keeps one map pixel; bins past the map are empty and read 0.
    np.testing.assert_array_equal(top[0].data[0, 0], [[-1, 0], [0, 0]])
    top[0].diff[...] = 1
    bottom[1].diff[...] = 5
    layer.backward(top, [True, True], bottom)
    assert bottom[0].diff[0, 0].sum() == 1 and bottom[0].diff[0, 0, 2, 2] == 1
    assert not bottom[1].diff.any()  # the boxes get a zero diff


def test_roi_pooling_routes_overlapping_rois_into_one_pixel():
    x = np.zeros((2, 1, 3, 3), np.float32)
    x[1, 0, 1, 1] = 9
    rois = [[1, 0, 0, 2, 2], [1, 1, 1, 2, 2], [0, 0, 0, 2, 2]]
    layer, bottom, top = roi_layer("pooled_h: 1 pooled_w: 1", x, rois)
    top[0].diff[...] = [[[[2]]], [[[3]]], [[[4]]]]
    layer.backward(top, [True, False], bottom)
    assert bottom[0].diff[1, 0, 1, 1] == 5  # both ROIs of image 1 picked it
    assert bottom[0].diff[0].sum() == 4  # image 0's ROI picked its first zero


def test_roi_pooling_a_malformed_box_pools_one_pixel_but_passes_no_gradient():
    """x2 < x1: the fork pools the 1x1 box at (x1, y1) but its backward only credits pixels
    inside [x1, x2], which is empty (the fork's quirk, kept)."""
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 2] = 5
    rois = np.array([[0, 2, 1, 0, 3]], np.float32)
    layer, bottom, top = roi_layer("pooled_h: 1 pooled_w: 1", x, rois)
    assert top[0].data[0, 0, 0, 0] == 5
    top[0].diff[...] = 1
    layer.backward(top, [True, False], bottom)
    assert not bottom[0].diff.any()
    np.testing.assert_array_equal(
        bottom[0].diff, ref.roi_pool_backward(top[0].diff, layer._argmax, rois, 1.0, x.shape))


def test_psroi_pooling_averages_the_position_sensitive_channel():
    x = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    # Image 1, the whole 4x4 map, 2x2 bins of 2x2 pixels; bin (i, j) reads channel 2i + j.
    _, _, top = roi_layer("spatial_scale: 1 output_dim: 1 group_size: 2", x,
                          [[1, 0, 0, 3, 3]], "PSROIPooling")
    assert top[0].shape == (1, 1, 2, 2)
    want = [[x[1, 0, :2, :2].mean(), x[1, 1, :2, 2:].mean()],
            [x[1, 2, 2:, :2].mean(), x[1, 3, 2:, 2:].mean()]]
    np.testing.assert_allclose(top[0].data[0, 0], want, rtol=1e-6)


def test_psroi_pooling_rounds_the_box_before_scaling():
    x = np.random.default_rng(1).standard_normal((1, 8, 6, 7)).astype(np.float32)
    rois = np.array([[0, 2.5, 3.5, 40.5, 31.4], [0, -8, -8, 4, 2]], np.float32)
    _, _, top = roi_layer("spatial_scale: 0.125 output_dim: 2 group_size: 2", x, rois,
                          "PSROIPooling")
    np.testing.assert_array_equal(top[0].data, ref.psroi_pool_forward(x, rois, 0.125, 2, 2))


@pytest.mark.parametrize(("kind", "params", "x_shape", "rois", "message"), [
    ("ROIPooling", "pooled_h: 0 pooled_w: 2", (1, 1, 4, 4), [[0, 0, 0, 1, 1]],
     "pooled_h and pooled_w must be > 0"),
    ("ROIPooling", "pooled_h: 2 pooled_w: 2", (1, 1, 4, 4), [[0, 0, 0, 1]],
     r"bottom 1 \(the ROIs\) must be R x 5"),
    ("ROIPooling", "pooled_h: 2 pooled_w: 2", (1, 4, 4), [[0, 0, 0, 1, 1]],
     r"bottom 0 \(the feature map\) must be \(N, C, H, W\)"),
    ("ROIPooling", "pooled_h: 2 pooled_w: 2", (2, 1, 4, 4), [[0, 0, 0, 1, 1], [2, 0, 0, 1, 1]],
     "ROI 1 has batch index 2; the feature map holds 2 image"),
    ("PSROIPooling", "spatial_scale: 1 output_dim: 2 group_size: 2", (1, 6, 4, 4),
     [[0, 0, 0, 1, 1]], "bottom 0 has 6 channels; output_dim 2 x group_size 2.2 needs 8"),
    ("PSROIPooling", "spatial_scale: 1 output_dim: 0 group_size: 2", (1, 8, 4, 4),
     [[0, 0, 0, 1, 1]], "output_dim and group_size must be > 0"),
    ("PSROIPooling", "spatial_scale: 1 output_dim: 2 group_size: 2", (1, 8, 4, 4),
     [[-1, 0, 0, 1, 1]], "ROI 0 has batch index -1"),
])
def test_roi_errors(kind, params, x_shape, rois, message):
    with pytest.raises(PyforgeError, match=message):
        roi_layer(params, np.zeros(x_shape, np.float32), np.asarray(rois, np.float32), kind)


def test_test_phase_max_pool_rebuilds_its_mask_for_backward():
    """A TEST-phase MAX Pooling skips the argmax mask in forward; a backward that follows
    anyway (pycaffe saliency maps) gets Caffe's gradients, routed to the first maximum of each
    window, even after a later in-place layer changed the top."""
    from tests.gradient_check import TEST, TRAIN
    from tests.layers.util import backward, run

    text = ('name: "pool" type: "Pooling" bottom: "x" top: "y" '
            'pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }')
    x = np.random.default_rng(5).integers(-2, 3, (2, 3, 9, 8)).astype(np.float32)  # ties
    dy = rand(2, 3, 5, 5, seed=6)
    results = {}
    for phase in (TRAIN, TEST):
        layer, bottom, top = run(text, x, phase=phase)
        forward_top = top[0].data.copy()
        top[0].data[...] = -99.0  # e.g. an in-place ReLU/Scale after the pooling
        backward(layer, bottom, top, [dy])
        results[phase] = forward_top, bottom[0].diff.copy()
    np.testing.assert_array_equal(results[TEST][0], results[TRAIN][0])
    np.testing.assert_array_equal(results[TEST][1], results[TRAIN][1])
    ref_top, ref_mask = naive.max_pool(x, 3, 3, 2, 2, 1, 1)
    np.testing.assert_array_equal(results[TEST][0], ref_top)
    np.testing.assert_allclose(results[TEST][1],  # the reference sums in float64
                               naive.max_pool_backward(dy, ref_mask, x.shape), rtol=1e-6)
