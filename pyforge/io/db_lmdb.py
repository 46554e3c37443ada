"""LMDB databases of Datum records: a read-only reader and a writer whose map grows."""

from __future__ import annotations

import os
import threading

from ..errors import DataError
from .db import BatchedWriter, is_leveldb
from .lmdb_check import check_lmdb_file

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
            # LMDB reads through a memory map: a page past the end of a damaged file would
            # kill the process with SIGBUS, so the file is checked with ordinary reads first
            # (once per open environment: a train and a test net share it).
            check_lmdb_file(os.path.join(path, "data.mdb") if subdir else path, path)
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

    backend_name = "lmdb"

    def __init__(self, path: str) -> None:
        import lmdb

        self.path = path
        self.env = None
        if not os.path.exists(path):
            raise DataError(f"LMDB '{path}' does not exist")
        subdir = os.path.isdir(path)
        if subdir and not os.path.isfile(os.path.join(path, "data.mdb")):
            if is_leveldb(path):
                raise DataError(f"LMDB '{path}' has no data.mdb but is a LevelDB database; "
                                "set backend: LEVELDB (or --backend=leveldb)")
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


class LMDBWriter(BatchedWriter):
    """Writes records in transactions of ``commit_every``, doubling the map size when full."""

    backend_name = "lmdb"

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
