"""LevelDB: the read-only reader (LevelDB's file format read directly: no LOCK, no writes),
the plyvel writer, the Data layer on Caffe's default backend, and clear errors."""

from __future__ import annotations

import os
import random

import numpy as np
import plyvel
import pytest

from pyforge.errors import DataError, PyforgeError
from pyforge.io.db import LEVELDB, LMDB, open_reader, open_writer
from pyforge.io.db_leveldb import LevelDBReader, LevelDBWriter
from pyforge.io.db_lmdb import LMDBWriter
from pyforge.kernels.snappy import snappy_decompress
from pyforge.proto import caffe_pb2
from tests.io.util import make_layer, run
from tests.logcapture import capture_log


def _plyvel_records(path):
    db = plyvel.DB(str(path))
    try:
        return list(db.iterator())
    finally:
        db.close()


def _snapshot(folder):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.fixture
def mixed_db(tmp_path):
    """A LevelDB with data in tables and logs, overwrites, deletions and large values; and
    the expected key -> value mapping."""
    path = tmp_path / "mixed"
    rng = random.Random(0)
    truth = {}
    db = plyvel.DB(str(path), create_if_missing=True, write_buffer_size=64 << 10)
    for _ in range(6):
        with db.write_batch() as batch:
            for i in range(300):
                key = b"%05d" % rng.randrange(1000)
                if rng.random() < 0.1:
                    batch.delete(key)
                    truth.pop(key, None)
                else:
                    # Mostly compressible values, some large ones spanning log blocks.
                    size = 40000 if i % 97 == 0 else rng.randrange(1, 600)
                    value = bytes([rng.randrange(4)]) * (size // 2) + os.urandom(size - size // 2)
                    batch.put(key, value)
                    truth[key] = value
    db.close()
    return path, truth


def test_reader_matches_leveldb_itself(mixed_db):
    path, truth = mixed_db
    names = os.listdir(path)
    assert any(n.endswith(".ldb") for n in names) and any(n.endswith(".log") for n in names)
    reader = LevelDBReader(str(path))
    assert reader.keys == sorted(truth)
    assert [reader.value(i) for i in range(len(reader))] == [truth[k] for k in reader.keys]
    assert _plyvel_records(path) == [(k, truth[k]) for k in reader.keys]
    reader.close()


def test_compacted_and_uncompressed_tables(tmp_path):
    records = {b"%04d" % i: bytes([i % 7]) * (i % 300 + 1) for i in range(2000)}
    for compression in ("snappy", None):
        path = tmp_path / f"db_{compression}"
        db = plyvel.DB(str(path), create_if_missing=True, compression=compression)
        for key, value in records.items():
            db.put(key, value)
        db.compact_range()  # everything into tables
        db.close()
        reader = open_reader(str(path), LEVELDB)
        assert reader.backend_name == "leveldb"
        assert len(reader) == 2000
        assert all(reader.value(i) == records[reader.key(i)] for i in range(2000))
        reader.close()


def test_reading_writes_nothing_and_takes_no_lock(mixed_db):
    path, truth = mixed_db
    (path / "LOCK").unlink()  # as a dataset copied without it
    before = _snapshot(path)
    reader = LevelDBReader(str(path))
    other = LevelDBReader(str(path))  # a second reader (a test net) at the same time
    assert reader.value(5) == other.value(5) == truth[reader.key(5)]
    reader.close()
    other.close()
    assert _snapshot(path) == before
    assert not (path / "LOCK").exists()


def test_read_only_folder(mixed_db):
    path, truth = mixed_db
    for item in path.iterdir():
        item.chmod(0o444)
    path.chmod(0o555)
    try:
        reader = LevelDBReader(str(path))
        assert len(reader) == len(truth)
        reader.close()
    finally:
        path.chmod(0o755)


def test_writer_output_reads_back_everywhere(tmp_path):
    path = tmp_path / "out"
    writer = open_writer(str(path), "leveldb", commit_every=7)
    assert isinstance(writer, LevelDBWriter)
    items = [(b"%08d" % i, b"value %d" % i) for i in range(20)]
    writer.put_many(items)
    writer.close()
    writer.close()  # closing twice is harmless
    assert _plyvel_records(path) == items
    reader = open_reader(str(path), LEVELDB)
    assert [(reader.key(i), reader.value(i)) for i in range(len(reader))] == items
    reader.close()


def test_writer_refuses_an_existing_path(tmp_path):
    with pytest.raises(DataError, match="already exists"):
        LevelDBWriter(str(tmp_path))


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(DataError, match=r"LevelDB '.*nowhere' does not exist"):
        open_reader(str(tmp_path / "nowhere"), LEVELDB)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no CURRENT file: not a LevelDB"):
        open_reader(str(tmp_path / "empty"), LEVELDB)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        open_reader(str(tmp_path / "file"), LEVELDB)


def test_lmdb_backend_on_a_leveldb_names_the_fix(tmp_path):
    writer = LevelDBWriter(str(tmp_path / "db"))
    writer.put(b"a", b"b")
    writer.close()
    with pytest.raises(DataError, match="is a LevelDB database; set backend: LEVELDB"):
        open_reader(str(tmp_path / "db"), LMDB)


def test_leveldb_backend_on_an_lmdb_reads_it_with_a_warning(tmp_path):
    writer = LMDBWriter(str(tmp_path / "db"))
    writer.put(b"a", b"b")
    writer.close()
    with capture_log() as log:
        reader = open_reader(str(tmp_path / "db"), LEVELDB)
    assert reader.backend_name == "lmdb" and reader.value(0) == b"b"
    reader.close()
    assert "is an LMDB; reading it as LMDB" in log.text


def test_missing_table_and_corrupt_table(tmp_path):
    path = tmp_path / "db"
    db = plyvel.DB(str(path), create_if_missing=True)
    for i in range(100):
        db.put(b"%03d" % i, b"x" * 100)
    db.compact_range()
    db.close()
    table = next(p for p in path.iterdir() if p.suffix == ".ldb")
    data = table.read_bytes()
    table.write_bytes(data[:-8] + b"\0" * 8)
    with pytest.raises(DataError, match=rf"table {table.name} is corrupt: .*footer"):
        LevelDBReader(str(path))
    table.unlink()
    with pytest.raises(DataError, match=rf"{table.stem}.ldb listed in MANIFEST-\d+ is missing"):
        LevelDBReader(str(path))


def test_empty_database(tmp_path):
    plyvel.DB(str(tmp_path / "db"), create_if_missing=True).close()
    with pytest.raises(DataError, match="is empty"):
        LevelDBReader(str(tmp_path / "db"))


def test_unknown_backend_name():
    with pytest.raises(DataError, match="unknown backend 'rocksdb'"):
        open_writer("x", "rocksdb")


def _snappy(stream: bytes, size: int):
    out = np.zeros(size, dtype=np.uint8)
    return snappy_decompress(np.frombuffer(stream, dtype=np.uint8), 0, out), out.tobytes()


def test_snappy_literals_and_overlapping_copies():
    # literal "ab" (tag 0b000001_00), then copy length 6 offset 2 (1-byte offset form).
    stream = bytes([0x04]) + b"ab" + bytes([((6 - 4) << 2) | 1, 2])
    assert _snappy(stream, 8) == (8, b"abababab")
    # a 2-byte-offset copy and a long literal (61 bytes: 1 extra length byte).
    literal = bytes(range(61))
    stream = bytes([60 << 2, 60]) + literal + bytes([(10 - 1) << 2 | 2, 61, 0])
    assert _snappy(stream, 71) == (71, literal + literal[:10])


@pytest.mark.parametrize("stream", [
    bytes([0x04]) + b"a",  # literal runs past the input
    bytes([((6 - 4) << 2) | 1, 2]),  # copy before any output
    bytes([0x04]) + b"ab" + bytes([((6 - 4) << 2) | 1, 9]),  # offset beyond the output
])
def test_snappy_corruption_is_detected(stream):
    assert _snappy(stream, 16)[0] == -1


def _datum_db(path, images, labels, writer_cls=LevelDBWriter):
    writer = writer_cls(str(path))
    for i, (image, label) in enumerate(zip(images, labels)):
        c, h, w = image.shape
        datum = caffe_pb2.Datum(channels=c, height=h, width=w, data=image.tobytes(), label=label)
        writer.put(b"%08d" % i, datum.SerializeToString())
    writer.close()


def test_data_layer_reads_leveldb_by_default(tmp_path):
    """backend LEVELDB is Caffe's default: a Data layer without a backend reads LevelDB."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(5, 2, 3, 4), dtype=np.uint8)
    _datum_db(tmp_path / "db", images, [4, 3, 2, 1, 0])
    with capture_log() as log:
        layer = make_layer(f"""name: "d" type: "Data" top: "data" top: "label"
            data_param {{ source: "{tmp_path}/db" batch_size: 3 }}""")
        (d1, l1), (d2, l2) = run(layer, forwards=2)
    layer.close()
    assert f"Opened leveldb {tmp_path}/db" in log.messages
    np.testing.assert_array_equal(d1, images[:3])
    np.testing.assert_array_equal(d2, images[[3, 4, 0]])
    assert list(l1) + list(l2) == [4, 3, 2, 1, 0, 4]


def test_data_layer_bad_leveldb_record_names_key(tmp_path):
    writer = LevelDBWriter(str(tmp_path / "db"))
    writer.put(b"00000000", b"\xff\xff\xff not a datum")
    writer.close()
    with pytest.raises(PyforgeError, match=r"db record '00000000': not a valid Datum record"):
        run(make_layer(f"""name: "d" type: "Data" top: "data"
            data_param {{ source: "{tmp_path}/db" batch_size: 1 }}"""), n_tops=1)
