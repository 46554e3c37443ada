"""SIGKILL at random moments, many times, never leaves a snapshot pair that does not load.

Each round resumes from the newest complete pair (or starts fresh), trains with a snapshot
every iteration of a net whose files take a noticeable time to write, and is killed with
SIGKILL after a random delay. After every kill, every .solverstate on disk must load, name a
.caffemodel that loads, and the newest must resume; the temporary files a kill leaves are gone
once the next run has started.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from pyforge.io.snapshot import read_solver_state, read_weights

NET = """name: "kill"
layer { name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 16 dim: 512 } shape { dim: 16 dim: 256 }
    data_filler { type: "gaussian" } data_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z"
  inner_product_param { num_output: 256 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }
"""
KILLS = int(os.environ.get("PYFORGE_SIGKILL_ROUNDS", "12"))


def complete_pairs(folder):
    """Iterations whose state and model both load; raises if a state on disk is broken."""
    good = []
    for state_path in folder.glob("snap_iter_*.solverstate"):
        state = read_solver_state(str(state_path))  # must not raise
        model = read_weights(state.learned_net)  # the model it names must load
        assert len(model.layer) == 3 and len(state.history) == 2
        good.append(state.iteration)
    return sorted(good)


@pytest.mark.slow
def test_sigkill_during_snapshots_never_loses_the_last_pair(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{tmp_path}/net.prototxt"\nbase_lr: 0.0001\nlr_policy: "fixed"\n'
                      "momentum: 0.9\ndisplay: 0\nmax_iter: 100000000\nsnapshot: 1\n"
                      f'snapshot_prefix: "{tmp_path}/snap"\nrandom_seed: 3\n')
    rng = random.Random(20261125)
    kills = left_by_kills = 0
    for _ in range(KILLS):
        pairs = complete_pairs(tmp_path)
        argv = [sys.executable, "-m", "pyforge", "train", str(solver)]
        if pairs:
            argv.append(f"--snapshot={tmp_path}/snap_iter_{pairs[-1]}.solverstate")
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path)
        # Wait until it is snapshotting, then kill it somewhere in the next stretch of writes.
        for line in proc.stderr:
            if "Snapshotting" in line:
                break
        # By now the run has removed what earlier, killed runs left half written.
        stale = [p.name for p in tmp_path.glob(".snap_iter_*.tmp*")
                 if not p.name.endswith(f".tmp{proc.pid}")]
        assert not stale, f"temporaries of killed runs were left: {stale}"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stderr.close()
        kills += 1
        left_by_kills += len(list(tmp_path.glob(".snap_iter_*.tmp*")))
        after = complete_pairs(tmp_path)
        assert after, "no complete snapshot pair survived"
        assert not pairs or after[-1] >= pairs[-1]
    assert kills == KILLS
    print(f"{kills} SIGKILLs left {left_by_kills} temporary file(s); each run removed those of "
          "the runs killed before it")
