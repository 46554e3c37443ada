"""Key-value databases of Datum records: read-only readers and an auto-growing LMDB writer.

Readers never need write access: LMDB is opened read-only without a lock file, so a dataset on
a read-only disk (or one shipped without ``lock.mdb``) reads fine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from ..errors import DataError
from ..log import get_logger
from ..proto import caffe_pb2

LMDB = caffe_pb2.DataParameter.LMDB
LEVELDB = caffe_pb2.DataParameter.LEVELDB


def _is_lmdb(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "data.mdb")) or (
        os.path.isfile(path) and path.endswith(".mdb")
    )


# py-lmdb refuses to open one environment twice in a process, while a train and a test net (or
# two test nets) often read the same database. Open environments are therefore shared,
# reference-counted by their real path; each reader keeps its own read transaction.
_OPEN_ENVS: dict[str, list] = {}
_OPEN_ENVS_LOCK = threading.Lock()


def _acquire_env(path: str, subdir: bool):
    import lmdb

    key = os.path.realpath(path)
    with _OPEN_ENVS_LOCK:
        entry = _OPEN_ENVS.get(key)
        if entry is None:
            env = lmdb.open(path, subdir=subdir, readonly=True, lock=False, readahead=False,
                            max_readers=126)
            entry = _OPEN_ENVS[key] = [env, 0]
        entry[1] += 1
        return entry[0]


def _release_env(path: str) -> None:
    key = os.path.realpath(path)
    with _OPEN_ENVS_LOCK:
        entry = _OPEN_ENVS.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            entry[0].close()
            del _OPEN_ENVS[key]


class LMDBReader:
    """Random access by record index, in key byte order (the order Caffe's cursor reads)."""

    def __init__(self, path: str) -> None:
        import lmdb

        self.path = path
        self.env = None
        if not os.path.exists(path):
            raise DataError(f"LMDB '{path}' does not exist")
        subdir = os.path.isdir(path)
        if subdir and not os.path.isfile(os.path.join(path, "data.mdb")):
            raise DataError(f"LMDB '{path}' has no data.mdb: not an LMDB database")
        try:
            self.env = _acquire_env(path, subdir)
            self.txn = self.env.begin(write=False, buffers=False)
            with self.txn.cursor() as cursor:
                self.keys = list(cursor.iternext(keys=True, values=False))
        except lmdb.Error as exc:
            if self.env is not None:
                _release_env(path)
            raise DataError(f"LMDB '{path}': cannot open: {exc}") from None
        if not self.keys:
            self.close()
            raise DataError(f"LMDB '{path}' is empty")

    def __len__(self) -> int:
        return len(self.keys)

    def key(self, index: int) -> bytes:
        return self.keys[index]

    def value(self, index: int) -> bytes:
        value = self.txn.get(self.keys[index])
        if value is None:
            raise DataError(f"LMDB '{self.path}': record {self.keys[index]!r} vanished")
        return value

    def close(self) -> None:
        if self.env is not None:
            self.txn.abort()
            _release_env(self.path)
            self.env = None


def open_reader(path: str, backend: int, where: str = "") -> LMDBReader:
    """Open a Datum database for reading; ``backend`` is DataParameter.DB."""
    if backend == LEVELDB:
        if _is_lmdb(path):
            # Caffe's default backend is LEVELDB and Caffe would fail here; the user clearly
            # meant the LMDB that is there.
            get_logger().warning(
                "%s: backend is LEVELDB (Caffe's default) but '%s' is an LMDB; reading it as "
                "LMDB (add 'backend: LMDB' to data_param to silence this)",
                where or "data layer",
                path,
            )
            return LMDBReader(path)
        raise DataError(
            f"{where + ': ' if where else ''}LevelDB source '{path}' is not supported yet "
            "(backend: LEVELDB is Caffe's default); convert it to LMDB or set backend: LMDB "
            "if it is one"
        )
    return LMDBReader(path)


class LMDBWriter:
    """Writes records in transactions of ``commit_every``, doubling the map size when full."""

    def __init__(self, path: str, commit_every: int = 1000, map_size: int = 1 << 26) -> None:
        import lmdb

        if os.path.exists(path):
            raise DataError(f"'{path}' already exists; remove it or choose another output path")
        self.path = path
        self.commit_every = commit_every
        try:
            self.env = lmdb.open(path, map_size=map_size, subdir=True, meminit=False)
        except lmdb.Error as exc:
            raise DataError(f"cannot create LMDB '{path}': {exc}") from None
        self._pending: list[tuple[bytes, bytes]] = []

    def put(self, key: bytes, value: bytes) -> None:
        self._pending.append((key, value))
        if len(self._pending) >= self.commit_every:
            self.commit()

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        for key, value in items:
            self.put(key, value)

    def commit(self) -> None:
        import lmdb

        if not self._pending:
            return
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
        self._pending.clear()

    def close(self) -> None:
        self.commit()
        self.env.sync()
        self.env.close()
