"""pyforge.kernels.bn_fork (the PSPNet and SegNet ``BN`` layers) against float64 references
and tests/reference/forks.py: per-channel mean and mean square, the normalize-scale-shift
forward in both factor modes (PSPNet multiplies by (var + eps)^-1/2, SegNet divides by
sqrt(var + eps)), SegNet's folded affine forward, and both backward kernels with their
parameter diffs accumulating, each gradient flag, and dx aliasing dy."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels import bn_fork as K
from tests.reference import forks
from tests.reference.float32 import assert_close

F32 = np.float32
SHAPES = [(2, 3, 5), (1, 4, 1), (4, 2, 6)]  # (N, C, S)


def _arrays(shape, seed):
    rng = np.random.default_rng(seed)
    x = (1.5 + 2 * rng.standard_normal(shape)).astype(F32)
    dy = rng.standard_normal(shape).astype(F32)
    scale = (0.5 + rng.random(shape[1])).astype(F32)
    shift = rng.standard_normal(shape[1]).astype(F32)
    return x, dy, scale, shift


@pytest.mark.parametrize("shape", SHAPES)
def test_channel_mean_and_square(shape):
    x = _arrays(shape, 0)[0]
    mean = np.full(shape[1], np.nan, F32)
    mean_sq = np.full(shape[1], np.nan, F32)
    K.channel_mean_and_square(x, mean, mean_sq)
    x64 = x.astype(np.float64)
    # float64 sums of float32 values and of their float32 squares, rounded once each.
    assert_close(mean, x64.mean(axis=(0, 2)), np.abs(x64).mean(axis=(0, 2)), roundings=2)
    assert_close(mean_sq, (x64**2).mean(axis=(0, 2)), (x64**2).mean(axis=(0, 2)), roundings=3)


@pytest.mark.parametrize("divide", [False, True], ids=["pspnet_multiply", "segnet_divide"])
@pytest.mark.parametrize("shape", SHAPES)
def test_bn_forward(shape, divide):
    x, _, scale, shift = _arrays(shape, 1)
    mean = x.mean(axis=(0, 2), dtype=np.float64).astype(F32)
    factor = (0.3 + np.arange(shape[1])).astype(F32)
    y = np.full_like(x, np.nan)
    x_norm = np.full_like(x, np.nan)
    K.bn_forward(x, mean, factor, divide, scale, shift, y, x_norm)
    centred = x.astype(np.float64) - mean[None, :, None]
    f = factor.astype(np.float64)[None, :, None]
    expected_norm = centred / f if divide else centred * f
    expected_y = expected_norm * scale[None, :, None] + shift[None, :, None]
    # A difference and a product or quotient; then a product and a sum.
    assert_close(x_norm, expected_norm, expected_norm, roundings=2)
    assert_close(y, expected_y, np.abs(expected_norm * scale[None, :, None])
                 + np.abs(shift)[None, :, None], roundings=4)
    in_place = x.copy()  # y may be x
    K.bn_forward(in_place, mean, factor, divide, scale, shift, in_place, x_norm)
    np.testing.assert_array_equal(in_place, y)


def test_bn_affine_forward():
    x, _, scale, shift = _arrays((3, 4, 5), 2)
    y = np.full_like(x, np.nan)
    K.bn_affine_forward(x, scale, shift, y)
    product = x.astype(np.float64) * scale[None, :, None]
    assert_close(y, product + shift[None, :, None],
                 np.abs(product) + np.abs(shift)[None, :, None], roundings=2)


@pytest.mark.parametrize("divide", [False, True], ids=["pspnet_multiply", "segnet_divide"])
@pytest.mark.parametrize("shape", SHAPES)
def test_bn_backward(shape, divide):
    _, dy, scale, _ = _arrays(shape, 3)
    # The kernel takes x_norm as given (the forward's copy); any values check the formula.
    x_norm = np.random.default_rng(4).standard_normal(shape).astype(F32)
    factor = (0.3 + np.arange(shape[1])).astype(F32)
    dscale = np.ones(shape[1], F32)  # parameter diffs accumulate
    dshift = np.ones(shape[1], F32)
    dx = np.full_like(dy, np.nan)
    K.bn_backward(x_norm, dy, scale, factor, divide, True, True, True, dscale, dshift, dx)
    inv = 1.0 / factor.astype(np.float64) if divide else factor.astype(np.float64)
    four = (s[..., None] for s in (x_norm, dy))  # forks' references take (N, C, H, W)
    xn4, dy4 = (a.astype(np.float64) for a in four)
    exp_dx, exp_dscale, exp_dshift = forks.bn_train_backward(dy4, xn4, scale.astype(np.float64),
                                                             inv)
    m = shape[0] * shape[2]
    abs_dy, abs_xn = np.abs(dy.astype(np.float64)), np.abs(x_norm.astype(np.float64))
    sums = abs_dy.sum(axis=(0, 2))[None, :, None] * (1 + abs_xn)
    # The reference rounds its results to float32 once; the kernel rounds its sums and a few
    # steps per element: scaled by the sum of the absolute terms.
    magnitude = (abs_dy + sums / m) * scale[None, :, None] * inv[None, :, None]
    assert_close(dx, exp_dx[..., 0], magnitude, roundings=10)
    assert_close(dscale, 1.0 + exp_dscale, 1.0 + (abs_dy * abs_xn).sum(axis=(0, 2)),
                 roundings=4)
    assert_close(dshift, 1.0 + exp_dshift, 1.0 + abs_dy.sum(axis=(0, 2)), roundings=4)
    in_place = dy.copy()  # dx may be dy: the channel's sums come first
    K.bn_backward(x_norm, in_place, scale, factor, divide, False, False, True, dscale, dshift,
                  in_place)
    np.testing.assert_array_equal(in_place, dx)


@pytest.mark.parametrize("kernel", ["bn_backward", "bn_affine_backward"])
@pytest.mark.parametrize("need", [(True, False, False), (False, True, False),
                                  (False, False, True)], ids=["scale", "shift", "dx"])
def test_backward_computes_only_what_is_asked(kernel, need):
    x, dy, scale, _ = _arrays((2, 3, 4), 4)
    factor = np.ones(3, F32)
    outs = [np.full(3, 5.0, F32), np.full(3, 5.0, F32), np.full_like(x, 5.0)]
    if kernel == "bn_backward":
        K.bn_backward(x, dy, scale, factor, False, *need, *outs)
    else:
        K.bn_affine_backward(x, dy, scale, *need, *outs)
    for asked, out in zip(need, outs):
        assert (out == 5.0).all() != asked


def test_bn_affine_backward():
    x, dy, scale, _ = _arrays((3, 2, 5), 5)
    dscale = np.full(2, 0.5, F32)
    dshift = np.full(2, -0.5, F32)
    dx = np.full_like(x, np.nan)
    K.bn_affine_backward(x, dy, scale, True, True, True, dscale, dshift, dx)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    np.testing.assert_array_equal(dx, (dy64 * scale[None, :, None]).astype(F32))  # one product
    assert_close(dscale, 0.5 + (dy64 * x64).sum(axis=(0, 2)),
                 0.5 + np.abs(dy64 * x64).sum(axis=(0, 2)), roundings=3)
    assert_close(dshift, -0.5 + dy64.sum(axis=(0, 2)), 0.5 + np.abs(dy64).sum(axis=(0, 2)),
                 roundings=3)
    in_place = dy.copy()
    K.bn_affine_backward(x, in_place, scale, False, False, True, dscale, dshift, in_place)
    np.testing.assert_array_equal(in_place, dx)
