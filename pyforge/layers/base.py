"""The Layer contract (Caffe's Layer<Dtype>) and the layer registry.

A layer owns its parameter blobs (``self.blobs``, in Caffe's order) and any buffers. The net
calls ``setup`` once, then for every pass ``reshape`` + ``forward`` and, when backward is needed,
``backward``. ``backward`` *overwrites* bottom diffs but *adds* into parameter diffs, which is
what makes ``iter_size`` accumulation and shared parameters work; the solver zeroes parameter
diffs at the start of each iteration.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..blob import Blob
from ..errors import NetError
from ..fillers import fill
from ..proto import caffe_pb2
from ..registry import Registry

TRAIN = caffe_pb2.TRAIN
TEST = caffe_pb2.TEST
Norm = caffe_pb2.LossParameter


@dataclass
class NetContext:
    """What a layer may use from its net: phase, randomness, logging and file locations."""

    phase: int
    rng: np.random.Generator
    logger: logging.Logger
    #: The prototxt the net came from; paths in layer params are tried next to it as a fallback.
    source_file: str | None = None
    #: Cache shared by the layers of one net (for example an opened database).
    shared: dict = field(default_factory=dict)


class Layer(abc.ABC):
    """Base class of every layer type; subclasses set ``type_name`` and the arity limits."""

    type_name: ClassVar[str] = ""
    exact_num_bottom_blobs: ClassVar[int] = -1
    min_bottom_blobs: ClassVar[int] = -1
    max_bottom_blobs: ClassVar[int] = -1
    exact_num_top_blobs: ClassVar[int] = -1
    min_top_blobs: ClassVar[int] = -1
    max_top_blobs: ClassVar[int] = -1
    equal_num_bottom_top_blobs: ClassVar[bool] = False
    #: Loss layers create their missing tops automatically (anonymous, never net outputs).
    auto_top_blobs: ClassVar[bool] = False

    def __init__(self, param: caffe_pb2.LayerParameter, ctx: NetContext) -> None:
        self.param = param
        self.ctx = ctx
        self.phase = param.phase
        self.blobs: list[Blob] = []
        self.param_propagate_down: list[bool] = []
        self.loss_weights: list[float] = []
        self._scratch: dict[str, np.ndarray] = {}

    # --- identity --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.param.name

    @property
    def type(self) -> str:
        """The Caffe type string (pycaffe's ``layer.type``)."""
        return self.type_name

    @property
    def where(self) -> str:
        return f"layer '{self.param.name}' ({self.type_name})"

    def error(self, message: str) -> NetError:
        return NetError(f"{self.where}: {message}")

    # --- setup -----------------------------------------------------------------------------
    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Caffe's Layer::SetUp: check blob counts, LayerSetUp, Reshape, set loss weights."""
        self.check_blob_counts(bottom, top)
        self.layer_setup(bottom, top)
        self.reshape(bottom, top)
        self.set_loss_weights(top)

    def check_blob_counts(self, bottom: list[Blob], top: list[Blob]) -> None:
        def check(kind: str, n: int, exact: int, lo: int, hi: int) -> None:
            if exact >= 0 and n != exact:
                raise self.error(f"takes exactly {exact} {kind} blob(s), found {n}")
            if lo >= 0 and n < lo:
                raise self.error(f"takes at least {lo} {kind} blob(s), found {n}")
            if hi >= 0 and n > hi:
                raise self.error(f"takes at most {hi} {kind} blob(s), found {n}")

        check("bottom", len(bottom), self.exact_num_bottom_blobs, self.min_bottom_blobs,
              self.max_bottom_blobs)
        check("top", len(top), self.exact_num_top_blobs, self.min_top_blobs, self.max_top_blobs)
        if self.equal_num_bottom_top_blobs and len(bottom) != len(top):
            raise self.error(
                f"needs as many top as bottom blobs, found {len(bottom)} bottom, {len(top)} top"
            )

    def set_loss_weights(self, top: list[Blob]) -> None:
        """Write each top's loss weight into its diff (Caffe keeps it there for Backward)."""
        weights = list(self.param.loss_weight)
        if weights and len(weights) != len(top):
            raise self.error(
                f"loss_weight must be unspecified or given once per top blob: "
                f"{len(weights)} loss_weight(s) for {len(top)} top(s)"
            )
        self.loss_weights = weights + [0.0] * (len(top) - len(weights))
        for blob, weight in zip(top, self.loss_weights):
            if weight != 0:
                blob.diff[...] = np.float32(weight)

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        """One-time setup from the layer parameters (create and fill param blobs)."""

    @abc.abstractmethod
    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Shape the tops (and internal buffers) for the bottoms' current shapes."""

    @abc.abstractmethod
    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Compute the tops' data from the bottoms' data."""

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        """Compute bottom diffs (overwrite) and param diffs (accumulate)."""

    def allow_force_backward(self, bottom_index: int) -> bool:
        return True

    # --- exact resume --------------------------------------------------------------------------
    def get_state(self) -> dict | None:
        """The layer's position and random state, JSON-serialisable, or None if it has none.

        Layers that read data or draw random numbers during training override this pair, so
        that a resumed run continues exactly where the snapshot was taken."""
        return None

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned."""

    # --- helpers -----------------------------------------------------------------------------
    def scratch(self, key: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """A work array of ``shape`` (float32 unless said) kept between passes, reallocated
        only when the shape changes; its contents are whatever the last user left."""
        buf = self._scratch.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            self._scratch[key] = buf
        return buf

    def make_param(self, shape, filler: caffe_pb2.FillerParameter, what: str) -> Blob:
        """A new parameter blob of ``shape`` filled by ``filler`` from the net's generator."""
        blob = Blob(shape)
        fill(blob, filler, self.ctx.rng, f"{self.where} {what}")
        return blob

    def integer_indices(self, values: np.ndarray, limit: int, what: str) -> np.ndarray:
        """Integer-valued floats in [0, limit) as int64; anything else is the user's error."""
        bad = ~((values >= 0) & (values < limit) & (values == np.floor(values)))
        if bad.any():
            first = values[bad][0]
            raise self.error(f"{what} must be integers in [0, {limit}), found {first:g}")
        return values.astype(np.int64)

    def canonical_axis(self, blob: Blob, axis: int, what: str = "axis") -> int:
        ndim = blob.num_axes
        if not -ndim <= axis < ndim:
            raise self.error(f"{what} {axis} is out of range for a {ndim}-axis bottom {blob.shape}")
        return axis % ndim if ndim else 0


LAYERS: Registry[type[Layer]] = Registry("layer type")


def register_layer(name: str, *aliases: str):
    """Class decorator: register a Layer subclass under its Caffe type string."""

    def decorate(cls: type[Layer]) -> type[Layer]:
        cls.type_name = name
        LAYERS.register(name, *aliases)(cls)
        return cls

    return decorate


class NeuronLayer(Layer):
    """One bottom, one top of the same shape; may run in place."""

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape_like(bottom[0])


class BaseDataLayer(Layer):
    """A layer that reads batches from a dataset (Caffe's BaseDataLayer): no bottoms.

    The declared interface the solver and the tools rely on: ``batch_size`` (items per
    forward) and :attr:`dataset_size` (items in one pass over the data, 0 when unknown), so
    that ``test_iter`` x batch can be compared with the dataset. Subclasses read their own
    ``*_data_param`` and set ``batch_size`` through :meth:`check_batch_size`.
    """

    exact_num_bottom_blobs = 0
    batch_size: int = 0

    def check_batch_size(self, value: int, field: str) -> int:
        """``value`` of ``<field>.batch_size`` as a positive int, or one error naming it."""
        if value <= 0:
            raise self.error(f"{field}.batch_size must be given and positive, found {value}")
        return int(value)

    @property
    def dataset_size(self) -> int:
        """Items in one pass over the data; 0 when the layer cannot tell."""
        return 0


def loss_normalizer(mode: int, outer: int, inner: int, valid: int) -> float:
    """Caffe's LossLayer::GetNormalizer for normalization ``mode`` over ``outer`` x ``inner``
    entries of which ``valid`` are not ignored: FULL, VALID, BATCH_SIZE or NONE, at least 1."""
    if mode == Norm.FULL:
        value = outer * inner
    elif mode == Norm.VALID:
        value = valid
    elif mode == Norm.BATCH_SIZE:
        value = outer
    else:
        value = 1
    return float(max(1.0, value))


class LossLayer(Layer):
    """Two bottoms (prediction, target) with equal first dimension; a scalar loss top."""

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1
    auto_top_blobs = True

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        # Caffe adds the implicit loss_weight of 1 to the layer's own parameter here, after
        # InsertSplits has run (so splits only see explicit loss weights).
        if not len(self.param.loss_weight):
            self.param.loss_weight.append(1.0)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise self.error(
                f"the bottoms must have the same first dimension (num), found "
                f"{bottom[0].shape} and {bottom[1].shape}"
            )
        top[0].reshape(())

    def allow_force_backward(self, bottom_index: int) -> bool:
        # The target/label bottom never receives a gradient.
        return bottom_index != 1
