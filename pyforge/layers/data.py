"""Layers that produce batches: Input, DummyData, Parameter, Data (LMDB/LevelDB of Datum
records) and MemoryData, with the bases of the data layers that read records ahead of time.

HDF5Data and HDF5Output are in ``hdf5.py``; ImageData and WindowData in ``image_data.py``.
"""

from __future__ import annotations

import abc

import numpy as np

from ..blob import Blob
from ..errors import DataError
from ..fillers import fill
from ..io.datum import datum_array, parse_datum
from ..io.db import open_reader
from ..io.prefetch import Prefetcher
from ..io.transform import DataTransformer
from ..proto import caffe_pb2, resolve_path
from ..rng import child_rng
from .base import BaseDataLayer, Layer, register_layer


@register_layer("Input")
class InputLayer(Layer):
    """Caffe type ``Input``: tops whose data is set from outside (deploy nets, pycaffe).

    input_param.shape: none (shapes set later), one for all tops, or one per top.
    """

    exact_num_bottom_blobs = 0
    min_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        shapes = [list(s.dim) for s in self.param.input_param.shape]
        if shapes and len(shapes) not in (1, len(top)):
            raise self.error(f"give 0, 1 or {len(top)} shapes (one per top), found {len(shapes)}")
        for i, t in enumerate(top):
            if shapes:
                shape = shapes[0] if len(shapes) == 1 else shapes[i]
                if any(d < 0 for d in shape):
                    raise self.error(f"shape {shape} has a negative dimension")
                t.reshape(shape)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass  # tops are reshaped by whoever feeds them

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass


@register_layer("DummyData", "DUMMY_DATA")
class DummyDataLayer(Layer):
    """Caffe type ``DummyData``: tops filled by data_filler (constant fillers once at setup,
    the others at every forward). Shapes from ``shape`` or legacy num/channels/height/width.

    Any filler type works (constant, uniform, gaussian, positive_unitball, xavier, msra,
    bilinear), with the checks that filler makes of the top's shape."""

    exact_num_bottom_blobs = 0
    min_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.dummy_data_param
        n_top = len(top)
        legacy = [len(p.num), len(p.channels), len(p.height), len(p.width)]
        if len(p.shape) and any(legacy):
            raise self.error("give either shape or num/channels/height/width, not both")
        if len(p.shape):
            if len(p.shape) not in (1, n_top):
                raise self.error(f"give 1 or {n_top} shapes, found {len(p.shape)}")
            shapes = [list(p.shape[0 if len(p.shape) == 1 else i].dim) for i in range(n_top)]
        else:
            for count, name in zip(legacy, ("num", "channels", "height", "width")):
                if count not in (1, n_top):
                    raise self.error(f"give 1 or {n_top} values of {name}, found {count}")

            def pick(values, i):
                return values[0 if len(values) == 1 else i]

            shapes = [[pick(p.num, i), pick(p.channels, i), pick(p.height, i), pick(p.width, i)]
                      for i in range(n_top)]
        fillers = list(p.data_filler)
        if len(fillers) not in (0, 1, n_top):
            raise self.error(f"give 0, 1 or {n_top} data_filler(s), found {len(fillers)}")
        if not fillers:
            fillers = [caffe_pb2.FillerParameter(type="constant", value=0)]
        self.fillers = [fillers[0 if len(fillers) == 1 else i] for i in range(n_top)]
        self.refill = [f.type != "constant" for f in self.fillers]
        self.rng = child_rng(self.ctx.rng)
        for t, shape, filler, refill in zip(top, shapes, self.fillers, self.refill):
            if any(d < 0 for d in shape):
                raise self.error(f"shape {shape} has a negative dimension")
            t.reshape(shape)
            # As Caffe: constant tops are filled here, once; the others only at each forward
            # (so setup draws nothing from the generator).
            if not refill:
                fill(t, filler, self.rng, f"{self.where} data_filler")

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t, filler, refill in zip(top, self.fillers, self.refill):
            if refill:
                fill(t, filler, self.rng, f"{self.where} data_filler")


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


class BasePrefetchingDataLayer(BaseDataLayer):
    """A data layer whose batches a background thread prepares ahead (Caffe's
    BasePrefetchingDataLayer); tops data and, optionally, label.

    Batch ``k`` is a pure function of ``k``, ``skip`` and ``seed`` (its records and its random
    draws), so it is the same however far ahead it was prepared, and the state (``cursor``,
    ``skip``, ``seed``) resumes a run exactly.
    """

    skip = 0
    seed = 0

    def start_prefetching(self, depth: int = 4) -> None:
        self.prefetcher = Prefetcher(self._load_batch, depth=depth)

    @abc.abstractmethod
    def _load_batch(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``batch_index`` as (data (N, C, H, W) float32, labels (N,) float32)."""

    @property
    def cursor(self) -> int:
        """Index of the next batch this layer will produce."""
        return self.prefetcher.next_index

    def seek(self, batch_index: int) -> None:
        self.prefetcher.seek(batch_index)

    def get_state(self) -> dict:
        return {"cursor": self.cursor, "skip": self.skip, "seed": self.seed}

    def set_state(self, state: dict) -> None:
        if int(state["cursor"]) < 0 or int(state.get("skip", 0)) < 0:
            raise ValueError(f"negative cursor or skip in {state}")
        self.prefetcher.stop()
        self.skip = int(state.get("skip", self.skip))
        self.seed = int(state.get("seed", self.seed))
        transformer = getattr(self, "transformer", None)
        if transformer is not None:
            transformer.seed = self.seed
        self.seek(int(state["cursor"]))

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass  # each batch reshapes the data top in forward

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        data, labels = self.prefetcher.next()
        top[0].reshape(data.shape)
        top[0].data[...] = data
        if len(top) > 1:
            top[1].data[...] = labels

    def close(self) -> None:
        if hasattr(self, "prefetcher"):
            self.prefetcher.stop()


class RecordDataLayer(BasePrefetchingDataLayer):
    """A prefetching layer that reads the records of a dataset in order, wrapping around, and
    transforms them with ``transform_param``.

    Batch ``k`` holds records ``skip + k*batch_size ...`` of the endless stream of records
    (in data-parallel training rank ``r`` of ``s`` keeps every ``s``-th, as Caffe's readers
    do). A batch takes its shape from its first record, as in Caffe: with ``crop_size`` each
    record is cropped on its own, so records of different sizes share a batch; without it
    they must all have the first record's shape.
    """

    shard = (0, 1)
    #: What else than crop_size would make the records of a batch one size (for the error).
    same_size_hint = ""

    @abc.abstractmethod
    def _item(self, position: int) -> tuple[np.ndarray, float, str]:
        """The record at ``position`` of the endless stream: (image (C, H, W), label, where)."""

    def set_shard(self, rank: int, size: int) -> None:
        """Data-parallel training: this rank reads records rank, rank+size, ... (Caffe's
        readers keep every size-th record per solver), so the ranks together read what one
        process with size times the batch reads."""
        self.shard = (rank, size)

    def _positions(self, batch_index: int) -> np.ndarray:
        """Stream positions of [the previous batch's last record, this batch's records...]."""
        rank, size = self.shard
        items = batch_index * self.batch_size + np.arange(-1, self.batch_size)
        return self.skip + items * size + rank

    def _load_batch(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.dataset_size
        positions = self._positions(batch_index)
        raws = []
        labels = np.empty(self.batch_size, dtype=np.float32)
        for i in range(self.batch_size):
            position = int(positions[i + 1])
            raw, labels[i], where = self._item(position)
            if raws and raw.shape != raws[0].shape and not self.transformer.crop:
                hint = f" (set crop_size{self.same_size_hint})"
                raise DataError(f"{where}: shape {raw.shape} differs from {raws[0].shape} of "
                                "the first record of its batch; without crop_size the records "
                                f"of a batch need one shape{hint}")
            raws.append(raw)
            # Caffe logs this after reading the last record; interleaved ranks may step over
            # it, so for them crossing into the next pass counts.
            if self.shard[1] == 1:
                wrapped = (position + 1) % n == 0
            else:
                wrapped = position // n > max(int(positions[i]), 0) // n
            if wrapped:
                self.ctx.logger.info("Restarting data prefetching from start.")
        out = np.empty((self.batch_size, *self.transformer.output_shape(*raws[0].shape)),
                       dtype=np.float32)
        self.transformer.transform_records(raws, batch_index, out)
        return out, labels


@register_layer("Data", "DATA")
class DataLayer(RecordDataLayer):
    """Caffe type ``Data``: batches of Datum records from an LMDB or a LevelDB, in key order,
    wrapping around.

    Tops: data (batch_size, C, H, W) and optionally label (batch_size). Reads data_param
    (source, batch_size, backend, rand_skip, prefetch) and transform_param (including
    force_color/force_gray for encoded records). Batches are prepared in a background thread
    ``prefetch`` batches ahead (see :class:`RecordDataLayer` for their order and shapes).

    ``rand_skip``: Caffe 1.0's DataLayer ignores it (the field is marked deprecated; it was
    meant to desynchronise parallel solvers). Earlier Caffe, and Caffe 1.0's ImageData layer,
    skip a random number of records in [0, rand_skip) at setup; pyforge does that here too and
    logs ``Skipping first N data points.``. The skip is part of the layer's state.
    """

    min_top_blobs = 1
    max_top_blobs = 2

    def __init__(self, param: caffe_pb2.LayerParameter, ctx) -> None:
        super().__init__(param, ctx)
        p = param.data_param
        self.batch_size = self.check_batch_size(p.batch_size, "data_param")
        if not p.source:
            raise self.error("data_param.source is not set")
        source = resolve_path(p.source, ctx.source_file, f"{self.where} source")
        self.source = source
        # Caffe opens the database when the layer is created, before it is wired.
        try:
            self.reader = open_reader(source, p.backend, self.where)
        except DataError as exc:
            raise self.error(str(exc)) from None
        ctx.logger.info("Opened %s %s", self.reader.backend_name, source)

    @property
    def dataset_size(self) -> int:
        return len(self.reader)

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.data_param
        tp = self.param.transform_param
        if tp.force_color and tp.force_gray:
            raise self.error("transform_param sets both force_color and force_gray")
        if p.rand_skip:
            self.skip = int(self.ctx.rng.integers(0, p.rand_skip))
            self.ctx.logger.info("Skipping first %d data points.", self.skip)
        first = self._item(self.skip)[0]
        self.seed = int(self.ctx.rng.integers(0, 2**63 - 1))
        self.transformer = DataTransformer(tp, self.phase, self.seed, self.where,
                                           self.ctx.source_file)
        c, h, w = self.transformer.output_shape(*first.shape)
        top[0].reshape((self.batch_size, c, h, w))
        self.ctx.logger.info("output data size: %d,%d,%d,%d", self.batch_size, c, h, w)
        if len(top) > 1:
            top[1].reshape((self.batch_size,))
        self.start_prefetching(depth=int(p.prefetch))

    def _item(self, position: int) -> tuple[np.ndarray, float, str]:
        index = position % len(self.reader)
        key = self.reader.key(index)
        where = f"{self.where}: {self.source} record {key.decode(errors='replace')!r}"
        tp = self.param.transform_param
        datum = parse_datum(self.reader.value(index), where)
        return datum_array(datum, where, tp.force_color, tp.force_gray), datum.label, where

    def close(self) -> None:
        super().close()
        self.reader.close()


@register_layer("MemoryData", "MEMORY_DATA")
class MemoryDataLayer(BaseDataLayer):
    """Caffe type ``MemoryData``: batches from arrays given from Python, used in turn and
    cyclically. Tops data (batch_size, channels, height, width) and label (batch_size).

    Reads memory_data_param (batch_size, channels, height, width, all required). Give the data
    with :meth:`reset` (pycaffe's ``net.set_input_arrays``). As in Caffe, arrays given this way
    are not transformed, and a forward before any data is an error. The state is the position
    of the next batch in the arrays.
    """

    exact_num_top_blobs = 2

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.memory_data_param
        self.batch_size = self.check_batch_size(p.batch_size, "memory_data_param")
        dims = (p.channels, p.height, p.width)
        if min(dims) <= 0:
            raise self.error("channels, height and width must be specified and positive in "
                             f"memory_data_param, found {dims}")
        self.item_shape = (int(p.channels), int(p.height), int(p.width))
        if self.param.HasField("transform_param"):
            self.ctx.logger.warning("%s: transform_param is not applied to arrays given with "
                                    "reset()/set_input_arrays (as in Caffe)", self.where)
        self.data: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.pos = 0
        top[0].reshape((self.batch_size, *self.item_shape))
        top[1].reshape((self.batch_size,))

    def reset(self, data: np.ndarray, labels: np.ndarray) -> None:
        """Use ``data`` (N, C, H, W) and ``labels`` (N,) — float32, C-contiguous, N a multiple
        of batch_size — from the next forward on; the arrays are used in place, not copied."""
        for name, array in (("data", data), ("labels", labels)):
            if not isinstance(array, np.ndarray):
                raise self.error(f"{name} must be a NumPy array, found {type(array).__name__}")
            if array.dtype != np.float32:
                raise self.error(f"{name} must be float32, found {array.dtype}")
            if not array.flags.c_contiguous:
                raise self.error(f"{name} must be C contiguous (use np.ascontiguousarray)")
        if data.ndim != 4 or data.shape[1:] != self.item_shape:
            c, h, w = self.item_shape
            raise self.error(f"data must have shape (N, {c}, {h}, {w}) as memory_data_param "
                             f"says, found {data.shape}")
        if labels.ndim == 0 or labels.size != labels.shape[0]:
            raise self.error(f"labels must have shape (N,) or (N, 1, 1, 1), found {labels.shape}")
        if labels.shape[0] != data.shape[0]:
            raise self.error(f"data and labels must have the same first dimension, found "
                             f"{data.shape[0]} and {labels.shape[0]}")
        if data.shape[0] == 0 or data.shape[0] % self.batch_size:
            raise self.error(f"the number of items ({data.shape[0]}) must be a positive "
                             f"multiple of batch_size {self.batch_size}")
        self.data = data
        self.labels = labels.reshape(-1)
        self.pos = 0

    #: pycaffe's spelling (Net.set_input_arrays calls the MemoryData layer with these).
    set_input_arrays = reset

    @property
    def dataset_size(self) -> int:
        """Items of the arrays given with :meth:`reset` (0 before)."""
        return 0 if self.data is None else int(self.data.shape[0])

    def get_state(self) -> dict:
        return {"pos": self.pos}

    def set_state(self, state: dict) -> None:
        self.pos = int(state["pos"])

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if self.data is None:
            raise self.error("has no data: call reset(data, labels) on the layer (pycaffe: "
                             "net.set_input_arrays) before the first forward")
        n = self.data.shape[0]
        if self.pos >= n:  # state restored for other arrays
            self.pos = 0
        end = self.pos + self.batch_size
        top[0].data[...] = self.data[self.pos : end]
        top[1].data[...] = self.labels[self.pos : end]
        self.pos = end % n
