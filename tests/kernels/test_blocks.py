"""pyforge.kernels.blocks against NumPy: copy_columns (Concat and Slice) as slicing, bands of
columns in both directions, bands wider than one piece, a single row, offsets at both ends;
add_reversed_parts as adding transposed parts in order."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels.blocks import PIECE, add_reversed_parts, copy_columns


@pytest.mark.parametrize(("rows", "src_width", "dst_width", "src_first", "dst_first", "width"), [
    (3, 5, 9, 0, 4, 5),                                  # a bottom into the end of its top
    (1, 2 * PIECE + 7, 3 * PIECE, 0, 3, 2 * PIECE + 7),  # one row, three pieces
    (4, PIECE + 1, 2 * PIECE + 2, 0, PIECE + 1, PIECE + 1),
    (2, 3 * PIECE, PIECE + 5, PIECE + 3, 0, PIECE + 5),  # a band out of the middle (Slice)
    (0, 4, 8, 0, 0, 4),                                  # an empty batch
])
def test_copy_columns_is_numpys_band_copy(rows, src_width, dst_width, src_first, dst_first,
                                          width):
    rng = np.random.default_rng(rows + width)
    src = rng.standard_normal((rows, src_width)).astype(np.float32)
    dst = rng.standard_normal((rows, dst_width)).astype(np.float32)
    expected = dst.copy()
    expected[:, dst_first:dst_first + width] = src[:, src_first:src_first + width]
    copy_columns(src, src_first, dst, dst_first, width)
    np.testing.assert_array_equal(dst, expected)  # the columns outside the band untouched


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 9, 7, 37), (1, 1, 1, 1), (2, 50, 1, 33)])
def test_add_reversed_parts_is_numpy_adding_each_transposed_part_in_order(shape):
    """The per-thread sums added in thread order, each read with its axes reversed: the bits
    of NumPy's ``out += part.transpose(2, 1, 0)`` one part after the other (sizes that are
    not a multiple of the kernel's block of 16 included)."""
    rng = np.random.default_rng(21)
    parts = rng.standard_normal(shape).astype(np.float32)
    out = rng.standard_normal(shape[:0:-1]).astype(np.float32)
    expected = out.copy()
    for part in parts:
        expected += part.transpose(2, 1, 0)
    add_reversed_parts(parts, out)
    np.testing.assert_array_equal(out, expected)
