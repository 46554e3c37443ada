"""pyforge against PyTorch on the CPU: forward+backward, a training iteration, start-up, memory.

Run by hand from the repository root (it is not collected by pytest):

    pip install '.[bench]'          # PyTorch's CPU build, for the comparison
    python benchmarks/bench.py      # --rounds 7 --iterations 30 --json benchmarks/results.json

What it measures, each in interleaved rounds (pyforge, then PyTorch, then pyforge, ...) with
2 threads each, reporting the median of the per-round ratios, because these machines are
shared and noisy and only ratios measured side by side mean anything:

- forward+backward of one batch of LeNet (batch 64) and CIFAR-10 quick (batch 100), through
  ``pyforge time`` and its ``Average Forward-Backward`` line, beside the same layers in PyTorch.
  Like Caffe's ``time``, pyforge runs the deploy nets' backward as Caffe's net construction
  decides: no loss, so weight gradients only, no data gradients. PyTorch's backward also
  computes the data gradients of every layer above conv1. The ``*_all_grads`` rows level
  this: ``force_backward: true`` in pyforge and an input that requires grad in PyTorch, so
  both compute every gradient;
- a full LeNet training iteration (data, forward, backward, SGD update) from the MNIST LMDB,
  beside a PyTorch loop over the same images held in memory;
- cold start (empty Numba cache) and warm start: seconds from launching ``pyforge train`` to its
  first ``Iteration 0`` line;
- the peak resident memory of a LeNet training process.

The OpenBLAS kernel set that NumPy and SciPy picked is printed and written to the JSON. A
machine that forces an older set through ``OPENBLAS_CORETYPE`` measures that set; to measure
what OpenBLAS would choose itself, unset it for this command alone:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench.py``.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "prototxt_examples" / "mnist"
SHAPES = ROOT / "tests" / "data" / "caffe_reference" / "shapes"
THREADS = "2"
ENV = dict(os.environ, OMP_NUM_THREADS=THREADS, OPENBLAS_NUM_THREADS=THREADS,
           MKL_NUM_THREADS=THREADS, NUMBA_NUM_THREADS=THREADS)
AVERAGE = re.compile(r"Average Forward-Backward: ([\d.e+-]+) ms\.")


# --- nets ---
def prepare(work: Path) -> dict[str, Path]:
    """Deploy prototxts at the benchmark batch sizes, the MNIST LMDBs and a training solver."""
    lenet = (SHAPES / "examples_mnist_lenet.prototxt").read_text()
    cifar = (SHAPES / "examples_cifar10_cifar10_quick.prototxt").read_text()
    cifar = cifar.replace("dim: 1 dim: 3 dim: 32 dim: 32", "dim: 100 dim: 3 dim: 32 dim: 32")
    (work / "lenet.prototxt").write_text(lenet)
    (work / "cifar10_quick.prototxt").write_text(cifar)
    # The same nets with every gradient computed, as PyTorch does with an input needing grad.
    (work / "lenet_all_grads.prototxt").write_text("force_backward: true\n" + lenet)
    (work / "cifar10_quick_all_grads.prototxt").write_text("force_backward: true\n" + cifar)
    data = work / "prototxt_examples" / "mnist"
    data.mkdir(parents=True)
    for name in ("train", "t10k"):
        kind = "train" if name == "train" else "test"
        subprocess.run([sys.executable, "-m", "pyforge", "convert-mnist",
                        str(MNIST / f"{name}-images-idx3-ubyte.gz"),
                        str(MNIST / f"{name}-labels-idx1-ubyte.gz"),
                        str(data / f"mnist_{kind}_lmdb")], check=True, env=ENV,
                       capture_output=True)
    shutil.copy(MNIST / "lenet_train_test.prototxt", data / "lenet_train_test.prototxt")
    solver = data / "bench_solver.prototxt"
    solver.write_text('net: "prototxt_examples/mnist/lenet_train_test.prototxt"\n'
                      'base_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "inv"\n'
                      "gamma: 0.0001\npower: 0.75\ndisplay: 50\nmax_iter: {max_iter}\n"
                      "snapshot_after_train: false\nrandom_seed: 1701\n")
    return {"lenet": work / "lenet.prototxt", "cifar10_quick": work / "cifar10_quick.prototxt",
            "lenet_all_grads": work / "lenet_all_grads.prototxt",
            "cifar10_quick_all_grads": work / "cifar10_quick_all_grads.prototxt",
            "solver_template": solver}


def blas_kernels() -> list[str]:
    """The OpenBLAS kernel sets NumPy's and SciPy's libraries run with under ENV."""
    code = ("import pyforge, numpy, scipy.linalg\n"
            "from threadpoolctl import threadpool_info\n"
            "print(','.join(f\"{i.get('prefix')} {i.get('version')} {i.get('architecture')}\"\n"
            "               for i in threadpool_info() if i['user_api'] == 'blas'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                         check=True)
    return out.stdout.strip().split(",")


def pyforge_time(model: Path, iterations: int) -> float:
    out = subprocess.run([sys.executable, "-m", "pyforge", "time", f"--model={model}",
                          f"--iterations={iterations}"], capture_output=True, text=True,
                         env=ENV, check=True)
    return float(AVERAGE.search(out.stderr).group(1))


def pyforge_train_iteration(work: Path, solver_template: Path, iterations: int) -> float:
    """ms per training iteration, from the wall time between two display lines."""
    solver = work / "prototxt_examples" / "mnist" / "bench_solver_run.prototxt"
    solver.write_text(solver_template.read_text().replace("{max_iter}", str(iterations + 51)))
    out = subprocess.run([sys.executable, "-m", "pyforge", "train", str(solver)],
                         capture_output=True, text=True, env=ENV, cwd=work, check=True)
    stamps = {}
    for line in out.stderr.splitlines():
        m = re.match(r"I\d{8} (\d\d):(\d\d):([\d.]+) .*\] Iteration (\d+) \(", line)
        if m:
            h, mi, s, it = m.groups()
            stamps[int(it)] = int(h) * 3600 + int(mi) * 60 + float(s)
    first, last = 50, max(stamps)
    return (stamps[last] - stamps[first]) / (last - first) * 1000


# --- PyTorch ---
TORCH_SCRIPT = r'''
import sys, time, torch, numpy as np
torch.set_num_threads(2)
net_name, iterations, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
nn = torch.nn
if net_name == "lenet":
    net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2, ceil_mode=True),
                        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2, ceil_mode=True), nn.Flatten(),
                        nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
    x = torch.randn(64, 1, 28, 28)
else:
    net = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True),
                        nn.ReLU(), nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(),
                        nn.AvgPool2d(3, 2, ceil_mode=True), nn.Conv2d(32, 64, 5, padding=2),
                        nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True), nn.Flatten(),
                        nn.Linear(1024, 64), nn.Linear(64, 10))
    x = torch.randn(100, 3, 32, 32)
if mode in ("fwdbwd", "fwdbwd_all"):
    head = nn.Softmax(dim=1)
    if mode == "fwdbwd_all":
        x.requires_grad_(True)
    def once():
        out = head(net(x))
        out.backward(torch.zeros_like(out))
else:  # a training iteration: data from memory, forward, loss, backward, SGD update
    images = torch.rand(4000, 1, 28, 28)
    labels = torch.randint(0, 10, (4000,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    cursor = [0]
    def once():
        i = cursor[0]; cursor[0] = (i + 64) % (4000 - 64)
        opt.zero_grad()
        loss = loss_fn(net(images[i:i + 64]), labels[i:i + 64])
        loss.backward()
        opt.step()
for _ in range(5):
    once()
start = time.perf_counter()
for _ in range(iterations):
    once()
print((time.perf_counter() - start) / iterations * 1000)
'''


def torch_time(net: str, iterations: int, mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", TORCH_SCRIPT, net, str(iterations), mode],
                         capture_output=True, text=True, env=ENV, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# --- start-up and memory ---
def time_to_first_iteration(work: Path, solver_template: Path, cold: bool) -> float:
    solver = work / "prototxt_examples" / "mnist" / "bench_solver_start.prototxt"
    solver.write_text(solver_template.read_text().replace("{max_iter}", "1"))
    env = dict(ENV)
    if cold:
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="pyforge-cold-")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pyforge", "train", str(solver)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env, cwd=work)
    elapsed = None
    for line in proc.stderr:
        if "] Iteration 0 (" in line:
            elapsed = time.perf_counter() - start
    proc.wait()
    return elapsed


def peak_rss_mb(work: Path, solver_template: Path, iterations: int = 300) -> float:
    solver = work / "prototxt_examples" / "mnist" / "bench_solver_rss.prototxt"
    solver.write_text(solver_template.read_text().replace("{max_iter}", str(iterations)))
    code = (f"import resource, subprocess, sys; subprocess.run([sys.executable, '-m', "
            f"'pyforge', 'train', {str(solver)!r}], capture_output=True, check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=ENV, cwd=work, check=True)
    return int(out.stdout.strip()) / 1024


# --- main ---
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument("--no-torch", action="store_true", help="pyforge's numbers only")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pyforge-bench-"))
    nets = prepare(work)
    # Warm the Numba cache once so no round pays for compilation.
    pyforge_time(nets["lenet"], 1)
    pyforge_time(nets["cifar10_quick"], 1)
    pyforge_time(nets["cifar10_quick_all_grads"], 1)
    from pyforge.layers.blas import blas_name

    results: dict = {"threads": int(THREADS), "rounds": args.rounds,
                     "iterations": args.iterations, "machine": os.uname().machine,
                     "openblas": blas_kernels(),
                     "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
                     "pyforge_convolution_sgemm": blas_name()}
    print("BLAS:", "; ".join(results["openblas"]), "| convolutions:", blas_name(), flush=True)
    cases = [("lenet_b64_fwd_bwd", lambda: pyforge_time(nets["lenet"], args.iterations),
              lambda: torch_time("lenet", args.iterations, "fwdbwd")),
             ("cifar10_quick_b100_fwd_bwd",
              lambda: pyforge_time(nets["cifar10_quick"], args.iterations),
              lambda: torch_time("cifar10_quick", args.iterations, "fwdbwd")),
             ("lenet_b64_fwd_bwd_all_grads",
              lambda: pyforge_time(nets["lenet_all_grads"], args.iterations),
              lambda: torch_time("lenet", args.iterations, "fwdbwd_all")),
             ("cifar10_quick_b100_fwd_bwd_all_grads",
              lambda: pyforge_time(nets["cifar10_quick_all_grads"], args.iterations),
              lambda: torch_time("cifar10_quick", args.iterations, "fwdbwd_all")),
             ("lenet_train_iteration",
              lambda: pyforge_train_iteration(work, nets["solver_template"], 200),
              lambda: torch_time("lenet", 200, "train"))]
    for name, ours, theirs in cases:
        rows = []
        for _ in range(args.rounds):
            a = ours()
            b = None if args.no_torch else theirs()
            rows.append((a, b))
            print(f"  {name}: pyforge {a:.2f} ms" + ("" if b is None else
                  f", pytorch {b:.2f} ms, ratio {a / b:.2f}"), flush=True)
        entry = {"pyforge_ms": [r[0] for r in rows],
                 "pyforge_median_ms": statistics.median(r[0] for r in rows)}
        if not args.no_torch:
            entry["pytorch_ms"] = [r[1] for r in rows]
            entry["pytorch_median_ms"] = statistics.median(r[1] for r in rows)
            entry["ratio_median"] = statistics.median(r[0] / r[1] for r in rows)
        results[name] = entry
    results["warm_start_s"] = statistics.median(
        time_to_first_iteration(work, nets["solver_template"], cold=False) for _ in range(3))
    results["cold_start_s"] = time_to_first_iteration(work, nets["solver_template"], cold=True)
    results["peak_rss_mb"] = peak_rss_mb(work, nets["solver_template"])
    print()
    print(f"{'case':40} {'pyforge ms':>11} {'pytorch ms':>11} {'ratio':>7}")
    for name, *_ in cases:
        entry = results[name]
        print(f"{name:40} {entry['pyforge_median_ms']:11.2f} "
              f"{entry.get('pytorch_median_ms', float('nan')):11.2f} "
              f"{entry.get('ratio_median', float('nan')):7.2f}")
    print(f"warm start {results['warm_start_s']:.2f} s, cold start {results['cold_start_s']:.2f}"
          f" s, peak RSS {results['peak_rss_mb']:.0f} MB")
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
