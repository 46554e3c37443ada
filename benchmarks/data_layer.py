"""Data layer overhead: LeNet trained from the Data layer vs the same net fed from an Input
layer with the arrays already in memory.

Run by hand (not collected by pytest), from the repository root:

    python benchmarks/data_layer.py [--iters 200] [--rounds 5] [--out data_layer.json]

It builds the MNIST LMDB from ``prototxt_examples/mnist/*.gz`` in a temporary folder, then
alternates rounds of ``--iters`` training iterations of the two nets (same weights, same
solver), so that both see the same machine state, and reports the median of the per-round time
ratios Data / Input and the ratio of the median single-iteration times (robust to load spikes
on a shared machine). The Data layer prepares batches in its prefetch thread, so the target is
a ratio within 1.10. Results go to stdout and to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from google.protobuf import text_format

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyforge.log import configure  # noqa: E402
from pyforge.proto import caffe_pb2  # noqa: E402
from pyforge.solvers import create_solver  # noqa: E402
from pyforge.tools import convert_mnist, read_idx_images, read_idx_labels  # noqa: E402

MNIST = ROOT / "prototxt_examples" / "mnist"
BATCH = 64
SCALE = np.float32(0.00390625)


def lenet(data_layer: str) -> caffe_pb2.NetParameter:
    """LeNet's TRAIN net from the example prototxt with its data layer replaced."""
    net = caffe_pb2.NetParameter()
    text_format.Merge((MNIST / "lenet_train_test.prototxt").read_text(), net)
    layers = [layer for layer in net.layer if layer.type not in ("Data", "Accuracy")]
    head = caffe_pb2.LayerParameter()
    text_format.Merge(data_layer, head)
    del net.layer[:]
    net.layer.extend([head, *layers])
    return net


def solver_for(net: caffe_pb2.NetParameter) -> object:
    param = caffe_pb2.SolverParameter(base_lr=0.01, momentum=0.9, weight_decay=0.0005,
                                      lr_policy="inv", gamma=0.0001, power=0.75, max_iter=10**9,
                                      display=0, snapshot=0, random_seed=1701,
                                      snapshot_after_train=False, test_interval=0)
    param.net_param.CopyFrom(net)
    return create_solver(param)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=200, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each net")
    parser.add_argument("--warmup", type=int, default=30, help="untimed iterations first")
    parser.add_argument("--out", default="data_layer.json", help="JSON results file")
    args = parser.parse_args()
    configure(level=30)  # warnings only: no per-iteration log lines in the timings

    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "mnist_train_lmdb")
        images_gz = MNIST / "train-images-idx3-ubyte.gz"
        labels_gz = MNIST / "train-labels-idx1-ubyte.gz"
        count = convert_mnist(images_gz, labels_gz, db)

        data_solver = solver_for(lenet(f"""name: "mnist" type: "Data" top: "data" top: "label"
            transform_param {{ scale: 0.00390625 }}
            data_param {{ source: "{db}" batch_size: {BATCH} backend: LMDB }}"""))
        input_solver = solver_for(lenet(f"""name: "mnist" type: "Input" top: "data" top: "label"
            input_param {{ shape {{ dim: {BATCH} dim: 1 dim: 28 dim: 28 }}
                           shape {{ dim: {BATCH} }} }}"""))
        # The Input net's batches: the same records, already decoded and scaled.
        images = read_idx_images(images_gz).astype(np.float32)[:, None] * SCALE
        labels = read_idx_labels(labels_gz).astype(np.float32)
        data_blob = input_solver.net.blobs["data"]
        label_blob = input_solver.net.blobs["label"]
        cursor = 0

        per_iter: dict[str, list[float]] = {"data": [], "input": []}

        def run_input(iters: int, record: bool = True) -> None:
            nonlocal cursor
            for _ in range(iters):
                start = time.perf_counter()
                index = np.arange(cursor, cursor + BATCH) % count
                data_blob.data[...] = images[index]
                label_blob.data[...] = labels[index]
                cursor += BATCH
                input_solver.step(1)
                if record:
                    per_iter["input"].append(time.perf_counter() - start)

        def run_data(iters: int, record: bool = True) -> None:
            for _ in range(iters):
                start = time.perf_counter()
                data_solver.step(1)
                if record:
                    per_iter["data"].append(time.perf_counter() - start)

        run_data(args.warmup, record=False)
        run_input(args.warmup, record=False)
        rounds = []
        for r in range(args.rounds):
            timings = {}
            # Alternate which net goes first, so neither always follows the other.
            order = (("data", run_data), ("input", run_input))
            for name, fn in order if r % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                fn(args.iters)
                timings[name] = time.perf_counter() - start
            ratio = timings["data"] / timings["input"]
            rounds.append({"data_s": timings["data"], "input_s": timings["input"],
                           "ratio": ratio})
            print(f"round {r}: Data {timings['data'] * 1e3 / args.iters:.2f} ms/iter, "
                  f"Input {timings['input'] * 1e3 / args.iters:.2f} ms/iter, "
                  f"ratio {ratio:.3f}", flush=True)
        data_solver.close()
        input_solver.close()

    median = statistics.median(r["ratio"] for r in rounds)
    # Per-iteration medians shrug off the load spikes of a shared machine.
    data_ms = statistics.median(per_iter["data"]) * 1e3
    input_ms = statistics.median(per_iter["input"]) * 1e3
    result = {
        "benchmark": "LeNet training: Data layer (LMDB, prefetch) vs Input layer (preloaded)",
        "batch_size": BATCH,
        "iters_per_round": args.iters,
        "rounds": rounds,
        "median_ratio": median,
        "median_data_ms_per_iter": statistics.median(r["data_s"] for r in rounds)
        * 1e3 / args.iters,
        "median_input_ms_per_iter": statistics.median(r["input_s"] for r in rounds)
        * 1e3 / args.iters,
        "median_iteration_data_ms": data_ms,
        "median_iteration_input_ms": input_ms,
        "median_iteration_ratio": data_ms / input_ms,
        "target_ratio": 1.10,
        "within_target": median <= 1.10,
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"median iteration: Data {data_ms:.2f} ms, Input {input_ms:.2f} ms, ratio "
          f"{data_ms / input_ms:.3f}")
    print(f"median ratio Data/Input: {median:.3f} (target <= 1.10) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
