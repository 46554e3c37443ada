"""Layers that produce data: Input, DummyData, Data (LMDB/LevelDB of Datum records), HDF5Data.

ImageData is in ``image_data.py``; MemoryData, HDF5Output and WindowData in ``data_extra.py``.
"""

from __future__ import annotations

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
from .base import Layer, register_layer


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


@register_layer("Data", "DATA")
class DataLayer(Layer):
    """Caffe type ``Data``: batches of Datum records from an LMDB or a LevelDB, in key order,
    wrapping around.

    Tops: data (batch_size, C, H, W) and optionally label (batch_size). Reads data_param
    (source, batch_size, backend, rand_skip, prefetch) and transform_param (including
    force_color/force_gray for encoded records). Batches are prepared in a background thread
    ``prefetch`` batches ahead; each batch takes its shape from its first record, as in Caffe,
    so images of varying size work with batch_size 1.

    ``rand_skip``: Caffe 1.0's DataLayer ignores it (the field is marked deprecated; it was
    meant to desynchronise parallel solvers). Earlier Caffe, and Caffe 1.0's ImageData layer,
    skip a random number of records in [0, rand_skip) at setup; pyforge does that here too and
    logs ``Skipping first N data points.``. The skip is part of the layer's state.

    The layer's state is ``cursor`` (the index of the next batch), the skip and the random
    seed of the transformer: batch ``k`` holds records ``skip + k*batch_size ...`` (modulo the
    database size) with crop/mirror draws seeded by (seed, k), so it is the same however far
    ahead it was prepared, and a resumed run continues exactly.
    """

    exact_num_bottom_blobs = 0
    min_top_blobs = 1
    max_top_blobs = 2

    def __init__(self, param: caffe_pb2.LayerParameter, ctx) -> None:
        super().__init__(param, ctx)
        p = param.data_param
        if p.batch_size <= 0:
            raise self.error("data_param.batch_size must be given and positive")
        if not p.source:
            raise self.error("data_param.source is not set")
        self.batch_size = int(p.batch_size)
        source = resolve_path(p.source, ctx.source_file, f"{self.where} source")
        self.source = source
        # Caffe opens the database when the layer is created, before it is wired.
        try:
            self.reader = open_reader(source, p.backend, self.where)
        except DataError as exc:
            raise self.error(str(exc)) from None
        ctx.logger.info("Opened %s %s", self.reader.backend_name, source)

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.data_param
        tp = self.param.transform_param
        if tp.force_color and tp.force_gray:
            raise self.error("transform_param sets both force_color and force_gray")
        self.skip = 0
        if p.rand_skip:
            self.skip = int(self.ctx.rng.integers(0, p.rand_skip))
            self.ctx.logger.info("Skipping first %d data points.", self.skip)
        first = self._record(self.skip % len(self.reader))[0]
        seed = int(self.ctx.rng.integers(0, 2**63 - 1))
        self.transformer = DataTransformer(tp, self.phase, seed, self.where,
                                           self.ctx.source_file)
        c, h, w = self.transformer.output_shape(*first.shape)
        top[0].reshape((self.batch_size, c, h, w))
        self.ctx.logger.info("output data size: %d,%d,%d,%d", self.batch_size, c, h, w)
        if len(top) > 1:
            top[1].reshape((self.batch_size,))
        self.prefetcher = Prefetcher(self._load_batch, depth=int(p.prefetch))

    def _record(self, index: int) -> tuple[np.ndarray, int, str]:
        """Record ``index`` (in key order) as (image (C, H, W), label, where-string)."""
        key = self.reader.key(index)
        where = f"{self.where}: {self.source} record {key.decode(errors='replace')!r}"
        tp = self.param.transform_param
        datum = parse_datum(self.reader.value(index), where)
        return datum_array(datum, where, tp.force_color, tp.force_gray), datum.label, where

    def set_shard(self, rank: int, size: int) -> None:
        """Data-parallel training: this rank reads records rank, rank+size, ... (Caffe's
        DataLayer keeps every size-th record per solver), so the ranks together read what one
        process with size times the batch reads."""
        self.shard = (rank, size)

    def _stride(self) -> int:
        return getattr(self, "shard", (0, 1))[1]

    def _positions(self, batch_index: int) -> np.ndarray:
        rank, size = getattr(self, "shard", (0, 1))
        items = batch_index * self.batch_size + np.arange(-1, self.batch_size)
        return self.skip + items * size + rank

    def _load_batch(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and transform batch ``batch_index``: records skip + k*B ... modulo the size
        (interleaved over the ranks in data-parallel training)."""
        n = len(self.reader)
        positions = self._positions(batch_index)  # [the previous batch's last, this batch...]
        raws = []
        labels = np.empty(self.batch_size, dtype=np.float32)
        for i in range(self.batch_size):
            position = int(positions[i + 1])
            raw, labels[i], where = self._record(position % n)
            if raws and raw.shape != raws[0].shape:
                raise DataError(f"{where}: shape {raw.shape} differs from {raws[0].shape} of "
                                "the first record of its batch; the records of a batch need "
                                "one shape")
            raws.append(raw)
            # Caffe logs this after reading the last record; interleaved ranks may step over
            # it, so for them crossing into the next pass counts.
            wrapped = (position + 1) % n == 0 if len(positions) and self._stride() == 1 else (
                position // n > max(int(positions[i]), 0) // n)
            if wrapped:
                self.ctx.logger.info("Restarting data prefetching from start.")
        batch = np.stack(raws)
        out = np.empty((self.batch_size, *self.transformer.output_shape(*raws[0].shape)),
                       dtype=np.float32)
        self.transformer.transform(batch, batch_index, out)
        return out, labels

    @property
    def cursor(self) -> int:
        """Index of the next batch this layer will produce."""
        return self.prefetcher.next_index

    def seek(self, batch_index: int) -> None:
        self.prefetcher.seek(batch_index)

    def get_state(self) -> dict:
        # Batch k is a pure function of k, the skip and the transformer's seed.
        return {"cursor": self.cursor, "skip": self.skip, "seed": self.transformer.seed}

    def set_state(self, state: dict) -> None:
        if int(state["cursor"]) < 0 or int(state.get("skip", 0)) < 0:
            raise ValueError(f"negative cursor or skip in {state}")
        self.prefetcher.stop()
        self.skip = int(state.get("skip", self.skip))
        self.transformer.seed = int(state.get("seed", self.transformer.seed))
        self.seek(int(state["cursor"]))

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        data, labels = self.prefetcher.next()
        top[0].reshape(data.shape)
        top[0].data[...] = data
        if len(top) > 1:
            top[1].data[...] = labels

    def close(self) -> None:
        if hasattr(self, "prefetcher"):
            self.prefetcher.stop()
        self.reader.close()


@register_layer("HDF5Data", "HDF5_DATA")
class HDF5DataLayer(Layer):
    """Caffe type ``HDF5Data``: rows of the datasets named like the tops, from the .h5 files
    listed in hdf5_data_param.source; batch_size rows per forward, across file boundaries.

    With ``shuffle`` the file order is shuffled at setup and at each wrap, and the rows of each
    file whenever it is (re)loaded, from the layer's seeded generator.
    """

    exact_num_bottom_blobs = 0
    min_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        import h5py

        p = self.param.hdf5_data_param
        if self.param.HasField("transform_param"):
            raise self.error("HDF5Data does not transform data (remove transform_param)")
        if p.batch_size <= 0:
            raise self.error("hdf5_data_param.batch_size must be given and positive")
        if not p.source:
            raise self.error("hdf5_data_param.source is not set")
        self.batch_size = int(p.batch_size)
        self.shuffle = p.shuffle
        self.rng = child_rng(self.ctx.rng)
        source = resolve_path(p.source, self.ctx.source_file, f"{self.where} source")
        try:
            with open(source, encoding="utf-8") as handle:
                names = handle.read().split()
        except UnicodeDecodeError as exc:
            raise self.error(f"HDF5 list file '{source}' is not UTF-8 text (byte {exc.start}); "
                             "expected one .h5 path per line") from None
        except (OSError, ValueError) as exc:
            raise self.error(f"cannot read the HDF5 list file '{source}': "
                             f"{_one_line(exc)}") from None
        if not names:
            raise self.error(f"HDF5 list file '{source}' names no files")
        self.files = [resolve_path(n, source, "HDF5 file") for n in names]
        self.top_names = list(self.param.top)
        self.ctx.logger.info("Number of HDF5 files: %d", len(self.files))
        # Check every file up front: each dataset present, numeric, same trailing shape.
        trailing: dict[str, tuple[int, ...]] = {}
        for path in self.files:
            try:
                with h5py.File(path, "r") as f:
                    rows = None
                    for name in self.top_names:
                        if name not in f:
                            raise self.error(f"{path}: no dataset '{name}' (the datasets must be "
                                             f"named like the tops {self.top_names})")
                        ds = f[name]
                        if not isinstance(ds, h5py.Dataset):
                            raise self.error(f"{path}: '{name}' is a {type(ds).__name__}, "
                                             "expected a dataset")
                        if ds.dtype.kind not in "fiub" or ds.ndim < 1:
                            raise self.error(f"{path}: dataset '{name}' has dtype {ds.dtype} "
                                             f"and shape {ds.shape}; expected numeric, >= 1 axis")
                        if rows is None:
                            rows = ds.shape[0]
                        elif ds.shape[0] != rows:
                            raise self.error(f"{path}: datasets have different numbers of rows "
                                             f"({rows} vs {ds.shape[0]} in '{name}')")
                        if trailing.setdefault(name, ds.shape[1:]) != ds.shape[1:]:
                            raise self.error(f"{path}: dataset '{name}' has rows of shape "
                                             f"{ds.shape[1:]}, other files {trailing[name]}")
                    if not rows:
                        raise self.error(f"{path}: the datasets have no rows")
            except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
                # h5py reports damaged files and dangling links with these, in several lines.
                raise self.error(f"cannot open HDF5 file '{path}': {_one_line(exc)}") from None
        self.file_order = np.arange(len(self.files))
        if self.shuffle:
            self.rng.shuffle(self.file_order)
        self.current_file = 0
        self.offset = 0  # rows passed so far (data-parallel ranks keep every size-th)
        self.shard = (0, 1)
        self._load_file()
        for t, name in zip(top, self.top_names):
            t.reshape((self.batch_size, *trailing[name]))

    def _load_file(self) -> None:
        import h5py

        path = self.files[self.file_order[self.current_file]]
        try:
            with h5py.File(path, "r") as f:
                self.arrays = [np.asarray(f[name], dtype=np.float32) for name in self.top_names]
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise self.error(f"cannot read HDF5 file '{path}': {_one_line(exc)}") from None
        self.rows = self.arrays[0].shape[0]
        self.row_order = np.arange(self.rows)
        if self.shuffle:
            self.rng.shuffle(self.row_order)
        self.current_row = 0

    def set_shard(self, rank: int, size: int) -> None:
        """Data-parallel training: keep rows whose running index is rank modulo size (Caffe's
        HDF5DataLayer skip), so the ranks together read one process's rows."""
        self.shard = (rank, size)

    def get_state(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "file_order": self.file_order.tolist(),
            "current_file": self.current_file,
            "row_order": self.row_order.tolist(),
            "current_row": self.current_row,
            "offset": self.offset,
        }

    def set_state(self, state: dict) -> None:
        self.file_order = np.array(state["file_order"], dtype=np.int64)
        self.current_file = int(state["current_file"])
        self._load_file()  # reloads the file and reshuffles its rows; both are replaced next
        self.row_order = np.array(state["row_order"], dtype=np.int64)
        self.current_row = int(state["current_row"])
        self.offset = int(state.get("offset", 0))
        self.rng.bit_generator.state = state["rng"]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        filled = 0
        while filled < self.batch_size:
            if self.current_row == self.rows:
                if len(self.files) > 1:
                    self.current_file += 1
                    if self.current_file == len(self.files):
                        self.current_file = 0
                        if self.shuffle:
                            self.rng.shuffle(self.file_order)
                    self._load_file()
                else:
                    self.current_row = 0
                    if self.shuffle:
                        self.rng.shuffle(self.row_order)
            need = self.batch_size - filled
            avail = self.rows - self.current_row
            rank, size = self.shard
            if size == 1:
                take = consumed = min(need, avail)
                rows = self.row_order[self.current_row : self.current_row + take]
            else:
                mine = np.nonzero((self.offset + np.arange(avail)) % size == rank)[0][:need]
                take = len(mine)
                consumed = int(mine[-1]) + 1 if take == need else avail
                rows = self.row_order[self.current_row + mine]
            for t, array in zip(top, self.arrays):
                t.data[filled : filled + take] = array[rows]
            filled += take
            self.current_row += consumed
            self.offset += consumed


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (h5py's span several)."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split())
