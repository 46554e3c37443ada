"""LevelDB databases of Datum records: pyforge's own read-only reader of LevelDB's file
format (LevelDB itself has no read-only mode: opening takes its ``LOCK`` and may rewrite its
log into new tables) and a writer through plyvel with Caffe's options."""

from __future__ import annotations

import bisect
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from ..errors import DataError
from ..kernels.snappy import snappy_decompress
from ..log import get_logger
from ..proto.wire import WireError, read_varint
from .db import BatchedWriter, is_leveldb

# --- LevelDB ----------------------------------------------------------------------------------
# The on-disk format (leveldb/doc/table_format.md, log_format.md, impl.md): ``CURRENT`` names
# the MANIFEST, a log of VersionEdits that lists the live table files; tables hold sorted
# internal keys (user key + 8-byte little-endian ``sequence << 8 | type``) in blocks that may be
# Snappy-compressed; ``*.log`` files hold the WriteBatches not yet in a table. The newest
# sequence number of a user key wins, and a deletion hides the key.

_TABLE_MAGIC = 0xDB4775248B80FB57


_FOOTER_SIZE = 48


_LOG_BLOCK = 32768


_LOG_HEADER = 7


_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


_TYPE_DELETION, _TYPE_VALUE = 0, 1


_NO_COMPRESSION, _SNAPPY = 0, 1


_BYTEWISE = b"leveldb.BytewiseComparator"


_CACHED_BLOCKS = 16


_OPEN_FILES = 64


class _Corrupt(Exception):
    """A structural problem inside one file; turned into a DataError naming the file."""


def _varint(buf, pos: int) -> tuple[int, int]:
    """LevelDB's varints are protobuf's; a truncated one means a corrupt block."""
    try:
        return read_varint(buf, pos, len(buf))
    except WireError:
        raise _Corrupt("truncated varint") from None


def _length_prefixed(buf, pos: int) -> tuple[bytes, int]:
    length, pos = _varint(buf, pos)
    if pos + length > len(buf):
        raise _Corrupt("truncated length-prefixed string")
    return bytes(buf[pos : pos + length]), pos + length


def _snappy(raw: bytes) -> bytes:
    size, start = _varint(raw, 0)
    out = np.empty(size, dtype=np.uint8)
    if snappy_decompress(np.frombuffer(raw, dtype=np.uint8), start, out) != size:
        raise _Corrupt("corrupt Snappy-compressed block")
    return out.tobytes()


def _block_contents(data: bytes, offset: int, size: int) -> tuple[bytes, bool]:
    """A table block's contents (decompressed) and whether it was compressed."""
    if offset + size + 5 > len(data):
        raise _Corrupt(f"block at {offset} (+{size} bytes) runs past the end of the file")
    kind = data[offset + size]
    raw = data[offset : offset + size]
    if kind == _NO_COMPRESSION:
        return raw, False
    if kind == _SNAPPY:
        return _snappy(raw), True
    raise _Corrupt(f"block at {offset} uses compression type {kind}; only none and Snappy "
                   "are supported")


def _block_entries(block: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(key, value start, value length) of each entry of a table block, in order."""
    if len(block) < 4:
        raise _Corrupt("block shorter than its restart count")
    restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise _Corrupt("block restart array larger than the block")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise _Corrupt("block entry runs past the block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, pos, value_len
        pos += value_len


class _LogScan:
    """The logical records of a LevelDB log file (a ``*.log`` or the MANIFEST), as each
    record's fragments' (offset, length) in ``data``; iterate it once.

    A record cut short by the end of the file (a crash while writing, or a copy cut short) is
    left out, as LevelDB leaves it out, and ``torn_at`` is then its offset. A bad record before
    the end (an unknown type, a length past its block, a fragment out of order) is damage
    LevelDB reports too: it raises :class:`_Corrupt` naming the byte.
    """

    def __init__(self, data) -> None:
        self.data = data
        self.torn_at: int | None = None

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        data, size = self.data, len(self.data)
        pos = 0
        fragments: list[tuple[int, int]] = []
        while pos < size:
            left_in_block = _LOG_BLOCK - pos % _LOG_BLOCK
            if left_in_block < _LOG_HEADER:  # block trailer: zero padding
                pos += left_in_block
                continue
            if pos + _LOG_HEADER > size:
                self.torn_at = fragments[0][0] - _LOG_HEADER if fragments else pos
                return
            length = data[pos + 4] | (data[pos + 5] << 8)
            kind = data[pos + 6]
            start = pos + _LOG_HEADER
            if kind == 0 and length == 0:  # pre-allocated, never written
                pos += left_in_block
                continue
            if length > left_in_block - _LOG_HEADER or not _FULL <= kind <= _LAST:
                raise _Corrupt(f"bad record header at byte {pos} (type {kind}, length "
                               f"{length})")
            if start + length > size:
                self.torn_at = fragments[0][0] - _LOG_HEADER if fragments else pos
                return
            if kind in (_FULL, _FIRST) and fragments and not any(n for _, n in fragments):
                fragments = []  # an empty FIRST that old LevelDB writers left at a block end
            if (kind in (_FULL, _FIRST)) == bool(fragments):
                raise _Corrupt(f"record fragments out of order at byte {pos}")
            pos = start + length
            fragments.append((start, length))
            if kind in (_FULL, _LAST):
                yield fragments
                fragments = []
        if fragments:
            self.torn_at = fragments[0][0] - _LOG_HEADER


def _join(data, fragments: list[tuple[int, int]]) -> bytes:
    return b"".join(bytes(data[o : o + n]) for o, n in fragments)


def _sub_fragments(fragments, starts, offset: int, length: int) -> tuple[tuple[int, int], ...]:
    """The file ranges holding ``record[offset:offset+length]`` of a fragmented record."""
    out = []
    i = bisect.bisect_right(starts, offset) - 1
    while length > 0:
        file_offset, size = fragments[i]
        inner = offset - starts[i]
        take = min(size - inner, length)
        out.append((file_offset + inner, take))
        offset += take
        length -= take
        i += 1
    return tuple(out)


class LevelDBReader:
    """A LevelDB database read without LevelDB: random access by record index, in key byte order.

    Nothing is written to the database folder (no ``LOCK``, no log replay). At opening, every
    live table and log is scanned once to find the newest version of each key; values are read
    from the files on demand (decompressed blocks are cached), so memory holds only the keys.
    """

    backend_name = "leveldb"

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.exists(path):
            raise DataError(f"LevelDB '{path}' does not exist")
        if not os.path.isdir(path):
            raise DataError(f"LevelDB '{path}' is not a folder: a LevelDB database is a folder "
                            "with a CURRENT file")
        if not is_leveldb(path):
            raise DataError(f"LevelDB '{path}' has no CURRENT file: not a LevelDB database")
        self._files: list[str] = []
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._blocks: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        latest: dict[bytes, tuple[int, tuple | None]] = {}
        self._manifest_cut = ""
        tables = self._live_tables()
        for name in tables:
            self._scan_table(name, latest)
        torn = [cut for cut in map(lambda name: self._scan_log(name, latest),
                                   self._live_logs()) if cut]
        self.keys = sorted(k for k, (_, loc) in latest.items() if loc is not None)
        self._locations = [latest[k][1] for k in self.keys]
        if not self.keys:
            unlisted = sorted(n for n in os.listdir(path) if n.endswith((".ldb", ".sst"))
                              and n not in tables)
            causes = torn + ([self._manifest_cut] if self._manifest_cut else []) + (
                [f"table(s) {', '.join(unlisted)} are in the folder but not in its MANIFEST"]
                if unlisted else [])
            raise DataError(f"LevelDB '{path}' is empty" + (
                f" but for damage: {'; '.join(causes)}; copy or convert it again" if causes
                else ""))
        for cut in torn:
            # LevelDB drops such a write silently; a copy cut short looks the same, so say so.
            get_logger().warning("LevelDB '%s': %s; its records are left out, as LevelDB "
                                 "leaves them out (%d records read)", path, cut, len(self.keys))

    # --- opening --------------------------------------------------------------------------------
    def _read(self, name: str) -> bytes:
        try:
            with open(os.path.join(self.path, name), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise DataError(f"LevelDB '{self.path}': file {name} is missing (the database is "
                            "incomplete)") from None
        except OSError as exc:
            raise DataError(f"LevelDB '{self.path}': cannot read {name}: {exc.strerror}") from None

    def _live_tables(self) -> list[str]:
        current = self._read("CURRENT").decode("ascii", errors="replace")
        manifest = current.strip()
        if not current.endswith("\n") or not re.fullmatch(r"MANIFEST-\d+", manifest):
            raise DataError(f"LevelDB '{self.path}': CURRENT should name a MANIFEST file, "
                            f"found {current[:40]!r}")
        data = self._read(manifest)
        live: dict[int, int] = {}  # table number -> its size in bytes
        self._log_number = self._prev_log_number = 0
        seen: set[int] = set()
        records = _LogScan(data)
        try:
            for fragments in records:
                seen.update(self._apply_edit(_join(data, fragments), live))
        except _Corrupt as exc:
            raise DataError(f"LevelDB '{self.path}' is damaged: {manifest} is corrupt: "
                            f"{exc}") from None
        cut = "" if records.torn_at is None else f", cut short at byte {records.torn_at}"
        if not {2, 3, 4} <= seen:  # LevelDB itself refuses a MANIFEST without these
            raise DataError(f"LevelDB '{self.path}' is damaged: {manifest} ({len(data)} bytes"
                            f"{cut}) lacks the log number, next file number and last sequence "
                            "that LevelDB requires")
        if records.torn_at is not None:
            self._manifest_cut = (f"{manifest} ends in a record cut short at byte "
                                  f"{records.torn_at} of {len(data)}")
            get_logger().warning("LevelDB '%s': %s; left out, as LevelDB leaves it out",
                                 self.path, self._manifest_cut)
        self._table_sizes = live
        names = []
        for number in sorted(live):
            for suffix in (".ldb", ".sst"):  # .sst is the name older LevelDB versions used
                name = f"{number:06d}{suffix}"
                if os.path.exists(os.path.join(self.path, name)):
                    break
            else:
                raise DataError(f"LevelDB '{self.path}': table {number:06d}.ldb listed in "
                                f"{manifest} is missing (the database is incomplete)")
            names.append(name)
        return names

    def _apply_edit(self, edit: bytes, live: dict[int, int]) -> set[int]:
        """Apply one VersionEdit of the MANIFEST to the live tables (number -> size); the
        tags it held."""
        pos = 0
        tags = set()
        while pos < len(edit):
            tag, pos = _varint(edit, pos)
            tags.add(tag)
            if tag == 1:  # comparator
                name, pos = _length_prefixed(edit, pos)
                if name != _BYTEWISE:
                    raise DataError(f"LevelDB '{self.path}' orders its keys with comparator "
                                    f"{name.decode(errors='replace')!r}; Caffe databases use "
                                    f"{_BYTEWISE.decode()}")
            elif tag in (2, 9):  # log number, previous log number
                number, pos = _varint(edit, pos)
                if tag == 2:
                    self._log_number = number
                else:
                    self._prev_log_number = number
            elif tag in (3, 4):  # next file number, last sequence
                _, pos = _varint(edit, pos)
            elif tag == 5:  # compaction pointer: level, internal key
                _, pos = _varint(edit, pos)
                _, pos = _length_prefixed(edit, pos)
            elif tag == 6:  # deleted file: level, number
                _, pos = _varint(edit, pos)
                number, pos = _varint(edit, pos)
                live.pop(number, None)
            elif tag == 7:  # new file: level, number, size, smallest, largest
                _, pos = _varint(edit, pos)
                number, pos = _varint(edit, pos)
                live[number], pos = _varint(edit, pos)
                _, pos = _length_prefixed(edit, pos)
                _, pos = _length_prefixed(edit, pos)
            else:
                raise _Corrupt(f"unknown VersionEdit tag {tag}")
        return tags

    def _live_logs(self) -> list[str]:
        logs = []
        for name in os.listdir(self.path):
            stem, _, suffix = name.partition(".")
            if suffix == "log" and stem.isdigit():
                number = int(stem)
                if number >= self._log_number or number == self._prev_log_number:
                    logs.append((number, name))
        return [name for _, name in sorted(logs)]

    def _file_id(self, name: str) -> int:
        self._files.append(os.path.join(self.path, name))
        return len(self._files) - 1

    @staticmethod
    def _offer(latest: dict, key: bytes, sequence: int, location: tuple | None) -> None:
        seen = latest.get(key)
        if seen is None or sequence > seen[0]:
            latest[key] = (sequence, location)

    def _scan_table(self, name: str, latest: dict) -> None:
        data = self._read(name)
        file_id = self._file_id(name)
        expected = self._table_sizes.get(int(name.partition(".")[0]), len(data))
        if len(data) != expected:
            raise DataError(
                f"LevelDB '{self.path}' is damaged: table {name} has {len(data)} bytes where "
                f"its MANIFEST records {expected} ({100 * len(data) / max(expected, 1):.0f}%); "
                "copy or convert it again")
        try:
            if len(data) < _FOOTER_SIZE or int.from_bytes(data[-8:], "little") != _TABLE_MAGIC:
                raise _Corrupt("not a LevelDB table (bad footer magic number)")
            footer = data[-_FOOTER_SIZE:]
            _, pos = _varint(footer, 0)  # metaindex block: filters only, not needed
            _, pos = _varint(footer, pos)
            index_offset, pos = _varint(footer, pos)
            index_size, pos = _varint(footer, pos)
            index, _ = _block_contents(data, index_offset, index_size)
            for _, start, _ in _block_entries(index):
                offset, pos = _varint(index, start)
                size, _ = _varint(index, pos)
                block, compressed = _block_contents(data, offset, size)
                for internal_key, value_start, value_len in _block_entries(block):
                    if len(internal_key) < 8:
                        raise _Corrupt("internal key shorter than 8 bytes")
                    tag = int.from_bytes(internal_key[-8:], "little")
                    if tag & 0xFF == _TYPE_DELETION:
                        location = None
                    elif compressed:
                        location = ("block", file_id, offset, size, value_start, value_len)
                    else:
                        location = ("file", file_id, ((offset + value_start, value_len),))
                    self._offer(latest, internal_key[:-8], tag >> 8, location)
        except _Corrupt as exc:
            raise DataError(f"LevelDB '{self.path}' is damaged: table {name} is corrupt: "
                            f"{exc}") from None

    def _scan_log(self, name: str, latest: dict) -> str:
        """Add the log's records to ``latest``; a description of its torn end ("" if none)."""
        data = self._read(name)
        file_id = self._file_id(name)
        records = _LogScan(data)
        try:
            for fragments in records:
                record = _join(data, fragments)
                starts = []
                total = 0
                for _, size in fragments:
                    starts.append(total)
                    total += size
                if len(record) < 12:
                    raise _Corrupt("write batch shorter than its header")
                sequence = int.from_bytes(record[:8], "little")
                count = int.from_bytes(record[8:12], "little")
                pos = 12
                for i in range(count):
                    if pos >= len(record):
                        raise _Corrupt("write batch holds fewer entries than its count")
                    kind = record[pos]
                    key, pos = _length_prefixed(record, pos + 1)
                    if kind == _TYPE_VALUE:
                        length, pos = _varint(record, pos)
                        if pos + length > len(record):
                            raise _Corrupt("value runs past its write batch")
                        location = ("file", file_id,
                                    _sub_fragments(fragments, starts, pos, length))
                        pos += length
                    elif kind == _TYPE_DELETION:
                        location = None
                    else:
                        raise _Corrupt(f"unknown write batch entry type {kind}")
                    self._offer(latest, key, sequence + i, location)
        except _Corrupt as exc:
            raise DataError(f"LevelDB '{self.path}' is damaged: log {name} is corrupt: "
                            f"{exc}") from None
        if records.torn_at is None:
            return ""
        return (f"log {name} ends in a write batch cut short at byte {records.torn_at} of "
                f"{len(data)}")

    # --- reading --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    def key(self, index: int) -> bytes:
        return self.keys[index]

    def _fd(self, file_id: int) -> int:
        fd = self._fds.get(file_id)
        if fd is not None:
            self._fds.move_to_end(file_id)
            return fd
        try:
            fd = os.open(self._files[file_id], os.O_RDONLY)
        except OSError as exc:
            raise DataError(f"LevelDB '{self.path}': cannot read {self._files[file_id]}: "
                            f"{exc.strerror}") from None
        self._fds[file_id] = fd
        if len(self._fds) > _OPEN_FILES:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def _pread(self, file_id: int, offset: int, length: int) -> bytes:
        data = os.pread(self._fd(file_id), length, offset)
        if len(data) != length:
            raise DataError(f"LevelDB '{self.path}': {self._files[file_id]} was truncated "
                            "while reading")
        return data

    def value(self, index: int) -> bytes:
        location = self._locations[index]
        with self._lock:
            if location[0] == "file":
                _, file_id, ranges = location
                return b"".join(self._pread(file_id, o, n) for o, n in ranges)
            _, file_id, offset, size, start, length = location
            block = self._blocks.get((file_id, offset))
            if block is None:
                raw = self._pread(file_id, offset, size + 5)
                try:
                    block, _ = _block_contents(raw, 0, size)
                except _Corrupt as exc:
                    raise DataError(f"LevelDB '{self.path}': {self._files[file_id]} is "
                                    f"corrupt: {exc}") from None
                self._blocks[(file_id, offset)] = block
                if len(self._blocks) > _CACHED_BLOCKS:
                    self._blocks.popitem(last=False)
            else:
                self._blocks.move_to_end((file_id, offset))
            return block[start : start + length]

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self._blocks.clear()


class LevelDBWriter(BatchedWriter):
    """A new LevelDB written through plyvel with Caffe's options (64 KiB blocks, a 256 MiB
    write buffer), in write batches of ``commit_every`` records."""

    backend_name = "leveldb"

    def __init__(self, path: str, commit_every: int = 1000) -> None:
        try:
            import plyvel
        except ImportError:
            raise DataError("writing LevelDB needs plyvel (pip install plyvel)") from None
        if os.path.lexists(path):
            raise DataError(f"'{path}' already exists; remove it or choose another output path")
        self.path = path
        self.commit_every = commit_every
        try:
            self.db = plyvel.DB(path, create_if_missing=True, error_if_exists=True,
                                block_size=65536, write_buffer_size=256 << 20,
                                max_open_files=100)
        except plyvel.Error as exc:
            raise DataError(f"cannot create LevelDB '{path}': {exc}") from None
        self._pending: list[tuple[bytes, bytes]] = []

    def commit(self) -> None:
        import plyvel

        if not self._pending:
            return
        try:
            with self.db.write_batch() as batch:
                for key, value in self._pending:
                    batch.put(key, value)
        except plyvel.Error as exc:
            raise DataError(f"cannot write to LevelDB '{self.path}': {exc}") from None
        self._pending.clear()

    def close(self) -> None:
        if self.db.closed:
            return
        try:
            self.commit()
        finally:
            self.db.close()
