"""Row scatter-add: the backward of a gather along the first axis (Embed, BatchReindex).

Several source rows may land on the same destination row, so the loop over source rows stays
serial (threads must never add into one shared cell); it runs in source order, as Caffe's CPU
loops do, so the float32 sums are rounded in Caffe's order.
"""

from __future__ import annotations

from ._jit import jit


@jit
def scatter_add_rows(src, index, dst):
    """``dst[index[i], :] += src[i, :]`` for every row ``i`` of ``src`` (M, D); dst (K, D)."""
    rows, cols = src.shape
    for i in range(rows):
        r = index[i]
        for j in range(cols):
            dst[r, j] += src[i, j]
