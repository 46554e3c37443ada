"""ONNX Runtime on models exported by ``pyforge export``, against pyforge's own forward.

Run by hand from the repository root (it is not collected by pytest):

    pip install '.[onnx]'
    python benchmarks/onnx_export.py        # --rounds 3 --json benchmarks/onnx_export.json

For each model-zoo deploy net (CaffeNet batch 16, GoogLeNet 8, ResNet-50 8, SqueezeNet 1.1 16,
MobileNet v2 16; prototxt_examples/zoo) the script gives the net random weights (its fillers,
and BatchNorm statistics of mean 0, variance 1), writes them as a .caffemodel, exports the net
with ``pyforge export``'s default check (whose largest error is recorded), and then times one
forward pass of the batch in pyforge and in ONNX Runtime, both with 2 threads
(``pyforge.config.set_threads(2)``; ORT ``intra_op_num_threads=2``), in interleaved rounds
(pyforge, ORT, pyforge, ...), after one warm-up pass each. It reports the medians of the times
and of the per-round ratios pyforge / ORT, because these machines are shared and noisy and only
ratios measured side by side mean anything. ORT's idle worker threads are told not to spin, so
that they do not take the cores from pyforge's kernels in the next measurement (this can only
slow ORT down).
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

THREADS = 2
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyforge import __version__  # noqa: E402
from pyforge.config import set_threads  # noqa: E402
from pyforge.export import export_onnx  # noqa: E402
from pyforge.io.snapshot import write_model  # noqa: E402
from pyforge.net.net import Net  # noqa: E402
from pyforge.proto import caffe_pb2, read_net_param  # noqa: E402
from pyforge.proto.io import debug_string  # noqa: E402
from pyforge.rng import make_rng  # noqa: E402

ZOO = ROOT / "prototxt_examples" / "zoo"
#: name -> (prototxt, batch size)
NETS = {
    "caffenet": ("caffenet_deploy.prototxt", 16),
    "googlenet": ("googlenet_deploy.prototxt", 8),
    "resnet50": ("resnet50_deploy.prototxt", 8),
    "squeezenet1_1": ("squeezenet1_1_deploy.prototxt", 16),
    "mobilenet_v2": ("mobilenet_v2_deploy.prototxt", 16),
}


def prepare(name: str, work: Path) -> tuple[Path, Path]:
    """The deploy net at the benchmark batch size, and random weights for it."""
    filename, batch = NETS[name]
    param = read_net_param(ZOO / filename)
    for layer in param.layer:
        if layer.type == "Input":
            layer.input_param.shape[0].dim[0] = batch
    model = work / f"{name}.prototxt"
    model.write_text(debug_string(param))
    param.state.phase = caffe_pb2.TEST
    net = Net(param, rng=make_rng(1701))
    for layer in net.layers:
        if layer.param.type == "BatchNorm":
            layer.blobs[0].data[...] = 0
            layer.blobs[1].data[...] = 1
            layer.blobs[2].data[...] = 1
    weights = work / f"{name}.caffemodel"
    write_model(str(weights), net)
    net.close()
    return model, weights


def ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def bench_net(name: str, work: Path, rounds: int) -> dict:
    model, weights = prepare(name, work)
    output = work / f"{name}.onnx"
    result = export_onnx(str(model), str(weights), str(output))
    check_error = max(error for _, error in result.errors)
    param = read_net_param(model)
    param.state.phase = caffe_pb2.TEST
    net = Net(param, rng=make_rng(1701))
    from pyforge.io.snapshot import load_weights

    load_weights(net, str(weights))
    data = net.blobs[net.inputs[0]]
    data.data[...] = make_rng(7).standard_normal(data.shape).astype(np.float32)
    feeds = {net.inputs[0]: data.data.copy()}
    session = ort_session(output)
    names = [o.name for o in session.get_outputs()]
    pyforge_run = net.forward_loss
    ort_run = lambda: session.run(names, feeds)  # noqa: E731
    pyforge_run()  # warm-up: buffers, JIT-compiled kernels already cached
    ort_run()
    pyforge_s, ort_s, ratios = [], [], []
    for _ in range(rounds):
        p = seconds(pyforge_run)
        o = seconds(ort_run)
        pyforge_s.append(p)
        ort_s.append(o)
        ratios.append(p / o)
    net.close()
    row = {
        "batch": NETS[name][1],
        "pyforge_forward_ms": round(1e3 * statistics.median(pyforge_s), 2),
        "onnxruntime_forward_ms": round(1e3 * statistics.median(ort_s), 2),
        "pyforge_over_onnxruntime": round(statistics.median(ratios), 3),
        "per_round_ratios": [round(r, 3) for r in ratios],
        "check_largest_relative_error": check_error,
        "onnx_nodes": result.nodes,
    }
    print(f"{name:14s} batch {row['batch']:3d}  pyforge {row['pyforge_forward_ms']:9.1f} ms  "
          f"ORT {row['onnxruntime_forward_ms']:8.1f} ms  pyforge/ORT "
          f"{row['pyforge_over_onnxruntime']:.2f}  check {check_error:.2g}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nets", default=",".join(NETS),
                        help="comma-separated subset of " + ", ".join(NETS))
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "onnx_export.json"))
    args = parser.parse_args()
    import onnx
    import onnxruntime

    from pyforge.log import configure

    configure(level=40)  # errors only: the export's log would bury the table
    set_threads(THREADS)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.nets.split(","):
            results[name] = bench_net(name, Path(tmp), args.rounds)
    from threadpoolctl import threadpool_info

    blas = [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]
    report = {
        "what": "one forward pass of the batch, median over interleaved rounds",
        "threads": THREADS,
        "openblas_kernels": blas[0] if blas else None,
        "rounds": args.rounds,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "python": platform.python_version()},
        "versions": {"pyforge": __version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
        "nets": results,
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
