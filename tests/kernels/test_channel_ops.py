"""pyforge.kernels.channel_ops (SENet's Axpy: ``top = scale[n, c] * x + y``) against
tests/reference/forks.py and float64 sums: forward (also with ``top`` aliasing ``y``), and
backward's scale and data gradients with each flag."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels.channel_ops import axpy_backward, axpy_forward
from tests.reference import forks
from tests.reference.float32 import assert_close

F32 = np.float32


def _arrays(shape, seed):
    rng = np.random.default_rng(seed)
    scale, x, y = (rng.standard_normal(s).astype(F32) for s in (shape[:2], shape, shape))
    return scale, x, y


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 1, 7), (3, 4, 1)])
def test_axpy_forward(shape):
    scale, x, y = _arrays(shape, 0)
    top = np.full_like(x, np.nan)
    axpy_forward(scale, x, y, top)
    four = (a[..., None].astype(np.float64) for a in (x, y))
    expected = forks.axpy(scale.astype(np.float64), *four)[..., 0]
    product = np.abs(scale[..., None].astype(np.float64) * x)
    assert_close(top, expected, product + np.abs(y), roundings=2)  # a product and a sum
    in_place = y.copy()  # top may be y
    axpy_forward(scale, x, in_place, in_place)
    np.testing.assert_array_equal(in_place, top)


@pytest.mark.parametrize("need", [(True, True), (True, False), (False, True)],
                         ids=["both", "scale", "x"])
def test_axpy_backward(need):
    scale, x, dtop = _arrays((2, 3, 6), 1)
    dscale = np.full(scale.shape, np.nan, F32)
    dx = np.full_like(x, np.nan)
    axpy_backward(scale, x, dtop, *need, dscale, dx)
    x64, d64 = x.astype(np.float64), dtop.astype(np.float64)
    if need[0]:  # a float64 sum of float32 products, rounded once
        assert_close(dscale, (d64 * x64).sum(axis=2), np.abs(d64 * x64).sum(axis=2),
                     roundings=2)
    else:
        assert np.isnan(dscale).all()
    if need[1]:  # one product: exact
        np.testing.assert_array_equal(dx, (scale[..., None] * d64).astype(F32))
    else:
        assert np.isnan(dx).all()
