"""Data-parallel scaling: 2 MPI ranks x 1 thread against 1 process x 2 threads, same work.

Run by hand from the repository root (needs the ``mpi`` extra: ``pip install '.[mpi]'``):

    python benchmarks/mpi_scaling.py [--rounds 3] [--iterations 200]

Both configurations train the same effective batch (LeNet: 64, CIFAR-10 quick: 100) on the same
2 cores: one process with 2 threads and the whole batch, or 2 ranks of 1 thread with half the
batch each and one gradient allreduce per iteration. The scaling efficiency is the 1-process
time over the 2-rank time (above 1: the ranks are faster). Rounds are interleaved and the median
is reported; the JSON goes to benchmarks/mpi_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "prototxt_examples" / "mnist"

LENET = """name: "LeNet"
layer {{ name: "mnist" type: "Data" top: "data" top: "label"
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{db}" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 20 kernel_size: 5 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param {{ num_output: 50 kernel_size: 5 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param {{ num_output: 500 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""

CIFAR = """name: "CIFAR10_quick"
layer {{ name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {{ shape {{ dim: {batch} dim: 3 dim: 32 dim: 32 }} shape {{ dim: {batch} }}
    data_filler {{ type: "gaussian" std: 1 }} data_filler {{ type: "constant" value: 3 }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 32 pad: 2 kernel_size: 5
    weight_filler {{ type: "gaussian" std: 0.0001 }} }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "pool1" top: "pool1" }}
layer {{ name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param {{ num_output: 32 pad: 2 kernel_size: 5
    weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }}
layer {{ name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param {{ pool: AVE kernel_size: 3 stride: 2 }} }}
layer {{ name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  convolution_param {{ num_output: 64 pad: 2 kernel_size: 5
    weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }}
layer {{ name: "pool3" type: "Pooling" bottom: "conv3" top: "pool3"
  pooling_param {{ pool: AVE kernel_size: 3 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool3" top: "ip1"
  inner_product_param {{ num_output: 64 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""


def env(threads: int) -> dict:
    t = str(threads)
    return dict(os.environ, OMP_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, NUMBA_NUM_THREADS=t,
                MKL_NUM_THREADS=t)


def ms_per_iteration(stderr: str) -> float:
    stamps = {}
    for line in stderr.splitlines():
        m = re.match(r"I\d{8} (\d\d):(\d\d):([\d.]+) .*\] Iteration (\d+) \(", line)
        if m:
            h, mi, s, it = m.groups()
            stamps[int(it)] = int(h) * 3600 + int(mi) * 60 + float(s)
    its = sorted(stamps)
    first, last = its[1], its[-1]  # skip the first display (start-up)
    return (stamps[last] - stamps[first]) / (last - first) * 1000


def run(work: Path, name: str, template: str, batch: int, ranks: int, iterations: int) -> float:
    net = work / f"{name}_{ranks}.prototxt"
    net.write_text(template.format(db=work / "mnist_train_lmdb", batch=batch))
    solver = work / f"{name}_{ranks}_solver.prototxt"
    solver.write_text(f'net: "{net}"\nbase_lr: 0.001\nmomentum: 0.9\nlr_policy: "fixed"\n'
                      f"display: {max(1, iterations // 10)}\nmax_iter: {iterations}\n"
                      "snapshot_after_train: false\nrandom_seed: 1\n")
    command = [sys.executable, "-m", "pyforge", "train", str(solver)]
    threads = 2
    if ranks > 1:
        mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
        command = [mpiexec, "-n", str(ranks)] + command
        threads = 1
    out = subprocess.run(command, capture_output=True, text=True, env=env(threads), cwd=work,
                         check=True)
    return ms_per_iteration(out.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "mpi_results.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pyforge-mpi-"))
    subprocess.run([sys.executable, "-m", "pyforge", "convert-mnist",
                    str(MNIST / "train-images-idx3-ubyte.gz"),
                    str(MNIST / "train-labels-idx1-ubyte.gz"), str(work / "mnist_train_lmdb")],
                   check=True, capture_output=True)
    results = {}
    for name, template, batch in (("lenet", LENET, 64), ("cifar10_quick", CIFAR, 100)):
        rows = []
        for _ in range(args.rounds):
            one = run(work, name, template, batch, 1, args.iterations)
            two = run(work, name, template, batch // 2, 2, args.iterations)
            rows.append((one, two))
            print(f"  {name}: 1 process x 2 threads {one:.1f} ms/iter, 2 ranks x 1 thread "
                  f"{two:.1f} ms/iter, efficiency {one / two:.2f}", flush=True)
        results[name] = {
            "effective_batch": batch,
            "one_process_two_threads_ms": statistics.median(r[0] for r in rows),
            "two_ranks_one_thread_ms": statistics.median(r[1] for r in rows),
            "efficiency_median": statistics.median(r[0] / r[1] for r in rows),
        }
    print()
    for name, entry in results.items():
        print(f"{name:14} 1x2 threads {entry['one_process_two_threads_ms']:7.1f} ms  "
              f"2 ranks x1 {entry['two_ranks_one_thread_ms']:7.1f} ms  "
              f"efficiency {entry['efficiency_median']:.2f}")
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
