"""HDF5 data layers: HDF5Data reads rows of HDF5 datasets, HDF5Output writes them."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..proto import resolve_path
from ..rng import child_rng
from .base import BaseDataLayer, Layer, register_layer


@register_layer("HDF5Data", "HDF5_DATA")
class HDF5DataLayer(BaseDataLayer):
    """Caffe type ``HDF5Data``: rows of the datasets named like the tops, from the .h5 files
    listed in hdf5_data_param.source; batch_size rows per forward, across file boundaries.

    With ``shuffle`` the file order is shuffled at setup and at each wrap, and the rows of each
    file whenever it is (re)loaded, from the layer's seeded generator.
    """

    min_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        import h5py

        p = self.param.hdf5_data_param
        if self.param.HasField("transform_param"):
            raise self.error("HDF5Data does not transform data (remove transform_param)")
        self.batch_size = self.check_batch_size(p.batch_size, "hdf5_data_param")
        if not p.source:
            raise self.error("hdf5_data_param.source is not set")
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
        self.total_rows = 0
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
                    self.total_rows += rows
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

    @property
    def dataset_size(self) -> int:
        """Rows of all the listed files together."""
        return self.total_rows

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


@register_layer("HDF5Output", "HDF5_OUTPUT")
class HDF5OutputLayer(Layer):
    """Caffe type ``HDF5Output``: writes its two bottoms to the HDF5 file
    hdf5_output_param.file_name, as the datasets ``data`` and ``label`` (float32, in Caffe's
    legacy 4-D shapes (N, C, H, W)). No tops, no gradient.

    The file is created (truncated) at setup, as in Caffe. Caffe writes the datasets at the
    first forward and fails at the second (the datasets exist); pyforge appends the rows of
    every forward instead, and flushes the file after each.
    """

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 0

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        import h5py

        self.file_name = self.param.hdf5_output_param.file_name
        if not self.file_name:
            raise self.error("hdf5_output_param.file_name is not set")
        try:
            self.file = h5py.File(self.file_name, "w")
        except OSError as exc:
            raise self.error(f"cannot create the HDF5 file '{self.file_name}': {exc}") from None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise self.error(f"data and label must have the same number of rows, found "
                             f"{bottom[0].shape} and {bottom[1].shape}")
        self.ctx.logger.info("Saving HDF5 file %s", self.file_name)
        for name, blob in (("data", bottom[0]), ("label", bottom[1])):
            try:
                shape = (blob.num, blob.channels, blob.height, blob.width)
            except ValueError:
                raise self.error(f"bottom '{name}' has shape {blob.shape}; HDF5Output writes "
                                 "Caffe's 4-D (N, C, H, W) shapes, at most 4 axes") from None
            rows = blob.data.reshape(shape).astype(np.float32, copy=False)
            dataset = self.file.get(name)
            if dataset is None:
                self.file.create_dataset(name, data=rows, maxshape=(None, *shape[1:]),
                                         chunks=True)
                continue
            if dataset.shape[1:] != shape[1:]:
                raise self.error(f"bottom '{name}' changed shape to {shape}; "
                                 f"'{self.file_name}' holds rows of {dataset.shape[1:]}")
            old = dataset.shape[0]
            dataset.resize(old + shape[0], axis=0)
            dataset[old:] = rows
        self.file.flush()
        self.ctx.logger.info("Successfully saved %d rows", bottom[0].num)

    def close(self) -> None:
        if getattr(self, "file", None) is not None:
            self.file.close()
            self.file = None


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (h5py's span several)."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split())
