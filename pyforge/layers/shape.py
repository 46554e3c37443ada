"""Layers that move data without arithmetic on it: Split, Flatten, Reshape, Concat, Slice,
Silence, Crop, Tile, and the forks' Permute (SSD) and ShuffleChannel (ShuffleNet).
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob, CopyBack
from ..kernels.blocks import copy_columns
from .base import Layer, register_layer


@register_layer("Split", "SPLIT")
class SplitLayer(Layer):
    """Caffe type ``Split`` (inserted automatically): every top shares the bottom's data;
    backward sums the top diffs."""

    exact_num_bottom_blobs = 1
    min_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for i, t in enumerate(top):
            if t is bottom[0]:
                raise self.error(f"top {i} is its bottom; Split does not work in place")
            t.reshape_like(bottom[0])
            t.share_data(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t in top:
            if t.data is not bottom[0].data:  # the bottom was reallocated since reshape
                t.share_data(bottom[0])

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        out = bottom[0].diff
        if len(top) == 1:
            out[...] = top[0].diff
            return
        np.add(top[0].diff, top[1].diff, out=out)
        for t in top[2:]:
            out += t.diff


@register_layer("Flatten", "FLATTEN")
class FlattenLayer(Layer):
    """Caffe type ``Flatten``: axes [axis, end_axis] become one; the data is shared."""

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("Flatten does not work in place")
        p = self.param.flatten_param
        start = self.canonical_axis(bottom[0], p.axis, "axis")
        end = self.canonical_axis(bottom[0], p.end_axis, "end_axis")
        if start > end + 1:
            raise self.error(f"axis {p.axis} comes after end_axis {p.end_axis} for bottom "
                             f"{bottom[0].shape}")
        shape = bottom[0].shape
        top[0].reshape(shape[:start] + (bottom[0].count_range(start, end + 1),) + shape[end + 1 :])
        top[0].share_data(bottom[0])
        top[0].share_diff(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass  # top shares the bottom's memory

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        pass  # diff memory is shared too


@register_layer("Reshape")
class ReshapeLayer(Layer):
    """Caffe type ``Reshape``: reshape_param.shape with 0 = copy a dimension, -1 = infer one;
    ``axis`` and ``num_axes`` choose the range of bottom axes replaced."""

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("Reshape does not work in place")
        dims = list(self.param.reshape_param.shape.dim)
        if sum(1 for d in dims if d == -1) > 1:
            raise self.error("at most one dimension of the new shape may be -1")
        if any(d < -1 for d in dims):
            raise self.error(f"shape dimensions must be >= -1, found {dims}")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.reshape_param
        dims = list(p.shape.dim)
        in_shape = bottom[0].shape
        ndim = len(in_shape)
        start = p.axis if p.axis >= 0 else ndim + p.axis + 1
        if not 0 <= start <= ndim:
            raise self.error(f"axis {p.axis} out of range for bottom {in_shape}")
        if p.num_axes < -1:
            raise self.error(f"num_axes must be >= -1, found {p.num_axes}")
        end = ndim if p.num_axes == -1 else start + p.num_axes
        if end > ndim:
            raise self.error(f"axis {p.axis} + num_axes {p.num_axes} exceed bottom {in_shape}")
        new = list(in_shape[:start])
        for i, d in enumerate(dims):
            if d == 0:
                if start + i >= ndim:
                    raise self.error(f"dimension {i} is 0 (copy) but the bottom has no axis "
                                     f"{start + i}")
                new.append(in_shape[start + i])
            else:
                new.append(d)
        new += list(in_shape[end:])
        if -1 in new:
            known = int(np.prod([d for d in new if d != -1], dtype=np.int64))
            if known == 0 or bottom[0].count % known:
                raise self.error(f"cannot infer the -1 dimension: bottom {in_shape} has "
                                 f"{bottom[0].count} elements")
            new[new.index(-1)] = bottom[0].count // known
        if int(np.prod(new, dtype=np.int64)) != bottom[0].count:
            raise self.error(f"output count must match input count: {in_shape} -> {tuple(new)}")
        top[0].reshape(new)
        top[0].share_data(bottom[0])
        top[0].share_diff(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        pass


def _legacy_axis(layer: Layer, message, axis_field: str, legacy_field: str, blob: Blob) -> int:
    """Concat/Slice: ``axis`` (default 1) or the deprecated concat_dim / slice_dim."""
    if message.HasField(legacy_field):
        if message.HasField(axis_field):
            raise layer.error(f"either {axis_field} or {legacy_field} may be given, not both")
        axis = int(getattr(message, legacy_field))
        if not 0 <= axis < blob.num_axes:
            raise layer.error(f"{legacy_field} {axis} out of range for a {blob.num_axes}-axis "
                              f"bottom {blob.shape}")
        return axis
    return layer.canonical_axis(blob, getattr(message, axis_field))


def _column_bands(parts: list[Blob], whole: Blob, axis: int):
    """Concat's bottoms (Slice's tops) as bands of columns of the top (bottom) viewed in 2-D,
    rows = the axes before ``axis``: (part, its 2-D shape, its first column, the whole's 2-D
    shape)."""
    rows = int(np.prod(whole.shape[:axis], dtype=np.int64))
    whole_2d = (rows, whole.count // rows if rows else 0)
    offset = 0
    for part in parts:
        width = part.count // rows if rows else 0
        yield part, (rows, width), offset, whole_2d
        offset += width


@register_layer("Concat", "CONCAT")
class ConcatLayer(Layer):
    """Caffe type ``Concat``: join the bottoms along concat_param.axis (1)."""

    min_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.concat_param
        self.axis = _legacy_axis(self, p, "axis", "concat_dim", bottom[0])
        ref = bottom[0].shape
        total = 0
        for i, b in enumerate(bottom):
            if b.num_axes != len(ref) or b.shape[: self.axis] != ref[: self.axis] or (
                b.shape[self.axis + 1 :] != ref[self.axis + 1 :]
            ):
                raise self.error(f"all bottoms must match except along axis {self.axis}: "
                                 f"bottom 0 {ref}, bottom {i} {b.shape}")
            total += b.shape[self.axis]
        top[0].reshape(ref[: self.axis] + (total,) + ref[self.axis + 1 :])
        if len(bottom) == 1:
            top[0].share_data(bottom[0])
            top[0].share_diff(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(bottom) > 1:
            for b, shape, offset, top_2d in _column_bands(bottom, top[0], self.axis):
                whole = top[0].data.reshape(top_2d)
                pending = b.pending
                if isinstance(pending, CopyBack) and pending.is_at(
                        whole[:, offset:offset + shape[1]]):
                    continue  # its producer wrote it here this pass (pyforge.net.fusion)
                # (a read that does not stop the producer writing here on the next pass)
                copy_columns(b.computed().reshape(shape), 0, whole, offset, shape[1])

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if len(bottom) == 1:
            return
        bands = _column_bands(bottom, top[0], self.axis)
        for (b, shape, offset, top_2d), down in zip(bands, propagate_down):
            if down:
                copy_columns(top[0].diff.reshape(top_2d), offset, b.diff.reshape(shape), 0,
                             shape[1])


@register_layer("Slice", "SLICE")
class SliceLayer(Layer):
    """Caffe type ``Slice``: cut the bottom along slice_param.axis (1) at slice_point(s), or
    into equal parts when none are given."""

    exact_num_bottom_blobs = 1
    min_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.slice_param
        self.axis = _legacy_axis(self, p, "axis", "slice_dim", bottom[0])
        size = bottom[0].shape[self.axis]
        points = list(p.slice_point)
        if points:
            if len(points) != len(top) - 1:
                raise self.error(f"{len(points)} slice_point(s) for {len(top)} tops; "
                                 f"need exactly {len(top) - 1}")
            bounds = [0] + points + [size]
            if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
                raise self.error(f"slice points {points} must increase within (0, {size})")
        else:
            if size % len(top):
                raise self.error(f"axis {self.axis} of size {size} does not split evenly into "
                                 f"{len(top)} tops")
            step = size // len(top)
            bounds = [i * step for i in range(len(top) + 1)]
        self.bounds = bounds
        shape = bottom[0].shape
        for t, lo, hi in zip(top, bounds, bounds[1:]):
            t.reshape(shape[: self.axis] + (hi - lo,) + shape[self.axis + 1 :])
        if len(top) == 1:
            top[0].share_data(bottom[0])
            top[0].share_diff(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(top) == 1:
            return
        for t, shape, offset, bottom_2d in _column_bands(top, bottom[0], self.axis):
            copy_columns(bottom[0].data.reshape(bottom_2d), offset, t.data.reshape(shape), 0,
                         shape[1])

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0] or len(top) == 1:
            return
        for t, shape, offset, bottom_2d in _column_bands(top, bottom[0], self.axis):
            copy_columns(t.diff.reshape(shape), 0, bottom[0].diff.reshape(bottom_2d), offset,
                         shape[1])


@register_layer("Silence", "SILENCE")
class SilenceLayer(Layer):
    """Caffe type ``Silence``: consumes bottoms so they are not net outputs; no tops."""

    min_bottom_blobs = 1
    exact_num_top_blobs = 0

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        for b, down in zip(bottom, propagate_down):
            if down:
                b.diff[...] = 0


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


@register_layer("Permute")
class PermuteLayer(Layer):
    """SSD type ``Permute``: reorders the axes. permute_param.order lists the new axes
    (each once, each < the number of axes); the axes it leaves out follow in their order."""

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        num_axes = bottom[0].num_axes
        order = list(self.param.permute_param.order)
        for axis in order:
            if axis >= num_axes:
                raise self.error(f"order {axis} is not less than the bottom's {num_axes} axes "
                                 f"{bottom[0].shape}")
        if len(set(order)) != len(order):
            raise self.error(f"there are duplicate orders in {order}")
        self.order = tuple(order + [axis for axis in range(num_axes) if axis not in order])
        self.inverse = tuple(int(i) for i in np.argsort(self.order))

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("cannot run in place (its top must be another blob)")
        if bottom[0].num_axes != len(self.order):
            raise self.error(f"the bottom has {bottom[0].num_axes} axes, set up for "
                             f"{len(self.order)}")
        top[0].reshape(*(bottom[0].shape[axis] for axis in self.order))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        np.copyto(top[0].data, bottom[0].data.transpose(self.order))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            np.copyto(bottom[0].diff, top[0].diff.transpose(self.inverse))


@register_layer("ShuffleChannel")
class ShuffleChannelLayer(Layer):
    """Caffe type ``ShuffleChannel`` (farmingyard/ShuffleNet): bottom (N, C, ...) -> top of
    the same shape with the channels of ``group`` groups interleaved: output channel
    ``j * group + i`` is input channel ``i * (C / group) + j``. Reads shuffle_channel_param:
    group (default 1; must divide C). Backward applies the inverse permutation.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.group = int(self.param.shuffle_channel_param.group)
        if self.group <= 0:
            raise self.error(f"shuffle_channel_param.group must be > 0, found {self.group}")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes < 2 or bottom[0].shape[1] % self.group:
            raise self.error(f"group {self.group} must divide the channels (axis 1) of the "
                             f"bottom {bottom[0].shape}")
        if top[0] is bottom[0]:
            raise self.error("cannot run in place: the output is a permutation of the input")
        top[0].reshape(bottom[0].shape)

    def _grouped(self, array: np.ndarray) -> np.ndarray:
        """(N, C, S) viewed as (N, group, C / group, S)."""
        n, c = array.shape[:2]
        return array.reshape(n, self.group, c // self.group, -1)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        # (N, g, C/g, S) -> (N, C/g, g, S): one strided copy.
        grouped = self._grouped(bottom[0].data)
        out = top[0].data.reshape(grouped.shape[0], grouped.shape[2], self.group, -1)
        np.copyto(out, grouped.transpose(0, 2, 1, 3))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            grouped = self._grouped(bottom[0].diff)
            dy = top[0].diff.reshape(grouped.shape[0], grouped.shape[2], self.group, -1)
            np.copyto(grouped, dy.transpose(0, 2, 1, 3))
