"""Key-value databases of Datum records: which backend a path holds, and opening a reader or
a writer for it.

Readers never need write access: LMDB (:mod:`pyforge.io.db_lmdb`) is opened read-only without
a lock file, and LevelDB (:mod:`pyforge.io.db_leveldb`) is read by pyforge's own reader of its
file format, which never writes, locks or copies anything. A dataset on a read-only disk (or one
shipped without ``lock.mdb`` or ``LOCK``) reads fine, and a train and a test net can read one
database at the same time. Writers create new databases only.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable

from ..errors import DataError
from ..log import get_logger
from ..proto import caffe_pb2

LMDB = caffe_pb2.DataParameter.LMDB


LEVELDB = caffe_pb2.DataParameter.LEVELDB


def is_lmdb(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "data.mdb")) or (
        os.path.isfile(path) and path.endswith(".mdb")
    )


def is_leveldb(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "CURRENT"))


def backend_from_name(backend: str | int) -> int:
    """``"lmdb"``/``"leveldb"`` (any case) or a DataParameter.DB value, as the DB enum."""
    if isinstance(backend, str):
        names = {"lmdb": LMDB, "leveldb": LEVELDB}
        if backend.lower() not in names:
            raise DataError(f"unknown backend {backend!r}: expected 'lmdb' or 'leveldb'")
        return names[backend.lower()]
    if backend not in (LMDB, LEVELDB):
        raise DataError(f"unknown backend {backend!r}: expected LMDB ({LMDB}) or "
                        f"LEVELDB ({LEVELDB})")
    return int(backend)


def open_reader(path: str, backend: int, where: str = ""):
    """Open a Datum database for reading; ``backend`` is DataParameter.DB (or its name).

    Readers give ``len()``, ``key(i)`` and ``value(i)`` in key byte order (Caffe's cursor
    order) and ``close()``."""
    from .db_leveldb import LevelDBReader
    from .db_lmdb import LMDBReader

    backend = backend_from_name(backend)
    if backend == LEVELDB:
        if is_lmdb(path):
            # Caffe's default backend is LEVELDB and Caffe would fail here; the user clearly
            # meant the LMDB that is there.
            get_logger().warning(
                "%s: backend is LEVELDB (Caffe's default) but '%s' is an LMDB; reading it as "
                "LMDB (add 'backend: LMDB' to data_param to silence this)",
                where or "data layer",
                path,
            )
            return LMDBReader(path)
        return LevelDBReader(path)
    return LMDBReader(path)


def open_writer(path: str, backend: str | int, commit_every: int = 1000) -> BatchedWriter:
    """A writer for a new database at ``path`` (which must not exist)."""
    from .db_leveldb import LevelDBWriter
    from .db_lmdb import LMDBWriter

    if backend_from_name(backend) == LEVELDB:
        return LevelDBWriter(path, commit_every=commit_every)
    return LMDBWriter(path, commit_every=commit_every)


class BatchedWriter(abc.ABC):
    """Buffers records and hands them to ``commit`` ``commit_every`` at a time, so a large
    conversion neither holds everything in memory nor pays one transaction per record."""

    commit_every: int
    _pending: list[tuple[bytes, bytes]]

    def put(self, key: bytes, value: bytes) -> None:
        self._pending.append((key, value))
        if len(self._pending) >= self.commit_every:
            self.commit()

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        for key, value in items:
            self.put(key, value)

    @abc.abstractmethod
    def commit(self) -> None:
        """Write the pending records in one transaction and clear them."""
