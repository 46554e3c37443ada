"""Load test: a long LeNet run killed and resumed must end bitwise equal to an unbroken one.

Run by hand from the repository root (it takes several minutes):

    python benchmarks/long_run.py [--iterations 20000] [--kills 3] [--snapshot 500]

It trains LeNet on the bundled MNIST sample twice with the same seed: once straight through,
and once killed with SIGKILL at random moments and resumed each time from the newest
snapshot. The final weights and solver history must be bitwise equal, and the resident memory
of the training processes, sampled while they run, must not grow. The result is printed and
written to benchmarks/long_run.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "prototxt_examples" / "mnist"
sys.path.insert(0, str(ROOT))

from pyforge.io.snapshot import read_solver_state, read_weights  # noqa: E402

DISPLAY = re.compile(r"\] Iteration (\d+) \(")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def train(work: Path, solver: Path, snapshot: str | None, kill_after: float | None,
          samples: list[tuple[int, float]]) -> int:
    """Run pyforge train; kill it after ``kill_after`` seconds. Returns the exit status."""
    argv = [sys.executable, "-m", "pyforge", "train", str(solver)]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    start = time.monotonic()
    iteration = 0
    for line in proc.stderr:
        match = DISPLAY.search(line)
        if match:
            iteration = int(match.group(1))
            samples.append((iteration, rss_mb(proc.pid)))
        if kill_after is not None and time.monotonic() - start > kill_after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    proc.stderr.close()
    return proc.returncode


def newest_state(folder: Path, prefix: str) -> str | None:
    states = sorted(folder.glob(f"{prefix}_iter_*.solverstate"),
                    key=lambda p: int(p.name.split("_iter_")[1].split(".")[0]))
    return str(states[-1]) if states else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--snapshot", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "long_run.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pyforge-long-"))
    data = work / "prototxt_examples" / "mnist"
    data.mkdir(parents=True)
    for split, name in (("train", "train"), ("t10k", "test")):
        subprocess.run([sys.executable, "-m", "pyforge", "convert-mnist",
                        str(MNIST / f"{split}-images-idx3-ubyte.gz"),
                        str(MNIST / f"{split}-labels-idx1-ubyte.gz"),
                        str(data / f"mnist_{name}_lmdb")], check=True, capture_output=True)
    shutil.copy(MNIST / "lenet_train_test.prototxt", data)
    solvers = {}
    for prefix in ("straight", "killed"):
        path = data / f"{prefix}_solver.prototxt"
        path.write_text(
            (MNIST / "lenet_solver.prototxt").read_text()
            .replace("max_iter: 2000", f"max_iter: {args.iterations}")
            .replace("snapshot: 1000", f"snapshot: {args.snapshot}")
            .replace('snapshot_prefix: "prototxt_examples/mnist/lenet"',
                     f'snapshot_prefix: "prototxt_examples/mnist/{prefix}"'))
        solvers[prefix] = path
    rng = random.Random(args.seed)
    straight_samples: list[tuple[int, float]] = []
    t0 = time.monotonic()
    train(work, solvers["straight"], None, None, straight_samples)
    straight_seconds = time.monotonic() - t0
    # Kill at random moments spread over the run, then resume each time from the newest state.
    killed_samples: list[tuple[int, float]] = []
    kill_times = sorted(rng.uniform(0.1, 0.9) * straight_seconds / (args.kills + 1)
                        for _ in range(args.kills))
    kills = 0
    for after in kill_times:
        status = train(work, solvers["killed"], newest_state(data, "killed"), after,
                       killed_samples)
        kills += status == -signal.SIGKILL
    train(work, solvers["killed"], newest_state(data, "killed"), None, killed_samples)
    final = args.iterations
    a = read_weights(str(data / f"straight_iter_{final}.caffemodel"))
    b = read_weights(str(data / f"killed_iter_{final}.caffemodel"))
    weights_equal = all(np.array_equal(np.array(x.data, np.float32), np.array(y.data, np.float32))
                        for la, lb in zip(a.layer, b.layer) for x, y in zip(la.blobs, lb.blobs))
    sa = read_solver_state(str(data / f"straight_iter_{final}.solverstate"))
    sb = read_solver_state(str(data / f"killed_iter_{final}.solverstate"))
    history_equal = all(np.array_equal(x, y) for x, y in zip(sa.history, sb.history))
    early = [mb for it, mb in straight_samples if it <= args.iterations // 10 and mb]
    late = [mb for it, mb in straight_samples if it >= args.iterations * 9 // 10 and mb]
    result = {
        "iterations": args.iterations, "snapshot_every": args.snapshot, "kills": kills,
        "straight_seconds": round(straight_seconds, 1),
        "weights_bitwise_equal": weights_equal, "history_bitwise_equal": history_equal,
        "rss_mb_first_tenth": round(max(early), 1) if early else None,
        "rss_mb_last_tenth": round(max(late), 1) if late else None,
    }
    print(json.dumps(result, indent=1))
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if weights_equal and history_equal else 1


if __name__ == "__main__":
    sys.exit(main())
