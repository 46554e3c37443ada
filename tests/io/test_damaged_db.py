"""Damaged databases: a truncated, empty or garbled LMDB or LevelDB is one line naming the
database and what is wrong, never a crash (LMDB's memory map read past a file's end kills
the process with SIGBUS), in the readers and in every command that reads one."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import plyvel
import pytest

from pyforge.errors import DataError
from pyforge.io.db import open_reader
from pyforge.io.db_leveldb import LevelDBReader
from pyforge.io.db_lmdb import LMDBReader, LMDBWriter
from pyforge.io.lmdb_check import check_lmdb_file
from pyforge.proto import caffe_pb2
from tests.logcapture import capture_log

PAGE = 4096


def datum(i: int, size: int = 28) -> bytes:
    image = np.random.default_rng(i).integers(0, 256, (1, size, size), dtype=np.uint8)
    return caffe_pb2.Datum(channels=1, height=size, width=size, data=image.tobytes(),
                           label=i % 10).SerializeToString()


@pytest.fixture
def lmdb_db(tmp_path):
    """1,000 MNIST-sized records: a tree three pages deep (branch pages above the leaves)."""
    path = tmp_path / "lmdb"
    writer = LMDBWriter(str(path))
    for i in range(1000):
        writer.put(b"%08d" % i, datum(i))
    writer.close()
    return path


@pytest.fixture
def big_lmdb(tmp_path):
    """Records of 10,000 bytes, each in overflow pages of its own."""
    path = tmp_path / "big"
    writer = LMDBWriter(str(path))
    for i in range(20):
        writer.put(b"%08d" % i, datum(i, size=100))
    writer.close()
    return path


def damaged_copy(source, tmp_path, name, edit):
    target = tmp_path / name
    shutil.copytree(source, target)
    data = bytearray((target / "data.mdb").read_bytes())
    (target / "data.mdb").write_bytes(bytes(edit(data)))
    return str(target)


def meta(data: bytes, page: int) -> tuple[int, int, int]:
    """(main tree root, last page number, transaction id) of meta page 0 or 1."""
    base = page * PAGE + 16
    root = struct.unpack_from("<Q", data, base + 24 + 48 + 40)[0]
    last, txn = struct.unpack_from("<QQ", data, base + 120)
    return root, last, txn


def newest_meta(data: bytes) -> int:
    return max((0, 1), key=lambda page: meta(data, page)[2])


@pytest.mark.parametrize("fraction", [0.33, 0.90])
def test_truncated_lmdb_says_how_much_is_missing(lmdb_db, tmp_path, fraction):
    path = damaged_copy(lmdb_db, tmp_path, "cut", lambda d: d[: int(len(d) * fraction)])
    # The check alone (ordinary reads): LMDBReader on this file would be killed by SIGBUS were
    # the check to fail, taking pytest with it; the commands below run it in subprocesses.
    with pytest.raises(DataError, match=rf"LMDB '{path}' is truncated: data.mdb has \d+ of the "
                                        rf"\d+ bytes its header gives \(\d+ pages of 4096; "
                                        rf"{round(fraction * 100)}%\)"):
        check_lmdb_file(os.path.join(path, "data.mdb"), path)


def test_zero_length_and_garbled_lmdb(lmdb_db, tmp_path):
    empty = damaged_copy(lmdb_db, tmp_path, "empty", lambda d: b"")
    with pytest.raises(DataError, match=rf"LMDB '{empty}' is damaged: its data.mdb is empty"):
        LMDBReader(empty)

    def garble(data):
        data[:200] = bytes(range(200))
        return data

    garbled = damaged_copy(lmdb_db, tmp_path, "garbled", garble)
    with pytest.raises(DataError, match=rf"LMDB '{garbled}' is damaged or not an LMDB: .* does "
                                        "not start with an LMDB header"):
        LMDBReader(garbled)


def test_a_header_that_fits_a_truncated_file_is_caught_in_the_tree(lmdb_db, tmp_path):
    """The newest meta page rewritten to claim what a cut file holds: the size check passes,
    but the record tree points past the end of the file."""

    def lie(data):
        keep = 40
        struct.pack_into("<Q", data, newest_meta(data) * PAGE + 16 + 120, keep - 1)
        return data[: keep * PAGE]

    path = damaged_copy(lmdb_db, tmp_path, "liar", lie)
    with pytest.raises(DataError, match=rf"LMDB '{path}' is damaged: page \d+ of 40 .*lies "
                                        "outside the file|past the end of the file"):
        LMDBReader(path)


def test_a_branch_page_pointing_past_the_end_is_caught(lmdb_db, tmp_path):
    def corrupt_branch(data):
        root, last, _ = meta(data, newest_meta(data))
        base = root * PAGE
        assert struct.unpack_from("<H", data, base + 10)[0] & 0x01  # a branch page
        node = struct.unpack_from("<H", data, base + 16)[0]
        struct.pack_into("<HH", data, base + node, (last + 500) & 0xFFFF, (last + 500) >> 16)
        return data

    path = damaged_copy(lmdb_db, tmp_path, "branch", corrupt_branch)
    with pytest.raises(DataError, match=rf"LMDB '{path}' is damaged: page \d+ of \d+ points to "
                                        "a page that lies past the end of the file"):
        LMDBReader(path)


def test_a_large_record_pointing_past_the_end_is_caught(big_lmdb, tmp_path):
    def corrupt_overflow(data):
        root, last, _ = meta(data, newest_meta(data))
        base = root * PAGE
        assert struct.unpack_from("<H", data, base + 10)[0] & 0x02  # the root is a leaf
        node = base + struct.unpack_from("<H", data, base + 16)[0]
        flags, ksize = struct.unpack_from("<HH", data, node + 4)
        assert flags & 0x01  # F_BIGDATA: the record lives in overflow pages
        struct.pack_into("<Q", data, node + 8 + ksize, last - 1)  # 3 pages from the last
        return data

    path = damaged_copy(big_lmdb, tmp_path, "overflow", corrupt_overflow)
    with pytest.raises(DataError, match="has a large record whose pages lie past the end"):
        LMDBReader(path)


def test_whole_databases_pass_the_check(lmdb_db, big_lmdb):
    for path in (lmdb_db, big_lmdb):
        check_lmdb_file(str(path / "data.mdb"), str(path))
        reader = LMDBReader(str(path))
        assert len(reader) in (1000, 20) and reader.value(len(reader) - 1)
        reader.close()


# --- LevelDB ----------------------------------------------------------------------------------
def leveldb(path, records: int, per_batch: int, compact: bool = False) -> str:
    db = plyvel.DB(str(path), create_if_missing=True)
    for start in range(0, records, per_batch):
        with db.write_batch() as batch:
            for i in range(start, min(start + per_batch, records)):
                batch.put(b"%08d" % i, datum(i))
    if compact:
        db.compact_range()
    db.close()
    return str(path)


def only(folder, suffix: str) -> str:
    names = [n for n in os.listdir(folder) if n.endswith(suffix) or n.startswith(suffix)]
    (name,) = [n for n in names if os.path.getsize(os.path.join(folder, n))]
    return os.path.join(folder, name)


def cut(path: str, fraction: float) -> None:
    os.truncate(path, int(os.path.getsize(path) * fraction))


def test_leveldb_log_cut_short_keeps_its_complete_writes_with_a_warning(tmp_path):
    path = leveldb(tmp_path / "db", 200, per_batch=10)
    cut(only(path, ".log"), 0.90)
    with capture_log() as log:
        reader = LevelDBReader(path)
    assert 150 <= len(reader) < 200
    assert f"LevelDB '{path}': log" in log.text and "ends in a write batch cut short" in log.text
    reader.close()


@pytest.mark.parametrize("fraction", [0.33, 0.90])
def test_leveldb_whose_only_write_is_cut_short_says_so(tmp_path, fraction):
    path = leveldb(tmp_path / "db", 200, per_batch=200)
    cut(only(path, ".log"), fraction)
    with pytest.raises(DataError, match=rf"LevelDB '{path}' is empty but for damage: log "
                                        r"\d+\.log ends in a write batch cut short at byte 0 of "
                                        r"\d+"):
        LevelDBReader(path)


@pytest.mark.parametrize("fraction", [0.0, 0.33, 0.90])
def test_truncated_leveldb_table_compares_with_the_manifest(tmp_path, fraction):
    path = leveldb(tmp_path / "db", 300, per_batch=100, compact=True)
    cut(only(path, ".ldb"), fraction)
    with pytest.raises(DataError, match=rf"LevelDB '{path}' is damaged: table \d+\.ldb has \d+ "
                                        rf"bytes where its MANIFEST records \d+ "
                                        rf"\({round(fraction * 100)}%\)"):
        LevelDBReader(path)


@pytest.mark.parametrize("damage,expected", [
    (lambda d: b"", r"MANIFEST-\d+ \(0 bytes\) lacks the log number"),
    (lambda d: d[: len(d) - 3], r"empty but for damage: MANIFEST-\d+ ends in a record cut "
                                r"short at byte \d+ of \d+; table\(s\) \d+\.ldb are in the "
                                r"folder but not in its MANIFEST"),
    (lambda d: bytes(b ^ 0x5A for b in d[:16]) + d[16:], r"MANIFEST-\d+ is corrupt: bad "
                                                          r"record header at byte 0"),
])
def test_damaged_leveldb_manifest(tmp_path, damage, expected):
    path = leveldb(tmp_path / "db", 300, per_batch=100, compact=True)
    manifest = only(path, "MANIFEST")
    with open(manifest, "rb") as handle:
        data = handle.read()
    with open(manifest, "wb") as handle:
        handle.write(damage(data))
    with pytest.raises(DataError, match=rf"LevelDB '{path}' is (damaged: )?" + expected):
        LevelDBReader(path)


def test_garbled_leveldb_log_record_is_corruption_not_a_torn_end(tmp_path):
    path = leveldb(tmp_path / "db", 50, per_batch=10)
    log_file = only(path, ".log")
    with open(log_file, "r+b") as handle:
        handle.seek(6)
        handle.write(b"\x09")  # the first record's type: no such type
    with pytest.raises(DataError, match=r"log \d+\.log is corrupt: bad record header at byte 0 "
                                        r"\(type 9"):
        open_reader(path, "leveldb")


# --- every command that reads a database -----------------------------------------------------
NET = """name: "n"
layer {{ name: "d" type: "Data" top: "data" top: "label"
  data_param {{ source: "{db}" batch_size: 4 backend: LMDB }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""


def run_pyforge(argv, cwd):
    # A subprocess: were the guard to fail, SIGBUS would kill pytest itself.
    return subprocess.run([sys.executable, "-m", "pyforge", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_every_command_reports_a_truncated_lmdb_in_one_line(lmdb_db, tmp_path):
    db = damaged_copy(lmdb_db, tmp_path, "cut", lambda d: d[: len(d) // 3])
    (tmp_path / "net.prototxt").write_text(NET.format(db=db))
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.01\n'
                                              'lr_policy: "fixed"\nmax_iter: 1\n')
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")  # never read: the net fails to build first
    commands = {
        "train": ["train", "solver.prototxt"],
        "test": ["test", "--model=net.prototxt", f"--weights={weights}"],
        "time": ["time", "--model=net.prototxt"],
        "compute-image-mean": ["compute-image-mean", db],
    }
    for name, argv in commands.items():
        result = run_pyforge(argv, tmp_path)
        errors = [line for line in result.stderr.splitlines() if line.startswith("pyforge:")]
        assert result.returncode == 1, (name, result.returncode, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        assert len(errors) == 1 and f"LMDB '{db}' is truncated" in errors[0], (name, errors)
