"""Layers that move data without arithmetic on it (Split, Flatten, Reshape, Concat, Slice,
Silence) and Eltwise."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..proto import caffe_pb2
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
            np.concatenate([b.data for b in bottom], axis=self.axis, out=top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if len(bottom) == 1:
            return
        offset = 0
        index = [slice(None)] * top[0].num_axes
        for b, down in zip(bottom, propagate_down):
            size = b.shape[self.axis]
            if down:
                index[self.axis] = slice(offset, offset + size)
                b.diff[...] = top[0].diff[tuple(index)]
            offset += size


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

    def _index(self, lo: int, hi: int, ndim: int) -> tuple:
        index = [slice(None)] * ndim
        index[self.axis] = slice(lo, hi)
        return tuple(index)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(top) == 1:
            return
        for t, lo, hi in zip(top, self.bounds, self.bounds[1:]):
            t.data[...] = bottom[0].data[self._index(lo, hi, bottom[0].num_axes)]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0] or len(top) == 1:
            return
        for t, lo, hi in zip(top, self.bounds, self.bounds[1:]):
            bottom[0].diff[self._index(lo, hi, bottom[0].num_axes)] = t.diff


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


E = caffe_pb2.EltwiseParameter


@register_layer("Eltwise", "ELTWISE")
class EltwiseLayer(Layer):
    """Caffe type ``Eltwise``: elementwise PROD, SUM (with one ``coeff`` per bottom) or MAX of
    two or more bottoms of one shape. MAX routes the gradient to the first maximal bottom."""

    min_bottom_blobs = 2
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.eltwise_param
        if len(p.coeff) and p.operation != E.SUM:
            raise self.error("coeff is only used by the SUM operation")
        if len(p.coeff) and len(p.coeff) != len(bottom):
            raise self.error(f"give one coeff per bottom: {len(p.coeff)} coeff(s) for "
                             f"{len(bottom)} bottoms")
        self.coeffs = [np.float32(c) for c in p.coeff] or [np.float32(1)] * len(bottom)
        self.op = p.operation
        self.stable_prod_grad = p.stable_prod_grad

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for i, b in enumerate(bottom[1:], start=1):
            if b.shape != bottom[0].shape:
                raise self.error(f"bottom {i} has shape {b.shape}, bottom 0 has "
                                 f"{bottom[0].shape}; all must match")
        top[0].reshape_like(bottom[0])
        if self.op == E.MAX:
            self.argmax = np.zeros(bottom[0].shape, dtype=np.int32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        out = top[0].data
        if self.op == E.PROD:
            np.multiply(bottom[0].data, bottom[1].data, out=out)
            for b in bottom[2:]:
                out *= b.data
        elif self.op == E.SUM:
            np.multiply(bottom[0].data, self.coeffs[0], out=out)
            for b, c in zip(bottom[1:], self.coeffs[1:]):
                out += c * b.data if c != 1 else b.data
        else:
            # Caffe's quirk: bottom 0 wins over bottom 1 only when strictly greater (a tie or a
            # NaN goes to bottom 1); from bottom 2 on, a later bottom must be strictly greater.
            first = bottom[0].data > bottom[1].data
            np.copyto(out, np.where(first, bottom[0].data, bottom[1].data))
            self.argmax[...] = np.where(first, 0, 1)
            for i, b in enumerate(bottom[2:], start=2):
                better = b.data > out
                out[better] = b.data[better]
                self.argmax[better] = i

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff
        for i, b in enumerate(bottom):
            if not propagate_down[i]:
                continue
            if self.op == E.PROD:
                if self.stable_prod_grad:
                    prod = np.ones_like(dy)
                    for j, other in enumerate(bottom):
                        if j != i:
                            prod *= other.data
                else:
                    with np.errstate(divide="ignore", invalid="ignore"):  # Caffe: inf/NaN
                        prod = top[0].data / b.data
                np.multiply(prod, dy, out=b.diff)
            elif self.op == E.SUM:
                np.multiply(dy, self.coeffs[i], out=b.diff)
            else:
                np.multiply(dy, self.argmax == i, out=b.diff)
