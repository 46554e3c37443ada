"""Layers that pick items of the batch by index: Filter and BatchReindex.
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels.scatter import scatter_add_rows
from .base import Layer, register_layer


@register_layer("Filter")
class FilterLayer(Layer):
    """Caffe type ``Filter``: bottoms (x_1, ..., x_K, selector) -> tops (y_1, ..., y_K) holding
    the items (along axis 0) whose selector value is non-zero, in order.

    The selector is (N) or (N, 1, ...). As in Caffe, the first reshape (at setup) gives every
    top all N items, since the selector holds no data yet. Backward copies each top's gradient
    back to the selected items and zeroes the others; the selector gets no gradient.
    """

    min_bottom_blobs = 2
    min_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(top) != len(bottom) - 1:
            raise self.error(f"needs one top per filtered bottom: {len(bottom) - 1} bottom(s) "
                             f"before the selector, found {len(top)} top(s)")
        self._num_bottom = len(bottom)
        self._first_reshape = True

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        selector = bottom[-1]
        if selector.num_axes < 1 or any(d != 1 for d in selector.shape[1:]):
            raise self.error(f"selector blob dimensions must be singletons (1), except the "
                             f"first; found {selector.shape}")
        n = selector.shape[0]
        for i, b in enumerate(bottom[:-1]):
            if b.num_axes < 1 or b.shape[0] != n:
                raise self.error(f"bottom {i} {b.shape} must have the same 0th dimension as "
                                 f"the selector ({n})")
        self._keep = np.flatnonzero(selector.data.reshape(-1) != 0)
        items = len(self._keep)
        if self._first_reshape:
            items = n
            self._first_reshape = False
        for b, t in zip(bottom, top):
            t.reshape((items,) + b.shape[1:])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        k = len(self._keep)
        for b, t in zip(bottom, top):
            t.data[:k] = b.data[self._keep]

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != self._num_bottom - 1  # the selector

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[-1]:
            raise self.error("cannot backpropagate to the selector (the last bottom)")
        k = len(self._keep)
        for i, (b, t) in enumerate(zip(bottom, top)):
            if propagate_down[i]:
                b.diff[...] = 0
                b.diff[self._keep] = t.diff[:k]


@register_layer("BatchReindex")
class BatchReindexLayer(Layer):
    """Caffe type ``BatchReindex``: bottoms (x (N, ...), index (M)) -> top (M, ...) with
    ``top[i] = x[int(index[i])]``; indices may repeat.

    Backward adds each top item's gradient into the item it came from (zero for items never
    picked); the index bottom gets no gradient.
    """

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[1].num_axes != 1:
            raise self.error(f"the index bottom must have 1 axis, found {bottom[1].shape}")
        if bottom[0].num_axes < 1:
            raise self.error(f"the data bottom needs at least 1 axis, found {bottom[0].shape}")
        top[0].reshape((bottom[1].shape[0],) + bottom[0].shape[1:])

    def _indices(self, bottom: list[Blob]) -> np.ndarray:
        values = bottom[1].data
        n = bottom[0].shape[0]
        # Caffe checks 0 <= index < N on the float value, then truncates it to an int.
        bad = ~((values >= 0) & (values < n))
        if bad.any():
            raise self.error(f"index {values[bad][0]:g} is outside the batch [0, {n})")
        return values.astype(np.int64)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        np.take(bottom[0].data, self._indices(bottom), axis=0, out=top[0].data)

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != 1  # the indices

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the index bottom")
        if not propagate_down[0]:
            return
        n = bottom[0].shape[0]
        dx = bottom[0].diff.reshape(n, -1)
        dx[...] = 0
        scatter_add_rows(top[0].diff.reshape(top[0].shape[0], dx.shape[1]),
                         self._indices(bottom), dx)
