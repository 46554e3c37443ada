"""Blob: a float32 array of data and one of gradients ("diff"), as in Caffe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .proto import caffe_pb2
from .proto.wire import blob_chunks

DTYPE = np.float32


class Blob:
    """Holds ``data`` and ``diff`` arrays of one shape.

    Layers read and write the arrays in place. Blobs that share memory (in-place layers, shared
    parameters, test nets sharing the train net's weights) share the ndarray objects themselves,
    so every write must be in place (``out=`` or slice assignment), never a rebinding.

    A net may leave a blob's data uncomputed when nothing in it reads the blob (a convolution
    whose BatchNorm writes a new blob, :mod:`pyforge.net.fusion`): it then hands the blob a
    ``recompute`` function (:meth:`defer`), which reading ``data`` runs first. Reading ``data``
    also marks the blob ``observed``, and the net computes observed blobs on every pass from
    then on, so an array taken from ``data`` stays current (the one difference from Caffe
    that remains is in :mod:`pyforge.net.fusion`).
    """

    __slots__ = ("_data", "diff", "_recompute", "observed")

    def __init__(self, shape: Sequence[int] = ()) -> None:
        shape = tuple(int(d) for d in shape)
        self._data = np.zeros(shape, dtype=DTYPE)
        self.diff = np.zeros(shape, dtype=DTYPE)
        self._recompute = None
        self.observed = False

    @property
    def data(self) -> np.ndarray:
        self.observed = True
        self.settle()
        return self._data

    def computed(self) -> np.ndarray:
        """The data with any pending recompute run, for a layer of the net reading its
        bottom: unlike ``data`` it does not mark the blob ``observed`` (the layer keeps no
        array that must stay current)."""
        self.settle()
        return self._data

    def settle(self) -> None:
        """Run a pending recompute now (without counting as a read)."""
        if self._recompute is not None:
            recompute, self._recompute = self._recompute, None
            recompute()

    @data.setter
    def data(self, array: np.ndarray) -> None:
        self._data = array
        self._recompute = None

    def output_array(self) -> np.ndarray:
        """The data array, for a layer about to overwrite all of it (or to leave it for
        :meth:`defer`): drops any pending recompute and does not count as a read."""
        self._recompute = None
        return self._data

    def defer(self, recompute) -> None:
        """Leave the data uncomputed until it is read; ``recompute()`` then fills it in."""
        self._recompute = recompute

    @property
    def pending(self):
        """The recompute the data waits for (:meth:`defer`), or None."""
        return self._recompute

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def count(self) -> int:
        return int(self._data.size)

    @property
    def num_axes(self) -> int:
        return self._data.ndim

    def shape_at(self, axis: int) -> int:
        return self._data.shape[self.canonical_axis(axis)]

    def canonical_axis(self, axis: int) -> int:
        """Caffe's CanonicalAxisIndex: negative axes count from the end."""
        ndim = self._data.ndim
        if not -ndim <= axis < max(ndim, 1):
            raise IndexError(f"axis {axis} out of range for a {ndim}-axis blob {self.shape}")
        return axis + ndim if axis < 0 else axis

    def count_range(self, start: int, end: int | None = None) -> int:
        """Product of the dimensions in ``[start, end)``."""
        dims = self._data.shape[start:end]
        return int(np.prod(dims, dtype=np.int64)) if dims else 1

    @property
    def num(self) -> int:
        """Legacy 4-D accessors (pycaffe): dimension 0..3, or 1 where the blob has fewer axes."""
        return self._legacy_dim(0)

    @property
    def channels(self) -> int:
        return self._legacy_dim(1)

    @property
    def height(self) -> int:
        return self._legacy_dim(2)

    @property
    def width(self) -> int:
        return self._legacy_dim(3)

    def _legacy_dim(self, index: int) -> int:
        if self._data.ndim > 4:
            raise ValueError(f"legacy num/channels/height/width need <= 4 axes, blob has "
                             f"shape {self.shape}")
        return self._data.shape[index] if index < self._data.ndim else 1

    def reshape(self, *shape) -> None:
        """Give the blob a new shape: ``reshape((2, 3))`` or pycaffe's ``reshape(2, 3)``.

        Contents are kept only when the element count is unchanged."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        shape = tuple(int(d) for d in shape)
        if shape == self._data.shape:
            return
        if any(d < 0 for d in shape):
            raise ValueError(f"negative dimension in blob shape {shape}")
        # (a pending recompute is dropped: it was for the old shape)
        if self._data.size == int(np.prod(shape, dtype=np.int64)):
            self.data = self._data.reshape(shape)
            self.diff = self.diff.reshape(shape)
        else:
            self.data = np.zeros(shape, dtype=DTYPE)
            self.diff = np.zeros(shape, dtype=DTYPE)

    def reshape_like(self, other: Blob) -> None:
        self.reshape(other.shape)

    def share_data(self, other: Blob) -> None:
        """Use ``other``'s data array (Caffe ShareData); shapes must have equal counts."""
        if self.count != other.count:
            raise ValueError(f"cannot share data of {other.shape} with {self.shape}")
        self.data = other.data if other.shape == self.shape else other.data.reshape(self.shape)

    def share_diff(self, other: Blob) -> None:
        if self.count != other.count:
            raise ValueError(f"cannot share diff of {other.shape} with {self.shape}")
        self.diff = other.diff if other.shape == self.shape else other.diff.reshape(self.shape)

    def shape_string(self) -> str:
        """Caffe's shape_string: ``"64 1 28 28 (50176)"``; a scalar is ``"(1)"``."""
        dims = " ".join(str(d) for d in self.shape)
        return f"{dims} ({self.count})" if dims else f"({self.count})"

    def asum_data(self) -> float:
        return float(np.abs(self.data, dtype=np.float64).sum()) if self.count else 0.0

    def asum_diff(self) -> float:
        return float(np.abs(self.diff, dtype=np.float64).sum()) if self.count else 0.0

    def sumsq_data(self) -> float:
        flat = self.data.ravel()
        return float(np.dot(flat, flat)) if self.count else 0.0

    def sumsq_diff(self) -> float:
        flat = self.diff.ravel()
        return float(np.dot(flat, flat)) if self.count else 0.0

    # --- protobuf -------------------------------------------------------------------------
    def to_proto(self, write_diff: bool = False) -> caffe_pb2.BlobProto:
        proto = caffe_pb2.BlobProto()
        proto.shape.dim.extend(self.shape)
        proto.data.extend(self.data.ravel())
        if write_diff:
            proto.diff.extend(self.diff.ravel())
        return proto

    def to_chunks(self, write_diff: bool = False) -> list:
        """The serialized BlobProto of :meth:`to_proto`, as chunks of bytes that reference the
        arrays' memory (see :mod:`pyforge.proto.wire`)."""
        return blob_chunks(self.shape, self.data, self.diff if write_diff else None)

    def from_proto(self, proto: caffe_pb2.BlobProto, reshape: bool = True) -> None:
        """Load data (and diff, if present) from a BlobProto (float or double fields)."""
        shape = proto_shape(proto)
        if reshape:
            self.reshape(shape)
        elif not shapes_equal(proto, self.shape):
            raise ValueError(f"shape mismatch: {shape} vs {self.shape}")
        values = proto_values(proto, "data")
        if values is not None:
            self.data[...] = values.reshape(self.shape)
        diff = proto_values(proto, "diff")
        if diff is not None and diff.size:
            self.diff[...] = diff.reshape(self.shape)


class CopyBack:
    """A recompute for a blob whose values its producer wrote elsewhere instead: into
    ``band``, a band of columns of another array viewed in 2-D (a convolution filling its
    part of a Concat's top, :mod:`pyforge.net.fusion`). Reading the blob copies them back."""

    __slots__ = ("blob", "band")

    def __init__(self, blob: Blob, band: np.ndarray) -> None:
        self.blob, self.band = blob, band

    def __call__(self) -> None:
        self.blob.output_array().reshape(self.band.shape)[...] = self.band

    def is_at(self, band: np.ndarray) -> bool:
        """Whether the values were written into exactly this view."""
        return (self.band.shape == band.shape and self.band.strides == band.strides
                and self.band.ctypes.data == band.ctypes.data)


def mean_abs(array: np.ndarray, dtype: type[np.floating] = np.float64) -> np.floating:
    """The mean of ``|array|``, summed in float64 and returned as ``dtype`` (0 when empty).

    Caffe's debug_info prints ``asum_data() / count()`` in the blob's type, so the net asks
    for np.float32 to print Caffe's numbers exactly; the solver's divergence report keeps
    float64."""
    if array.size == 0:
        return dtype(0)
    with np.errstate(over="ignore"):
        return dtype(np.abs(array).sum(dtype=np.float64) / array.size)


def proto_shape(proto: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """A BlobProto's shape: the ``shape`` message, or the legacy num/channels/height/width."""
    if proto.HasField("shape"):
        return tuple(int(d) for d in proto.shape.dim)
    if any(proto.HasField(f) for f in ("num", "channels", "height", "width")):
        return (proto.num, proto.channels, proto.height, proto.width)
    return ()


def shapes_equal(proto: caffe_pb2.BlobProto, shape: Sequence[int]) -> bool:
    """Caffe's Blob::ShapeEquals: legacy 4-D shapes compare right-aligned, padded with 1s."""
    shape = tuple(shape)
    if proto.HasField("shape"):
        return tuple(proto.shape.dim) == shape
    if len(shape) > 4:
        return False
    legacy = (proto.num, proto.channels, proto.height, proto.width)
    padded = (1,) * (4 - len(shape)) + shape
    return legacy == padded


def proto_values(proto: caffe_pb2.BlobProto, which: str) -> np.ndarray | None:
    """The float32 values of ``data`` or ``diff`` (reading ``double_*`` if that is what is set)."""
    single = getattr(proto, which)
    if len(single):
        return np.array(single, dtype=DTYPE)
    double = getattr(proto, "double_" + which)
    if len(double):
        with np.errstate(over="ignore"):  # Caffe's cast turns out-of-range values into inf
            return np.array(double, dtype=np.float64).astype(DTYPE)
    return None


@dataclass
class BlobValues:
    """A blob as a file holds it: the shape fields of its BlobProto (``header``, any values
    in it are ignored) and its values as flat float32 arrays (None where the file has none)."""

    header: caffe_pb2.BlobProto
    data: np.ndarray | None
    diff: np.ndarray | None

    @classmethod
    def from_proto(cls, proto: caffe_pb2.BlobProto) -> BlobValues:
        return cls(proto, proto_values(proto, "data"), proto_values(proto, "diff"))

    @classmethod
    def from_arrays(cls, header: caffe_pb2.BlobProto, arrays: dict) -> BlobValues:
        """What :func:`pyforge.proto.wire.parse_with_arrays` found for ``header``; values a
        writer left unpacked are still in the header."""
        data, diff = arrays.get("data"), arrays.get("diff")
        return cls(header, proto_values(header, "data") if data is None else data,
                   proto_values(header, "diff") if diff is None else diff)
