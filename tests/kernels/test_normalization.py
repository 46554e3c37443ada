"""pyforge.kernels.normalization against float64 references (tests/reference/normalization.py):
BatchNorm statistics, normalization and both backward forms; MVN with and without variance
normalization, per channel and across channels; LRN across channels (scale and backward, odd
and even window sizes, windows larger than the channel count) and within channels (pooled
squares and backward, windows larger than the plane), with the work buffers and the steps the
layers perform between the kernels (the powers), and the in-place calls the kernels allow.

Tolerances count float32 roundings (tests/reference/float32.py) of the magnitudes each test
names: the sums of absolute values the errors scale with.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels import normalization as K
from tests.reference import normalization as ref
from tests.reference.float32 import U, assert_close, rounded

F32 = np.float32


def _normal(shape, seed, offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (offset + scale * rng.standard_normal(shape)).astype(F32)


# --- BatchNorm ---------------------------------------------------------------------------------
BN_SHAPES = [(2, 3, 5), (1, 4, 1), (5, 2, 7), (3, 1, 16)]


@pytest.mark.parametrize("offset", [0.0, 100.0], ids=["centred", "offset100"])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_channel_mean_var(shape, offset):
    x = _normal(shape, 0, offset)
    mean = np.full(shape[1], np.nan, F32)
    var = np.full(shape[1], np.nan, F32)
    K.channel_mean_var(x, mean, var)
    exp_mean, exp_var = ref.channel_mean_var(x)
    m = shape[0] * shape[2]
    # Mean: a float64 sum (2^-29 U per term) rounded once to float32.
    abs_mean = np.abs(x.astype(np.float64)).mean(axis=(0, 2))
    assert_close(mean, exp_mean, np.abs(exp_mean) + 2.0**-29 * m * abs_mean, roundings=2)
    # Variance: x - mean and its square rounded in float32, summed in float64, rounded; taken
    # about the float32 mean, which adds (mean error)^2 <= U * mean^2 (in U units).
    assert_close(var, exp_var, exp_var + U * exp_mean**2, roundings=4)


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_forward_and_in_place(shape):
    x = _normal(shape, 1, 3.0)
    mean = _normal(shape[1], 2, 3.0)
    std = np.abs(_normal(shape[1], 3)) + F32(0.1)
    y = np.full_like(x, np.nan)
    x_norm = np.full_like(x, np.nan)
    K.batch_norm_forward(x, mean, std, True, y, x_norm)
    expected = ref.batch_norm(x, mean, std)
    assert_close(y, expected, expected, roundings=2)  # a difference and a quotient
    np.testing.assert_array_equal(x_norm, y)  # the copy Backward reads
    in_place = x.copy()
    K.batch_norm_forward(in_place, mean, std, True, in_place, x_norm)
    np.testing.assert_array_equal(in_place, y)
    # With stored statistics Backward needs no copy: none is kept.
    untouched = np.full_like(x, np.nan)
    K.batch_norm_forward(x, mean, std, False, y, untouched)
    np.testing.assert_array_equal(y, in_place)
    assert np.isnan(untouched).all()


def _batch_norm_layer_forward(x, eps):
    """The statistics, std and normalized x as BatchNormLayer.forward makes them (float32)."""
    mean = np.empty(x.shape[1], F32)
    var = np.empty(x.shape[1], F32)
    K.channel_mean_var(x, mean, var)
    std = np.sqrt(var + F32(eps))
    y = np.empty_like(x)
    x_norm = np.empty_like(x)
    K.batch_norm_forward(x, mean, std, True, y, x_norm)
    return std, x_norm


@pytest.mark.parametrize("eps", [1e-5, 0.1])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_backward(shape, eps):
    x = _normal(shape, 4, 2.0, 3.0)
    dy = _normal(shape, 5)
    std, x_norm = _batch_norm_layer_forward(x, eps)
    dx = np.full_like(x, np.nan)
    K.batch_norm_backward(x_norm, dy, std, dx)
    expected = ref.batch_norm_grad(x, dy, eps)
    # From float32 statistics and x_norm (a few roundings each), two float32-rounded channel
    # sums, then five roundings per element; the error scales with the absolute terms.
    mean, var = ref.channel_mean_var(x)
    std64 = np.sqrt(var + eps)[None, :, None]
    y = ref.batch_norm(x, mean, std64[0, :, 0])
    m = shape[0] * shape[2]
    abs_dy = np.abs(dy.astype(np.float64))
    sums = abs_dy.sum(axis=(0, 2))[None, :, None] + (abs_dy * np.abs(y)).sum(
        axis=(0, 2))[None, :, None] * np.abs(y)
    assert_close(dx, expected, (abs_dy + sums / m) / std64, roundings=12)
    # dx may be dy: every sum of a channel is taken before its dx is written.
    in_place = dy.copy()
    K.batch_norm_backward(x_norm, in_place, std, in_place)
    np.testing.assert_array_equal(in_place, dx)


def test_divide_by_channel_is_exact():
    dy = _normal((3, 4, 5), 7)
    std = np.abs(_normal(4, 8)) + F32(0.05)
    dx = np.full_like(dy, np.nan)
    K.divide_by_channel(dy, std, dx)
    # One division per element (float64 division of float32 values rounds to the same float32).
    np.testing.assert_array_equal(dx, rounded(dy / std.astype(np.float64)[None, :, None]))


# --- MVN ---------------------------------------------------------------------------------------
# (N, C, H, W) and whether the rows are whole items (across_channels) or channels of an item.
MVN_CASES = [
    pytest.param((2, 3, 4, 5), False, id="per_channel"),
    pytest.param((2, 3, 4, 5), True, id="across_channels"),
    pytest.param((3, 2, 1, 1), False, id="per_channel_dim1"),
    pytest.param((1, 4, 3, 1), True, id="one_item_across"),
]


def _mvn_view(shape, across):
    n, c, h, w = shape
    return (n, c * h * w) if across else (n * c, h * w)


@pytest.mark.parametrize("eps", [1e-9, 1e-3])
@pytest.mark.parametrize("normalize_variance", [True, False], ids=["variance", "mean_only"])
@pytest.mark.parametrize(("shape", "across"), MVN_CASES)
def test_mvn(shape, across, normalize_variance, eps):
    view = _mvn_view(shape, across)
    x = _normal(shape, 9, 1.5, 2.0).reshape(view)
    dy = _normal(shape, 10).reshape(view)
    y = np.full_like(x, np.nan)
    std = np.full(view[0], np.nan, F32)
    K.mvn_forward(x, normalize_variance, F32(eps), y, std)
    expected_y, expected_std = ref.mvn(x, normalize_variance, eps)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    # x - mean carries the float32 mean's rounding, an absolute U * |mean|; dividing by the
    # float32 std (a few roundings) adds a few roundings of y.
    centred = np.abs(x64 - mean) + np.abs(mean)
    if normalize_variance:
        assert_close(std, expected_std, expected_std, roundings=4)
        assert_close(y, expected_y, centred / expected_std[:, None], roundings=8)
    else:
        assert_close(y, expected_y, centred, roundings=2)
    dx = np.full_like(x, np.nan)
    K.mvn_backward(y, dy, normalize_variance, std, dx)
    expected_dx = ref.mvn_grad(expected_y, dy, normalize_variance, expected_std)
    abs_dy = np.abs(dy.astype(np.float64))
    if normalize_variance:
        # From the float32 y (about 8 roundings): the sums' and the steps' roundings.
        abs_y = np.abs(expected_y)
        sums = (abs_dy * abs_y).sum(axis=1, keepdims=True) * abs_y \
            + abs_dy.sum(axis=1, keepdims=True)
        assert_close(dx, expected_dx, (abs_dy + sums / view[1]) / expected_std[:, None],
                     roundings=16)
    else:
        assert_close(dx, expected_dx, abs_dy + abs_dy.mean(axis=1, keepdims=True), roundings=3)
    # dx may be dy (MVN in place): without variance the result is the same; with it, the
    # steps read what the earlier ones overwrote, as in Caffe.
    in_place = dy.copy()
    K.mvn_backward(y, in_place, normalize_variance, std, in_place)
    if not normalize_variance:
        np.testing.assert_array_equal(in_place, dx)
        return
    expected_in_place = ref.mvn_grad_in_place(expected_y, dy, expected_std)
    # Built from sums of |y| * sum(|y dy|) over the row; a few roundings per step.
    sum_abs = (np.abs(expected_y) * (abs_dy * np.abs(expected_y)).sum(axis=1, keepdims=True))
    magnitude = (sum_abs + sum_abs.sum(axis=1, keepdims=True)) / expected_std[:, None]
    assert_close(in_place, expected_in_place, magnitude, roundings=16)


# --- LRN across channels -----------------------------------------------------------------------
# (N, C, H*W, local_size): odd sizes (the layer's), even sizes (the kernel's window is Caffe's
# padded one: (size-1)//2 channels before), and windows wider than the channels. Backward takes
# odd sizes only: the layer refuses even ones, as Caffe does ("LRN only supports odd values for
# local_size"), and lrn_across_backward's running window assumes a centred one.
ACROSS = [
    pytest.param((2, 5, 6), 3, id="C5_n3"),
    pytest.param((1, 6, 4), 5, id="C6_n5"),
    pytest.param((2, 3, 5), 7, id="C3_n7_window_wider"),
    pytest.param((1, 4, 3), 1, id="C4_n1"),
    pytest.param((1, 1, 6), 5, id="C1_n5"),
    pytest.param((2, 5, 3), 2, id="C5_n2_even"),
    pytest.param((1, 6, 4), 4, id="C6_n4_even"),
]
ACROSS_ODD = [case for case in ACROSS if case.values[1] % 2]
ALPHA, BETA, K_LRN = 0.7, 0.75, 1.5


def _lrn_across_layer(x, size, alpha=ALPHA, beta=BETA, k=K_LRN):
    """The scale and output as LRNLayer.forward makes them."""
    scale = np.full_like(x, np.nan)
    K.lrn_across_scale(x, size, F32(alpha) / F32(size), F32(k), scale)
    y = np.power(scale, -F32(beta)) * x
    return scale, y


@pytest.mark.parametrize(("shape", "size"), ACROSS)
def test_lrn_across_scale(shape, size):
    x = _normal(shape, 11, 0.0, 2.0)
    scale, _ = _lrn_across_layer(x, size)
    expected = ref.lrn_across_scale(x, size, ALPHA, K_LRN)
    # A running sum over channels (add the head, subtract the tail): up to 3 roundings per
    # channel of the largest partial sums, at most k + alpha/n * (sum of all channels' x^2).
    bound = K_LRN + ALPHA / size * (x.astype(np.float64) ** 2).sum(axis=1, keepdims=True)
    assert_close(scale, expected, np.broadcast_to(bound, x.shape), roundings=3 * shape[1] + 3)


@pytest.mark.parametrize(("shape", "size"), ACROSS_ODD)
def test_lrn_across_backward(shape, size):
    x = _normal(shape, 12, 0.0, 2.0)
    dy = _normal(shape, 13)
    scale, y = _lrn_across_layer(x, size)
    # LRNLayer.backward: dx = dy * scale^-beta, then the kernel subtracts the window sums.
    dx = np.power(scale, -F32(BETA)) * dy
    cache_ratio = F32(2.0 * float(F32(ALPHA)) * float(F32(BETA)) / size)
    ratio = np.full_like(x, np.nan)
    accum = np.full((shape[0], shape[2]), np.nan, F32)
    K.lrn_across_backward(x, y, scale, dy, size, cache_ratio, ratio, accum, dx)
    expected = ref.lrn_across_grad(x, dy, size, ALPHA, BETA, K_LRN)
    s64 = ref.lrn_across_scale(x, size, ALPHA, K_LRN)
    x64 = x.astype(np.float64)
    abs_ratio = np.abs(dy * x64 * s64 ** (-BETA - 1))
    # The first term carries scale's error times beta; the second a running sum of ratios
    # (up to 3 roundings per channel of the sum over all channels), times x.
    magnitude = np.abs(dy) * s64**-BETA + 2 * ALPHA * BETA / size * np.abs(x64) \
        * abs_ratio.sum(axis=1, keepdims=True)
    assert_close(dx, expected, magnitude, roundings=4 * shape[1] + 8)


# --- LRN within channels -----------------------------------------------------------------------
# (planes, H, W, local_size): odd sizes only (Caffe's pooling needs them to keep the plane size).
WITHIN = [
    pytest.param((2, 5, 6), 3, id="5x6_n3"),
    pytest.param((3, 4, 4), 5, id="4x4_n5"),
    pytest.param((1, 2, 3), 5, id="2x3_n5_window_wider"),
    pytest.param((2, 3, 7), 1, id="n1"),
    pytest.param((1, 1, 1), 3, id="1x1_n3"),
]


def _lrn_within_layer(x, size, alpha=ALPHA, beta=BETA):
    """Pooled squares, their power and the output as LRNLayer.forward makes them."""
    squares, rows = np.full_like(x, np.nan), np.full_like(x, np.nan)
    pooled = np.full_like(x, np.nan)
    K.lrn_within_pool(x, size, squares, rows, pooled)
    power = pooled * F32(alpha) if alpha != 1 else pooled.copy()
    power += F32(1.0)
    np.power(power, -F32(beta), out=power)
    return pooled, power, x * power


@pytest.mark.parametrize(("shape", "size"), WITHIN)
def test_lrn_within_pool(shape, size):
    x = _normal(shape, 14, 0.0, 2.0)
    pooled, _, _ = _lrn_within_layer(x, size)
    expected = ref.lrn_within_pooled(x, size)
    # Squares (1), a box sum of up to size^2 positive terms, a division (1).
    assert_close(pooled, expected, expected, roundings=size * size + 2)


@pytest.mark.parametrize("alpha", [ALPHA, 1.0])
@pytest.mark.parametrize(("shape", "size"), WITHIN)
def test_lrn_within_backward(shape, size, alpha):
    x = _normal(shape, 15, 0.0, 2.0)
    dy = _normal(shape, 16)
    pooled, power, _ = _lrn_within_layer(x, size, alpha)
    work = [np.full_like(x, np.nan) for _ in range(3)]
    dx = np.full_like(x, np.nan)
    K.lrn_within_backward(x, pooled, power, dy, size, F32(alpha), -F32(BETA), *work, dx)
    expected = ref.lrn_within_grad(x, dy, size, alpha, BETA)
    pad = (size - 1) // 2
    x64 = x.astype(np.float64)
    base = 1 + alpha * ref.lrn_within_pooled(x, size)
    # dy * power carries pooled's error (size^2 + 2 roundings) through the power; the second
    # term adds a box sum of size^2 terms and a few roundings per term.
    term = np.abs(dy * x64) * BETA * alpha * base ** (-BETA - 1)
    spread = ref.naive.ave_pool_backward(term[None], (1, *shape), size, size, 1, 1, pad, pad)[0]
    magnitude = np.abs(dy) * base**-BETA + 2 * np.abs(x64) * spread
    assert_close(dx, expected, magnitude, roundings=2 * size * size + 12)
