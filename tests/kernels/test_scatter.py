"""pyforge.kernels.scatter.scatter_add_rows (the backward of Embed and BatchReindex) against the
source-order loop of tests/reference/naive.py, bit for bit: the kernel promises Caffe's order of
float32 additions, so repeated destination rows must round exactly as the reference's."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels.scatter import scatter_add_rows
from tests.reference import naive

F32 = np.float32


@pytest.mark.parametrize(("rows", "cols", "targets"), [(6, 3, 4), (1, 5, 1), (20, 2, 3),
                                                       (4, 1, 9)])
def test_scatter_add_rows_is_exact(rows, cols, targets):
    rng = np.random.default_rng(rows * 10 + cols)
    src = rng.standard_normal((rows, cols)).astype(F32)
    index = rng.integers(0, targets, size=rows).astype(np.int64)
    dst = rng.standard_normal((targets, cols)).astype(F32)  # accumulated into, not overwritten
    expected = naive.scatter_add_rows(src, index, dst)
    scatter_add_rows(src, index, dst)
    np.testing.assert_array_equal(dst, expected)


def test_scatter_add_rows_adds_in_source_order():
    """1e8 + 1 - 1e8 is 0 in float32 but 1e8 - 1e8 + 1 is 1: the result shows the order."""
    src = np.array([[1e8], [1.0], [-1e8]], F32)
    dst = np.zeros((1, 1), F32)
    scatter_add_rows(src, np.zeros(3, np.int64), dst)
    assert dst[0, 0] == 0.0
    reordered = np.zeros((1, 1), F32)
    scatter_add_rows(src[[0, 2, 1]], np.zeros(3, np.int64), reordered)
    assert reordered[0, 0] == 1.0


def test_scatter_add_rows_without_rows_leaves_dst():
    dst = np.arange(6, dtype=F32).reshape(3, 2)
    scatter_add_rows(np.zeros((0, 2), F32), np.zeros(0, np.int64), dst)
    np.testing.assert_array_equal(dst, np.arange(6).reshape(3, 2))
