"""Data-parallel training under ``mpiexec -n 2`` on loopback (skipped without mpi4py/mpiexec)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pyforge.io.snapshot import read_solver_state, read_weights

mpi4py = pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec")

NET = """name: "parallel"
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{root}/mnist/mnist_train_lmdb" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{root}/mnist/mnist_test_lmdb" batch_size: 50 backend: LMDB }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 8 kernel_size: 5 stride: 2
    weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy"
  include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }}
"""


def solver(tmp_path, root, name, batch, solver_type="SGD", max_iter=50, snapshot=0, display=5):
    net = tmp_path / f"{name}_net.prototxt"
    net.write_text(NET.format(root=root, batch=batch))
    settings = {"SGD": 'base_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "fixed"',
                "Adam": 'type: "Adam"\nbase_lr: 0.001\nmomentum: 0.9\nmomentum2: 0.999\n'
                        'lr_policy: "fixed"'}[solver_type]
    path = tmp_path / f"{name}.prototxt"
    path.write_text(f'net: "{net}"\n{settings}\ntest_iter: 2\ntest_interval: 25\n'
                    f"display: {display}\nmax_iter: {max_iter}\nsnapshot: {snapshot}\n"
                    f'snapshot_prefix: "{tmp_path}/{name}"\nrandom_seed: 11\n')
    return str(path)


def run(argv, tmp_path, ranks=None, timeout=600, env=None):
    prefix = [MPIEXEC, "-n", str(ranks)] if ranks else []
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(prefix + [sys.executable, "-m", "pyforge", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def weights(path):
    model = read_weights(str(path))
    return [np.array(b.data, dtype=np.float32) for layer in model.layer for b in layer.blobs]


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
def test_two_ranks_equal_one_process_with_twice_the_batch(caffe_ref, tmp_path, solver_type):
    one = run(["train", solver(tmp_path, caffe_ref, "one", 32, solver_type)], tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = run(["train", solver(tmp_path, caffe_ref, "two", 16, solver_type)], tmp_path, ranks=2)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "Data parallel over 2 ranks: effective batch 32 (batch 16 x iter_size 1 x 2 ranks)" \
        in two.stderr
    # Rank 0 alone speaks: one "Optimization Done." pair, not two.
    assert two.stderr.count("Optimization Done.") == 2
    a = weights(tmp_path / "one_iter_50.caffemodel")
    b = weights(tmp_path / "two_iter_50.caffemodel")
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=2e-5)


def test_resume_under_mpi_is_exact(caffe_ref, tmp_path):
    straight = run(["train", solver(tmp_path, caffe_ref, "a", 16, max_iter=20, snapshot=10)],
                   tmp_path, ranks=2)
    assert straight.returncode == 0, straight.stderr[-2000:]
    resumed = run(["train", solver(tmp_path, caffe_ref, "b", 16, max_iter=20, snapshot=10),
                   f"--snapshot={tmp_path}/a_iter_10.solverstate"], tmp_path, ranks=2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for x, y in zip(weights(tmp_path / "a_iter_20.caffemodel"),
                    weights(tmp_path / "b_iter_20.caffemodel")):
        assert np.array_equal(x, y)
    sa = read_solver_state(str(tmp_path / "a_iter_20.solverstate"))
    sb = read_solver_state(str(tmp_path / "b_iter_20.solverstate"))
    assert all(np.array_equal(x, y) for x, y in zip(sa.history, sb.history))
    assert len(sa.extra["rank_states"]) == 2


def _rank_pids(tmp_path, marker):
    pids = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "pyforge" in cmdline:
            m = re.search(r"PMI_RANK=(\d+)", environ)
            if m:
                pids[int(m.group(1))] = int(proc.name)
    return pids


def _start_long_run(tmp_path, caffe_ref, env=None):
    path = solver(tmp_path, caffe_ref, "long", 16, max_iter=10**7, display=1)
    env = dict(os.environ, **(env or {}))
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "pyforge", "train", path],
                            cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=env)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "Iteration 30 (" in line:
            break
    else:
        proc.wait()
        errors = [line for line in seen if "rror" in line or "Traceback" in line]
        raise AssertionError("the run ended early:\n" + "".join(errors + seen[-10:]))
    return proc, path


def test_a_killed_rank_ends_the_job_within_a_minute(caffe_ref, tmp_path):
    proc, path = _start_long_run(tmp_path, caffe_ref)
    pids = _rank_pids(tmp_path, path)
    assert set(pids) == {0, 1}
    start = time.monotonic()
    os.kill(pids[1], signal.SIGKILL)
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait(timeout=90)
    assert proc.returncode != 0
    assert time.monotonic() - start < 60
    assert "Traceback" not in err


def test_a_stalled_rank_is_named(caffe_ref, tmp_path):
    proc, path = _start_long_run(tmp_path, caffe_ref, env={"PYFORGE_MPI_TIMEOUT": "5"})
    pids = _rank_pids(tmp_path, path)
    os.kill(pids[1], signal.SIGSTOP)
    try:
        err = proc.stderr.read()
        proc.stderr.close()
        proc.wait(timeout=90)
    finally:
        try:
            os.kill(pids[1], signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode != 0
    # (stopped before or after its first heartbeat, depending on the machine's load)
    assert re.search(r"rank 1 \((last seen at iteration \d+|no heartbeat since the start), "
                     r"\d+ s ago\) died or stalled", err), err[-3000:]


def test_sigint_under_mpiexec_snapshots_once_and_stops_every_rank(caffe_ref, tmp_path):
    proc, _ = _start_long_run(tmp_path, caffe_ref)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    states = sorted(tmp_path.glob("long_iter_*.solverstate"))
    assert len(states) == 1
    assert err.count("Snapshotting solver state") == 1
