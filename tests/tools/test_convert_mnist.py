"""pyforge.tools.convert_mnist reproduces Caffe's convert_mnist_data record for record."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from pyforge.errors import DataError
from pyforge.io.db import LEVELDB, LMDB, open_reader
from pyforge.proto import caffe_pb2
from pyforge.tools import convert_mnist, read_idx_images, read_idx_labels

SPLITS = [
    ("train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 4000),
    ("test", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 1000),
]


def _records(path: Path) -> list[tuple[bytes, bytes]]:
    reader = open_reader(str(path), LMDB)
    try:
        return [(reader.key(i), reader.value(i)) for i in range(len(reader))]
    finally:
        reader.close()


def _write_idx(path: Path, magic: int, dims: list[int], payload: bytes, compress=False) -> Path:
    data = struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def small_idx(tmp_path):
    """A valid 3-item, 2x3 raw IDX pair."""
    pixels = bytes(range(18))
    images = _write_idx(tmp_path / "images", 2051, [3, 2, 3], pixels)
    labels = _write_idx(tmp_path / "labels", 2049, [3], bytes([7, 0, 9]))
    return images, labels


@pytest.mark.parametrize("split,images,labels,count", SPLITS, ids=[s[0] for s in SPLITS])
def test_matches_caffe_lmdb(caffe_ref, tmp_path, split, images, labels, count):
    mnist = caffe_ref / "mnist"
    out = tmp_path / f"mnist_{split}_lmdb"
    assert convert_mnist(mnist / images, mnist / labels, out) == count

    ours = _records(out)
    caffe = _records(mnist / f"mnist_{split}_lmdb")
    assert len(ours) == len(caffe) == count
    assert [k for k, _ in ours] == [b"%08d" % i for i in range(count)]
    for (our_key, our_value), (caffe_key, caffe_value) in zip(ours, caffe, strict=True):
        assert our_key == caffe_key
        mine, theirs = caffe_pb2.Datum(), caffe_pb2.Datum()
        mine.ParseFromString(our_value)
        theirs.ParseFromString(caffe_value)
        fields = ("channels", "height", "width", "label", "encoded")
        assert [getattr(mine, f) for f in fields] == [getattr(theirs, f) for f in fields], our_key
        assert (theirs.channels, theirs.height, theirs.width) == (1, 28, 28)
        assert mine.data == theirs.data, our_key
        assert not mine.float_data and not theirs.float_data
        assert our_value == caffe_value, f"record {our_key!r}: Datum bytes differ"


def test_labels_and_pixels_agree_with_idx(caffe_ref):
    mnist = caffe_ref / "mnist"
    images = read_idx_images(mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx_labels(mnist / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (1000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (1000,) and set(labels.tolist()) == set(range(10))
    first = caffe_pb2.Datum.FromString(_records(mnist / "mnist_test_lmdb")[0][1])
    assert first.label == labels[0]
    assert first.data == images[0].tobytes()


def test_raw_and_gzip_give_same_records(tmp_path, small_idx):
    images, labels = small_idx
    gz_images = tmp_path / "images.gz"
    gz_images.write_bytes(gzip.compress(images.read_bytes()))
    convert_mnist(images, labels, tmp_path / "raw_db")
    convert_mnist(gz_images, labels, tmp_path / "gz_db")
    raw = _records(tmp_path / "raw_db")
    assert raw == _records(tmp_path / "gz_db")
    assert [k for k, _ in raw] == [b"00000000", b"00000001", b"00000002"]
    second = caffe_pb2.Datum.FromString(raw[1][1])
    assert (second.channels, second.height, second.width, second.label) == (1, 2, 3, 0)
    assert second.HasField("label")  # label 0 is written, as Caffe's set_label(0) does
    assert second.data == bytes(range(6, 12))


def test_progress_is_reported(caffe_ref, tmp_path):
    calls = []
    mnist = caffe_ref / "mnist"
    convert_mnist(
        mnist / "train-images-idx3-ubyte.gz",
        mnist / "train-labels-idx1-ubyte.gz",
        tmp_path / "db",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1000, 4000), (2000, 4000), (3000, 4000), (4000, 4000)]


def test_bad_image_magic(tmp_path, small_idx):
    _, labels = small_idx
    bad = _write_idx(tmp_path / "bad", 2049, [3, 2, 3], bytes(18))
    with pytest.raises(DataError, match=r"bad: .*magic number expected 2051, found 2049"):
        convert_mnist(bad, labels, tmp_path / "db")
    assert not (tmp_path / "db").exists()


def test_bad_label_magic(tmp_path, small_idx):
    images, _ = small_idx
    bad = _write_idx(tmp_path / "bad", 2051, [3], bytes(3), compress=True)
    with pytest.raises(DataError, match=r"bad: .*label.*expected 2049, found 2051"):
        convert_mnist(images, bad, tmp_path / "db")
    assert not (tmp_path / "db").exists()


def test_truncated_image_file(tmp_path, small_idx):
    _, labels = small_idx
    short = _write_idx(tmp_path / "short", 2051, [3, 2, 3], bytes(17))
    with pytest.raises(DataError, match=r"short: .*truncated: expected 34 bytes"):
        convert_mnist(short, labels, tmp_path / "db")
    with pytest.raises(DataError) as info:
        read_idx_images(short)
    assert "3 images of 2x3" in str(info.value)
    assert "found 33" in str(info.value)
    assert not (tmp_path / "db").exists()


def test_truncated_header_and_gzip(tmp_path, small_idx):
    images, labels = small_idx
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match=r"tiny: .*header.*expected at least 16 bytes, found 3"):
        read_idx_images(tiny)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(labels.read_bytes())[:-6])
    with pytest.raises(DataError, match=r"cut\.gz: .*gzip"):
        convert_mnist(images, cut, tmp_path / "db")


def test_trailing_data(tmp_path, small_idx):
    images, _ = small_idx
    long = _write_idx(tmp_path / "long", 2049, [3], bytes(4))
    with pytest.raises(DataError, match=r"long: .*trailing data: expected 11 bytes .*, found 12"):
        convert_mnist(images, long, tmp_path / "db")


def test_count_mismatch(tmp_path, small_idx):
    images, _ = small_idx
    labels = _write_idx(tmp_path / "labels4", 2049, [4], bytes(4))
    with pytest.raises(DataError) as info:
        convert_mnist(images, labels, tmp_path / "db")
    message = str(info.value)
    assert "3 images" in message and "4 labels" in message
    assert str(images) in message and str(labels) in message
    assert not (tmp_path / "db").exists()


def test_missing_input(tmp_path, small_idx):
    _, labels = small_idx
    with pytest.raises(DataError, match="nope"):
        convert_mnist(tmp_path / "nope", labels, tmp_path / "db")


def test_existing_output_is_not_overwritten(tmp_path, small_idx):
    images, labels = small_idx
    out = tmp_path / "db"
    convert_mnist(images, labels, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError, match="already exists"):
        convert_mnist(images, labels, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    plain = tmp_path / "file"
    plain.write_text("keep me")
    with pytest.raises(DataError, match="already exists"):
        convert_mnist(images, labels, plain)
    assert plain.read_text() == "keep me"


@pytest.mark.parametrize("backend", ["leveldb", "LEVELDB", LEVELDB])
def test_leveldb_output_matches_lmdb(tmp_path, small_idx, backend):
    images, labels = small_idx
    convert_mnist(images, labels, tmp_path / "lmdb")
    assert convert_mnist(images, labels, tmp_path / "ldb", backend=backend) == 3
    reader = open_reader(str(tmp_path / "ldb"), LEVELDB)
    try:
        assert reader.backend_name == "leveldb"
        leveldb = [(reader.key(i), reader.value(i)) for i in range(len(reader))]
    finally:
        reader.close()
    assert leveldb == _records(tmp_path / "lmdb")


def test_unknown_backend(tmp_path, small_idx):
    images, labels = small_idx
    with pytest.raises(DataError, match="unknown backend 'rocksdb'"):
        convert_mnist(images, labels, tmp_path / "db", backend="rocksdb")


def test_failure_midway_removes_partial_db(tmp_path, caffe_ref):
    mnist = caffe_ref / "mnist"

    def stop(done, total):
        raise KeyboardInterrupt

    out = tmp_path / "db"
    with pytest.raises(KeyboardInterrupt):
        convert_mnist(
            mnist / "train-images-idx3-ubyte.gz",
            mnist / "train-labels-idx1-ubyte.gz",
            out,
            progress=stop,
        )
    assert not out.exists()


def test_reading_caffe_lmdb_leaves_no_lock(caffe_ref, tmp_path):
    folder = caffe_ref / "mnist" / "mnist_test_lmdb"
    assert sorted(os.listdir(folder)) == ["data.mdb"]
    assert len(_records(folder)) == 1000
    assert sorted(os.listdir(folder)) == ["data.mdb"]
    # Also in a writable folder, where a locking reader would create lock.mdb.
    writable = tmp_path / "copy_lmdb"
    writable.mkdir()
    shutil.copyfile(folder / "data.mdb", writable / "data.mdb")
    (writable / "data.mdb").chmod(0o644)
    reader = open_reader(str(writable), LMDB)
    assert len(reader) == 1000
    reader.close()
    assert sorted(os.listdir(writable)) == ["data.mdb"]
