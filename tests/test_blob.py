"""The shared mean |x| of the net's debug_info lines and the solver's divergence report."""

from __future__ import annotations

import numpy as np

from pyforge.blob import mean_abs


def test_float32_result_is_the_float64_sum_rounded_once():
    """debug_info prints Caffe's float asum/count: the float64 mean rounded to float32."""
    values = np.random.default_rng(1701).standard_normal(100_003).astype(np.float32)
    exact = np.abs(values.astype(np.float64)).sum() / values.size
    result = mean_abs(values, np.float32)
    assert result.dtype == np.float32
    assert result == np.float32(exact)


def test_float64_result_for_the_divergence_report():
    values = np.array([[-1.5, 2.0], [0.25, -0.25]], np.float32)
    result = mean_abs(values)
    assert result.dtype == np.float64 and result == 1.0


def test_empty_is_zero_and_non_finite_values_propagate():
    assert mean_abs(np.zeros(0, np.float32)) == 0
    assert mean_abs(np.zeros((0, 3), np.float32), np.float32).dtype == np.float32
    assert np.isnan(mean_abs(np.array([1, np.nan], np.float32)))
    assert mean_abs(np.array([-np.inf, 1], np.float32), np.float32) == np.inf
