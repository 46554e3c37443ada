"""pyforge.kernels.checks.all_finite (the divergence scan) against NumPy's isfinite: NaN and
infinities at the first, a middle and the last position, float32 and float64 arrays, empty
arrays, and the extremes that are still finite."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels.checks import all_finite


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 3, -1], ids=["first", "middle", "last"])
@pytest.mark.parametrize("size", [1, 7, 1000])
def test_all_finite_finds_a_bad_value_anywhere(size, where, bad, dtype):
    x = np.random.default_rng(size).standard_normal(size).astype(dtype)
    assert all_finite(x) == np.isfinite(x).all() and all_finite(x)
    x[where % size] = bad
    assert not all_finite(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_of_an_empty_array_is_true(dtype):
    assert all_finite(np.zeros(0, dtype)) is True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_accepts_the_finite_extremes(dtype):
    info = np.finfo(dtype)
    x = np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0], dtype)
    assert all_finite(x)
