"""Layers that select, repeat, reduce or look up data: Crop, Tile, Reduction, ArgMax, Embed,
Filter, BatchReindex and Parameter."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels.scatter import scatter_add_rows
from ..proto import caffe_pb2
from .base import Layer, register_layer

Op = caffe_pb2.ReductionParameter


@register_layer("Crop")
class CropLayer(Layer):
    """Caffe type ``Crop``: bottoms (data, reference) -> top shaped like the reference on the
    axes from ``axis`` on (the data's own sizes before it).

    Reads crop_param: axis (2), offset (none: 0 everywhere; one value: that offset on every
    cropped axis; else one value per cropped axis). Only the data bottom gets a gradient
    (zero outside the crop); the reference only lends its shape.
    """

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.crop_param
        ndim = bottom[0].num_axes
        self.start = self.canonical_axis(bottom[0], p.axis)
        self.offset = [int(o) for o in p.offset]
        if len(self.offset) > 1 and self.start + len(self.offset) != ndim:
            raise self.error(
                f"number of offset values specified must be equal to the number of dimensions "
                f"following axis: axis {self.start} of a {ndim}-axis bottom needs "
                f"{ndim - self.start} offsets, found {len(self.offset)}"
            )

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        data, ref = bottom
        ndim = data.num_axes
        if ref.num_axes < ndim:
            raise self.error(
                f"the reference bottom {ref.shape} has fewer axes than the data {data.shape}"
            )
        shape, slices = [], []
        for i in range(ndim):
            size, off = data.shape[i], 0
            if i >= self.start:
                size = ref.shape[i]
                if len(self.offset) == 1:
                    off = self.offset[0]
                elif self.offset:
                    off = self.offset[i - self.start]
                if data.shape[i] - off < size:
                    raise self.error(
                        f"the crop for dimension {i} is out-of-bounds with size {size} and "
                        f"offset {off} (the data has {data.shape[i]})"
                    )
            shape.append(size)
            slices.append(slice(off, off + size))
        self._slices = tuple(slices)
        top[0].reshape(shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data[...] = bottom[0].data[self._slices]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            bottom[0].diff[...] = 0
            bottom[0].diff[self._slices] = top[0].diff
        if propagate_down[1]:
            # Caffe writes nothing there; the output does not depend on the reference's values,
            # so its gradient is zero.
            bottom[1].diff[...] = 0


@register_layer("Tile")
class TileLayer(Layer):
    """Caffe type ``Tile``: the block of axes from ``axis`` on is repeated ``tiles`` times;
    top shape is the bottom's with ``shape[axis] * tiles``.

    Reads tile_param: axis (1), tiles (required, > 0).
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.tile_param
        self.axis = self.canonical_axis(bottom[0], p.axis)
        if not p.HasField("tiles"):
            raise self.error("number of tiles must be specified (tile_param.tiles)")
        if p.tiles <= 0:
            raise self.error(f"number of tiles must be positive, found {p.tiles}")
        self.tiles = int(p.tiles)
        shape = list(bottom[0].shape)
        shape[self.axis] *= self.tiles
        top[0].reshape(shape)
        self.outer = bottom[0].count_range(0, self.axis)
        self.inner = bottom[0].count_range(self.axis)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data.reshape(self.outer, self.tiles, self.inner)[...] = (
            bottom[0].data.reshape(self.outer, 1, self.inner))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        dy = top[0].diff.reshape(self.outer, self.tiles, self.inner)
        dx = bottom[0].diff.reshape(self.outer, self.inner)
        # Caffe copies the first tile and adds the others one by one (same rounding order).
        dx[...] = dy[:, 0]
        for t in range(1, self.tiles):
            dx += dy[:, t]


@register_layer("Reduction")
class ReductionLayer(Layer):
    """Caffe type ``Reduction``: bottom -> top of shape ``bottom.shape[:axis]`` (a scalar for
    axis 0), each element ``coeff`` times the SUM, ASUM (sum of |x|), SUMSQ or MEAN of the
    bottom's axes from ``axis`` on.

    Reads reduction_param: operation (SUM), axis (0), coeff (1).
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.reduction_param
        self.op = p.operation
        if self.op not in (Op.SUM, Op.ASUM, Op.SUMSQ, Op.MEAN):
            raise self.error(f"unknown reduction op {self.op}")
        self.axis = self.canonical_axis(bottom[0], p.axis)
        top[0].reshape(bottom[0].shape[: self.axis])
        self.num = bottom[0].count_range(0, self.axis)
        self.dim = bottom[0].count_range(self.axis)
        self.coeff = np.float32(p.coeff)
        if self.op == Op.MEAN:
            # Caffe folds the 1/dim into the float coefficient.
            self.coeff = np.float32(self.coeff / np.float32(self.dim))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.num, self.dim)
        out = top[0].data.reshape(self.num)
        if self.op in (Op.SUM, Op.MEAN):
            x.sum(axis=1, dtype=np.float32, out=out)
        elif self.op == Op.ASUM:
            np.abs(x).sum(axis=1, dtype=np.float32, out=out)
        else:
            np.einsum("ij,ij->i", x, x, out=out)
        if self.coeff != 1:
            out *= self.coeff

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        scale = top[0].diff.reshape(self.num, 1) * self.coeff
        dx = bottom[0].diff.reshape(self.num, self.dim)
        x = bottom[0].data.reshape(self.num, self.dim)
        if self.op in (Op.SUM, Op.MEAN):
            dx[...] = scale
        elif self.op == Op.ASUM:
            # caffe_cpu_sign: (0 < x) - (x < 0), so sign(0) = 0.
            sign = (x > 0).astype(np.float32) - (x < 0).astype(np.float32)
            np.multiply(sign, scale, out=dx)
        else:
            np.multiply(x, scale * np.float32(2), out=dx)


@register_layer("ArgMax", "ARGMAX")
class ArgMaxLayer(Layer):
    """Caffe type ``ArgMax``: the indices (and optionally values) of the ``top_k`` largest
    entries.

    Without ``axis``: each item's entries are flattened; the top is (N, 1, top_k) of indices,
    or (N, 2, top_k) with the indices in row 0 and the values in row 1 when ``out_max_val``
    (padded with trailing 1s to the bottom's number of axes, at least 3). With ``axis``: the top
    is the bottom's shape with ``top_k`` on that axis, holding the indices, or only the values
    when ``out_max_val``. Ties rank the larger index first (Caffe sorts (value, index) pairs
    with std::greater). Reads argmax_param: top_k (1), out_max_val (false), axis. No gradient.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.argmax_param
        self.top_k = int(p.top_k)
        if self.top_k < 1:
            raise self.error(f"top_k must not be less than 1, found {self.top_k}")
        self.out_max_val = p.out_max_val
        self.has_axis = p.HasField("axis")
        b = bottom[0]
        if self.has_axis:
            axis = self.canonical_axis(b, p.axis)
            if self.top_k > b.shape[axis]:
                raise self.error(f"top_k ({self.top_k}) must be less than or equal to the "
                                 f"dimension of the axis ({b.shape[axis]})")
            self.outer = b.count_range(0, axis)
            self.dim = b.shape[axis]
            self.inner = b.count_range(axis + 1)
            shape = list(b.shape)
            shape[axis] = self.top_k
        else:
            if b.num_axes < 1:
                raise self.error(f"needs a bottom with at least 1 axis, found {b.shape}")
            self.outer = b.shape[0]
            self.dim = b.count_range(1)
            self.inner = 1
            if self.top_k > self.dim:
                raise self.error(f"top_k ({self.top_k}) must be less than or equal to the "
                                 f"dimension of the flattened bottom blob per instance "
                                 f"({self.dim})")
            shape = [1] * max(b.num_axes, 3)
            shape[0] = b.shape[0]
            shape[2] = self.top_k
            if self.out_max_val:
                shape[1] = 2
        top[0].reshape(shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.outer, self.dim, self.inner)
        # Descending by value, ties by descending index: a stable ascending sort of the
        # negated values, with the candidates in reverse order.
        order = np.argsort(-x[:, ::-1, :], axis=1, kind="stable")[:, : self.top_k, :]
        index = (self.dim - 1) - order
        values = np.take_along_axis(x, index, axis=1)
        if not self.has_axis and self.out_max_val:
            out = top[0].data.reshape(self.outer, 2, self.top_k)
            out[:, 0, :] = index[:, :, 0]
            out[:, 1, :] = values[:, :, 0]
            return
        out = top[0].data.reshape(self.outer, self.top_k, self.inner)
        out[...] = values if self.out_max_val else index

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if any(propagate_down):
            raise self.error("ArgMax has no gradient; do not backpropagate through it")


def _integer_indices(layer: Layer, values: np.ndarray, limit: int, what: str) -> np.ndarray:
    """Integer-valued floats in [0, limit) as int64; anything else is the user's error."""
    bad = ~((values >= 0) & (values < limit) & (values == np.floor(values)))
    if bad.any():
        first = values[bad][0]
        raise layer.error(f"{what} must be integers in [0, {limit}), found {first:g}")
    return values.astype(np.int64)


@register_layer("Embed")
class EmbedLayer(Layer):
    """Caffe type ``Embed``: bottom of integer indices (any shape) -> top of shape
    ``bottom.shape + (num_output,)``, row ``weight[index]`` (+ bias) per index.

    Params: weight (input_dim, num_output), bias (num_output) when ``bias_term``. Reads
    embed_param: num_output, input_dim, bias_term (true), weight_filler, bias_filler. The
    gradient goes to the parameters only (indices have none).
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.embed_param
        self.num_output = int(p.num_output)
        self.input_dim = int(p.input_dim)
        if self.num_output <= 0:
            raise self.error("num_output must be given and positive")
        if self.input_dim <= 0:
            raise self.error("input_dim must be given and positive")
        self.bias_term = p.bias_term
        if self.blobs:
            return
        # The weight is the transpose of an InnerProduct's: one row per index.
        self.blobs = [self.make_param((self.input_dim, self.num_output), p.weight_filler,
                                      "weight_filler")]
        if self.bias_term:
            self.blobs.append(self.make_param((self.num_output,), p.bias_filler, "bias_filler"))
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, bottom: Blob) -> np.ndarray:
        return _integer_indices(self, bottom.data.reshape(-1), self.input_dim, "Embed inputs")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        index = self._indices(bottom[0])
        out = top[0].data.reshape(-1, self.num_output)
        np.take(self.blobs[0].data, index, axis=0, out=out)
        if self.bias_term:
            out += self.blobs[1].data

    def allow_force_backward(self, bottom_index: int) -> bool:
        return False  # the bottom holds indices

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            raise self.error("cannot backpropagate to the Embed input (it holds indices)")
        dy = top[0].diff.reshape(-1, self.num_output)
        if self.param_propagate_down[0]:
            scatter_add_rows(dy, self._indices(bottom[0]), self.blobs[0].diff)
        if self.bias_term and self.param_propagate_down[1]:
            self.blobs[1].diff += dy.sum(axis=0, dtype=np.float32)


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


@register_layer("Parameter")
class ParameterLayer(Layer):
    """Caffe type ``Parameter``: no bottoms; the top is a learned blob of
    ``parameter_param.shape``.

    As in Caffe the blob is not filled (zeros until weights are loaded), and the top shares both
    its data and its diff, so the gradient the next layer writes into the top *is* the
    parameter's gradient (overwritten, not accumulated, by that layer's backward).
    """

    exact_num_bottom_blobs = 0
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = tuple(int(d) for d in self.param.parameter_param.shape.dim)
        if not self.blobs:
            self.blobs = [Blob(shape)]
            self.param_propagate_down = [True]
        top[0].reshape(self.blobs[0].shape)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass  # the shape is fixed at setup

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        # Re-shared every pass: the parameter's arrays may have been replaced (test nets share
        # the train net's weights by rebinding them).
        top[0].share_data(self.blobs[0])
        top[0].share_diff(self.blobs[0])

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        pass  # the top's diff is the parameter's diff
