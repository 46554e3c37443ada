"""Shared fixtures: the Caffe reference pack unpacked into a temporary folder."""

from __future__ import annotations

import lzma
import shutil
import stat
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "caffe_reference"


@pytest.fixture(scope="session")
def caffe_ref(tmp_path_factory) -> Path:
    """A copy of ``tests/data/caffe_reference`` laid out like ``shared/caffe_reference``.

    Caffe ran with that folder as its working directory, so the reference prototxts name paths
    relative to it (``mnist/mnist_train_lmdb``, ``init/snap_iter_0.caffemodel``). The LMDBs are
    stored xz-compressed and unpacked here; their folders are made read-only and hold no
    ``lock.mdb``, as in the reference pack, so readers must open them without locking.
    """
    root = tmp_path_factory.mktemp("caffe_reference")
    for item in REFERENCE.iterdir():
        target = root / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    for split in ("train", "test"):
        packed = root / "mnist" / f"mnist_{split}_lmdb.data.mdb.xz"
        folder = root / "mnist" / f"mnist_{split}_lmdb"
        folder.mkdir()
        (folder / "data.mdb").write_bytes(lzma.decompress(packed.read_bytes()))
        packed.unlink()
        (folder / "data.mdb").chmod(stat.S_IRUSR | stat.S_IRGRP)
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    return root


@pytest.fixture
def in_caffe_ref(caffe_ref, monkeypatch) -> Path:
    """Run the test with the unpacked reference folder as the current directory."""
    monkeypatch.chdir(caffe_ref)
    return caffe_ref

