"""The one atomic-write helper: temporary file beside the target, fsync, rename, folder fsync;
and every writer of the package goes through it (binary protos, HDF5 snapshots, upgraded
prototxts)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from pyforge.atomic_write import (
    remove_abandoned_temporaries,
    temporary_path,
    write_atomically,
    write_bytes_atomically,
    write_text_atomically,
)
from pyforge.errors import PyforgeError


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """What os.fsync was called on, in order: "file" or "folder"."""
    calls: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        calls.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return calls


def test_temporary_file_is_hidden_beside_the_target_and_named_by_pid(tmp_path):
    assert temporary_path(tmp_path / "a.caffemodel") == str(
        tmp_path / f".a.caffemodel.tmp{os.getpid()}")


def test_file_then_folder_are_synced_and_no_temporary_is_left(tmp_path, synced):
    path = tmp_path / "x.bin"
    write_bytes_atomically(path, b"first")
    write_bytes_atomically(str(path), b"second")  # overwrite, str path
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["x.bin"]
    assert synced == ["file", "folder", "file", "folder"]


def test_text_is_written_as_utf8(tmp_path, synced):
    path = tmp_path / "net.prototxt"
    write_text_atomically(path, 'name: "résumé"\n')
    assert path.read_bytes() == 'name: "résumé"\n'.encode()
    assert synced == ["file", "folder"]


def test_a_failing_fill_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")

    def half_then_full_disk(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(b"ha")
        raise OSError(28, "No space left on device")

    with pytest.raises(PyforgeError) as info:
        write_atomically(path, half_then_full_disk)
    assert str(info.value) == f"{path}: cannot write: No space left on device"
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_an_interrupt_removes_the_temporary_and_propagates(tmp_path):
    path = tmp_path / "x.bin"

    def interrupted(tmp: str) -> None:
        open(tmp, "wb").close()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, interrupted)
    assert os.listdir(tmp_path) == []


def test_a_folder_that_cannot_be_synced_is_not_an_error(tmp_path, monkeypatch):
    """Windows and some network file systems refuse fsync on a folder (EINVAL)."""
    real = os.fsync

    def refuse_folders(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")
        real(fd)

    monkeypatch.setattr(os, "fsync", refuse_folders)
    write_bytes_atomically(tmp_path / "x.bin", b"data")
    assert (tmp_path / "x.bin").read_bytes() == b"data"


def test_hdf5_snapshots_go_through_the_helper(tmp_path, synced):
    from pyforge.io.snapshot import SolverStateData, read_solver_state, write_solver_state

    path = str(tmp_path / "s_iter_1.solverstate.h5")
    state = SolverStateData(1, "s_iter_1.caffemodel.h5", 0, [np.ones(3, np.float32)], None)
    write_solver_state(path, state, hdf5=True)
    assert synced == ["file", "folder"]
    assert os.listdir(tmp_path) == ["s_iter_1.solverstate.h5"]
    assert read_solver_state(path).history[0].tolist() == [1, 1, 1]


def test_upgraded_prototxts_are_synced(tmp_path, synced):
    """upgrade_solver_proto_text used to rename without fsync."""
    from pyforge.commands.upgrade import upgrade_solver_file

    source = tmp_path / "old.prototxt"
    source.write_text('net: "n.prototxt"\nsolver_type: NESTEROV\nbase_lr: 0.1\n')
    upgrade_solver_file(str(source), str(tmp_path / "new.prototxt"))
    assert synced == ["file", "folder"]
    assert 'type: "Nesterov"' in (tmp_path / "new.prototxt").read_text()


# --- temporaries of killed runs ----------------------------------------------------------------
def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_abandoned_temporaries_of_the_targets_are_removed(tmp_path):
    dead = dead_pid()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        names = {
            f".snap_iter_4.caffemodel.tmp{dead}": True,  # a killed run's: removed
            f".snap_iter_4.solverstate.tmp{dead}": True,
            f".snap_iter_5.caffemodel.tmp{alive.pid}": False,  # a run still writing it
            f".snap_iter_6.caffemodel.tmp{os.getpid()}": False,  # this process's own
            f".other.txt.tmp{dead}": False,  # not a target
            f"snap_iter_4.caffemodel.tmp{dead}": False,  # not hidden: not the helper's name
            "snap_iter_4.caffemodel": False,
        }
        for name in names:
            (tmp_path / name).write_bytes(b"x")
        removed = remove_abandoned_temporaries(str(tmp_path),
                                               lambda name: name.startswith("snap_iter_"))
        alive.kill()
    assert sorted(removed) == sorted(name for name, gone in names.items() if gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        name for name, gone in names.items() if not gone)


def test_a_folder_removed_under_a_run_is_named(tmp_path):
    target = tmp_path / "gone" / "snap_iter_6.solverstate"
    with pytest.raises(PyforgeError, match=rf"^{target}: cannot write: its folder "
                                           rf"{tmp_path / 'gone'} does not exist \(was it "
                                           r"removed\?\)$"):
        write_bytes_atomically(target, b"state")
