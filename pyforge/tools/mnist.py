"""Caffe's ``examples/mnist/convert_mnist_data``: MNIST IDX files to a database of Datum records.

The output matches Caffe's record for record: key ``%08d`` (the item index), value a serialized
``caffe.Datum`` with ``channels = 1``, ``height``/``width`` from the image file's header,
``data`` = the item's raw ``rows * cols`` pixel bytes and ``label`` = its label byte. The fields
are serialized in field-number order, as Caffe's C++ protobuf does, so the values are the same
bytes. (Caffe reads the label into a ``char``; MNIST labels are 0-9, where signed and unsigned
agree, and here a label byte is always read unsigned.)

IDX files are read raw or gzip-compressed (recognised by their content, not their name). The
headers are checked as Caffe checks them (image magic 2051, label magic 2049, equal item counts)
and, beyond Caffe, the file sizes must match the headers exactly, so a truncated download is
reported instead of being converted into garbage. Both files are validated before anything is
written. An existing output path is an error: like Caffe's ``mkdir``, the converter never
overwrites. The output is an LMDB or, with ``backend="leveldb"``, a LevelDB.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import zlib
from collections.abc import Callable

import numpy as np

from ..errors import DataError
from ..io.db import backend_from_name, open_writer
from ..proto import caffe_pb2

IMAGE_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"
#: Records per LMDB transaction and per ``progress`` call (Caffe commits every 1000 too).
COMMIT_EVERY = 1000

Progress = Callable[[int, int], object]


def _read_idx(path: str | os.PathLike, what: str) -> bytes:
    """The decompressed bytes of an IDX file (raw or gzip)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such MNIST {what} file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an MNIST {what} file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the MNIST {what} file: {exc.strerror}") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{path}: corrupt or truncated gzip data in the MNIST {what} file: {exc}"
            ) from None
    return data


def _header(data: bytes, path: str | os.PathLike, what: str, magic: int, words: int) -> np.ndarray:
    """The ``words`` big-endian uint32 header words; the first must be ``magic``."""
    if len(data) < 4 * words:
        raise DataError(
            f"{path}: MNIST {what} file too short for its header: expected at least "
            f"{4 * words} bytes, found {len(data)}"
        )
    header = np.frombuffer(data, dtype=">u4", count=words).astype(np.int64)
    if int(header[0]) != magic:
        raise DataError(
            f"{path}: not an MNIST {what} file: magic number expected {magic}, "
            f"found {int(header[0])}"
        )
    return header


def _check_size(data: bytes, path: str | os.PathLike, what: str, expected: int, layout: str):
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing data"
        raise DataError(
            f"{path}: MNIST {what} file {problem}: expected {expected} bytes "
            f"(header: {layout}), found {len(data)}"
        )


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """An IDX3 image file as a uint8 array of shape (items, rows, cols)."""
    data = _read_idx(path, "image")
    _, items, rows, cols = (int(v) for v in _header(data, path, "image", IMAGE_MAGIC, 4))
    _check_size(data, path, "image", 16 + items * rows * cols, f"{items} images of {rows}x{cols}")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(items, rows, cols)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """An IDX1 label file as a uint8 array of shape (items,)."""
    data = _read_idx(path, "label")
    _, items = (int(v) for v in _header(data, path, "label", LABEL_MAGIC, 2))
    _check_size(data, path, "label", 8 + items, f"{items} labels")
    return np.frombuffer(data, dtype=np.uint8, offset=8)


def convert_mnist(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    db_path: str | os.PathLike,
    backend: str | int = "lmdb",
    progress: Progress | None = None,
) -> int:
    """Convert an MNIST image/label IDX pair into a new LMDB (or LevelDB) at ``db_path``.

    Returns the number of records written. ``progress(done, total)`` is called after every
    committed batch of :data:`COMMIT_EVERY` records and once at the end. If the
    conversion fails part-way, the partly written database is removed.
    """
    backend_from_name(backend)  # an unknown backend fails before any work
    db_path = os.fspath(db_path)
    if os.path.lexists(db_path):
        raise DataError(f"'{db_path}' already exists; remove it or choose another output path")
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"MNIST item counts differ: {images_path} holds {len(images)} images but "
            f"{labels_path} holds {len(labels)} labels; expected the same number"
        )
    total, rows, cols = images.shape
    flat = images.reshape(total, rows * cols)
    label_list = labels.tolist()
    datum = caffe_pb2.Datum(channels=1, height=rows, width=cols)
    writer = open_writer(db_path, backend, commit_every=COMMIT_EVERY)
    try:
        for index in range(total):
            datum.data = flat[index].tobytes()
            datum.label = label_list[index]
            # put() commits a transaction every COMMIT_EVERY records.
            writer.put(b"%08d" % index, datum.SerializeToString())
            done = index + 1
            if progress is not None and done % COMMIT_EVERY == 0 and done < total:
                progress(done, total)
        writer.close()
    except BaseException:
        # Never leave a half-written database behind (it would read as a shorter dataset).
        with contextlib.suppress(Exception):
            writer.close()
        shutil.rmtree(db_path, ignore_errors=True)
        raise
    if progress is not None:
        progress(total, total)
    return total
