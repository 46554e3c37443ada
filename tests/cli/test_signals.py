"""Signals during training: Ctrl-C/SIGTERM snapshot and exit 0; SIGHUP/SIGUSR1 snapshot and
continue; a second Ctrl-C stops at once, leaving the last complete snapshot intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pyforge.io.snapshot import read_solver_state

NET = """name: "tiny"
layer { name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 8 dim: 50 } shape { dim: 8 dim: 1 }
    data_filler { type: "gaussian" } data_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z"
  inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }
"""


def solver_file(tmp_path, max_iter=10**7, snapshot=0):
    net = tmp_path / "net.prototxt"
    net.write_text(NET)
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "{net}"\nbase_lr: 0.001\nlr_policy: "fixed"\nmomentum: 0.9\n'
                    f"display: 1000\nmax_iter: {max_iter}\nsnapshot: {snapshot}\n"
                    f'snapshot_prefix: "{tmp_path}/snap"\nrandom_seed: 1\n')
    return str(path)


def start(argv, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "pyforge", *argv], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env)


def wait_for(proc, text, timeout=60):
    """Read stderr lines until one contains ``text``; return everything read."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    proc.kill()
    raise AssertionError(f"never saw {text!r}:\n{''.join(seen[-20:])}")


def snapshots(tmp_path, ext=".solverstate"):
    return sorted(int(p.name.split("_iter_")[1].split(".")[0])
                  for p in tmp_path.glob(f"snap_iter_*{ext}"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_snapshots_and_exits_zero_and_resumes(tmp_path, signum):
    proc = start(["train", solver_file(tmp_path)], tmp_path)
    wait_for(proc, "Iteration 2000")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Stop requested at iteration" in err and "Optimization stopped early." in err
    (iteration,) = snapshots(tmp_path)
    assert iteration >= 2000
    state = read_solver_state(str(tmp_path / f"snap_iter_{iteration}.solverstate"))
    assert state.iteration == iteration
    # ... and the run resumes from it.
    resumed = start(["train", solver_file(tmp_path, max_iter=iteration + 5),
                     f"--snapshot=snap_iter_{iteration}.solverstate"], tmp_path)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert (tmp_path / f"snap_iter_{iteration + 5}.caffemodel").exists()


def test_caffes_stop_effect_follows_snapshot_after_train(tmp_path):
    path = solver_file(tmp_path)
    with open(path, "a") as handle:
        handle.write("snapshot_after_train: false\n")
    proc = start(["train", path, "--sigint_effect=stop"], tmp_path)
    wait_for(proc, "Iteration 1000")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert snapshots(tmp_path) == []


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
@pytest.mark.parametrize("signum", ["SIGHUP", "SIGUSR1"])
def test_hup_and_usr1_snapshot_and_continue(tmp_path, signum):
    proc = start(["train", solver_file(tmp_path)], tmp_path)
    wait_for(proc, "Iteration 1000")
    proc.send_signal(getattr(signal, signum))
    wait_for(proc, "Snapshotting solver state")
    lines = wait_for(proc, "Iteration", timeout=60)  # still training
    assert lines
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert len(snapshots(tmp_path)) == 2


SLOW_NET = """name: "slow"
layer { name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 256 dim: 4096 } shape { dim: 256 dim: 2048 }
    data_filler { type: "gaussian" } data_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z"
  inner_product_param { num_output: 2048 weight_filler { type: "gaussian" std: 0.001 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }
"""


def test_second_interrupt_stops_at_once_and_keeps_the_last_pair(tmp_path):
    """Iterations here take a good fraction of a second, so the second SIGINT lands while the
    first is still waiting for the iteration to end."""
    (tmp_path / "net.prototxt").write_text(SLOW_NET)
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "{tmp_path}/net.prototxt"\nbase_lr: 1e-6\nlr_policy: "fixed"\n'
                    "display: 1\nmax_iter: 1000\nsnapshot: 2\n"
                    f'snapshot_prefix: "{tmp_path}/snap"\n')
    proc = start(["train", str(path)], tmp_path)
    wait_for(proc, "Snapshotting solver state to binary proto file")
    wait_for(proc, "Iteration 3, lr")
    proc.send_signal(signal.SIGINT)
    # Keep pressing Ctrl-C, as a user does: CPython runs a signal's handler once for all the
    # signals that arrived while a kernel held the interpreter, so on a loaded machine one
    # second press 50 ms after the first can reach pyforge as the first (the run then ends
    # with its snapshot and 0). Presses that arrive after the first was handled stop at once.
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "pyforge: interrupted" in err
    assert 2 in snapshots(tmp_path)
    for iteration in snapshots(tmp_path):  # every state on disk is complete, with its model
        state = read_solver_state(str(tmp_path / f"snap_iter_{iteration}.solverstate"))
        assert state.iteration == iteration and len(state.history) == 2
        assert (tmp_path / f"snap_iter_{iteration}.caffemodel").stat().st_size > 0
    assert not list(tmp_path.glob(".*tmp*"))
