"""pyforge on the ImageNet-era zoo nets beside PyTorch, OpenCV's dnn module and ONNX Runtime.

Run by hand from the repository root (it is not collected by pytest):

    pip install '.[bench]'          # PyTorch's CPU build, OpenCV 4 and ONNX Runtime
    python benchmarks/zoo.py        # --rounds 5 --iterations 5 --nets resnet50,mobilenet_v2
                                    # --json benchmarks/zoo_results.json

The nets are the deploy prototxts in ``prototxt_examples/zoo`` (CaffeNet b16, GoogLeNet b8,
ResNet-50 b8, SqueezeNet 1.1 b16, MobileNet v2 b16) with seeded random weights, written once as
a ``.caffemodel``. Each engine runs the same layers on the same weights and input:

- pyforge: the :class:`pyforge.net.net.Net` built from the prototxt: forward as
  ``net.forward()`` runs it (convolutions with their in-place BatchNorm/Scale/ReLU followers in
  one pass, :mod:`pyforge.net.fusion`), forward+backward layer by layer as ``pyforge time``
  runs it;
- PyTorch (CPU): the same layers as torch operations (:func:`torch_mirror`), in eval mode;
- OpenCV 4: ``cv2.dnn.readNetFromCaffe`` on the prototxt and the ``.caffemodel`` (OpenCV 5 has no
  Caffe reader, hence ``opencv-python-headless<5``);
- ONNX Runtime: the PyTorch mirror exported to ONNX, with ORT's default graph optimizations.

Before timing, every engine's output is compared with pyforge's (the largest difference relative
to the output's scale is printed), so that the engines are known to compute the same thing.

Every engine runs in a worker process of its own with 2 threads (Numba and BLAS; torch
``set_num_threads``; OpenCV ``setNumThreads``; ORT ``intra_op_num_threads``), started and warmed
up once. The rounds are interleaved: in each round every engine runs ``--iterations`` passes in
turn while the others wait, and the round's ratio is pyforge's median pass over the peer's. The
report gives the median of the per-round ratios (only ratios measured side by side mean
anything on a shared machine) and the median times.

Forward+backward is timed for pyforge and PyTorch as a training step needs it: every weight
gradient and the data gradients that lead to them (not the input's), from a fixed random
gradient at the net's output. pyforge's ``time`` command, like Caffe's, computes no data
gradients on a deploy net; the rows here do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "prototxt_examples" / "zoo"
THREADS = 2
NETS = {"caffenet": 16, "googlenet": 8, "resnet50": 8, "squeezenet1_1": 16, "mobilenet_v2": 16}
ENGINES = ("pyforge", "torch", "opencv", "onnxruntime")
SETTLE_S = 0.5
BACKWARD_ENGINES = ("pyforge", "torch")


# --- the nets ----------------------------------------------------------------------------------
def load_net(prototxt: Path, batch: int, weights: Path | None = None):
    """The pyforge Net of a deploy prototxt at ``batch``, with ``weights`` or seeded ones."""
    import logging

    from pyforge.net.net import Net
    from pyforge.proto import caffe_pb2, read_net_param

    param = read_net_param(prototxt)
    param.state.phase = caffe_pb2.TEST
    layer = next(lp for lp in param.layer if lp.type == "Input")
    layer.input_param.shape[0].dim[0] = batch
    quiet = logging.getLogger("pyforge.benchmark")
    quiet.setLevel(logging.ERROR)
    net = Net(param, rng=np.random.default_rng(1701), logger=quiet)
    if weights is not None:
        from pyforge.io.snapshot import load_weights

        load_weights(net, str(weights))
    else:
        _seed_weights(net, np.random.default_rng(1701))
    return net


def _seed_weights(net, rng: np.random.Generator) -> None:
    """He-scaled weights, small random biases and Scale/BatchNorm values near the identity,
    so that activations keep their scale through the depth (no infinities to time)."""
    for layer in net.layers:
        if layer.type == "BatchNorm":
            channels = layer.blobs[0].count
            layer.blobs[0].data[...] = rng.normal(0, 0.1, channels)
            layer.blobs[1].data[...] = rng.uniform(0.5, 1.5, channels)
            layer.blobs[2].data[...] = 1.0
            continue
        for i, blob in enumerate(layer.blobs):
            if i == 0 and blob.data.ndim > 1:
                fan_in = blob.count // blob.shape[0]
                blob.data[...] = rng.normal(0, np.sqrt(2.0 / fan_in), blob.shape)
            elif layer.type == "Scale" and i == 0:
                blob.data[...] = rng.uniform(0.8, 1.2, blob.shape)
            else:
                blob.data[...] = rng.normal(0, 0.05, blob.shape)


def write_deploy(net_name: str, batch: int, folder: Path) -> tuple[Path, Path]:
    """The prototxt at ``batch`` and a .caffemodel of seeded weights, in ``folder``."""
    from google.protobuf import text_format

    from pyforge.io.snapshot import write_model
    from pyforge.proto import read_net_param

    source = ZOO / f"{net_name}_deploy.prototxt"
    param = read_net_param(source)
    layer = next(lp for lp in param.layer if lp.type == "Input")
    layer.input_param.shape[0].dim[0] = batch
    prototxt = folder / f"{net_name}_b{batch}.prototxt"
    prototxt.write_text(text_format.MessageToString(param))
    net = load_net(prototxt, batch)
    weights = folder / f"{net_name}.caffemodel"
    write_model(str(weights), net)
    net.close()
    return prototxt, weights


def checked_blobs(net) -> list[str]:
    """The blobs compared across engines: the net's outputs and, for an output made by a
    Softmax, its input too (random weights saturate the softmax, which then hides
    differences)."""
    names = [net.blob_names[i] for i in net.output_ids]
    for layer_id, layer in enumerate(net.layers):
        tops = [net.blob_names[i] for i in net.top_ids[layer_id]]
        if layer.type == "Softmax" and tops[0] in names:
            names.append(net.blob_names[net.bottom_ids[layer_id][0]])
    return names


# --- PyTorch mirror ----------------------------------------------------------------------------
def torch_mirror(net):
    """A torch.nn.Module that runs ``net``'s layers with torch operations on its weights."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    def pool(layer, x):
        p = layer.param.pooling_param
        if p.global_pooling:
            k, s, pad = x.shape[2:], (1, 1), (0, 0)
        else:
            k = (p.kernel_h, p.kernel_w) if p.kernel_h else (p.kernel_size,) * 2
            s = (p.stride_h, p.stride_w) if p.stride_h else (p.stride,) * 2
            pad = (p.pad_h, p.pad_w) if p.pad_h else (p.pad,) * 2
        if p.pool == 0:  # MAX; Caffe's ceil rounding, as torch's ceil_mode
            return F.max_pool2d(x, k, s, pad, ceil_mode=True)
        return F.avg_pool2d(x, k, s, pad, ceil_mode=True, count_include_pad=True)

    class Mirror(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = torch.nn.ParameterList()
            self.ops = []
            for layer_id, layer in enumerate(net.layers):
                bottoms = [net.blob_names[i] for i in net.bottom_ids[layer_id]]
                tops = [net.blob_names[i] for i in net.top_ids[layer_id]]
                params = []
                for j, blob in enumerate(layer.blobs):
                    params.append(len(self.weights))
                    # BatchNorm's statistics are no parameters: torch's batch_norm takes no
                    # gradient for them (pyforge's, as Caffe's, is 0 and never applied).
                    learns = layer.type != "BatchNorm" and bool(layer.param_propagate_down[j])
                    self.weights.append(torch.nn.Parameter(torch.from_numpy(blob.data.copy()),
                                                           requires_grad=learns))
                self.ops.append((layer, bottoms, tops, params))
            self.input = net.blob_names[net.input_ids[0]]
            self.outputs = [net.blob_names[i] for i in net.output_ids]

        def forward(self, x, names: list[str] | None = None):
            blobs = {self.input: x}
            for layer, bottoms, tops, params in self.ops:
                w = [self.weights[i] for i in params]
                xs = [blobs[b] for b in bottoms]
                kind = layer.type
                if kind == "Input":
                    continue
                if kind == "Convolution":
                    g = layer.geometry
                    y = F.conv2d(xs[0], w[0], w[1] if len(w) > 1 else None, g.stride, g.pad,
                                 g.dilation, layer.group)
                elif kind == "BatchNorm":
                    factor = 1.0 / w[2][0] if float(w[2][0]) != 0 else 0.0
                    y = F.batch_norm(xs[0], w[0] * factor, w[1] * factor, None, None, False,
                                     0.0, layer.eps)
                elif kind == "Scale":
                    shape = (1, -1, 1, 1)
                    y = xs[0] * w[0].view(shape)
                    if len(w) > 1:
                        y = y + w[1].view(shape)
                elif kind == "ReLU":
                    y = F.relu(xs[0])
                elif kind == "Pooling":
                    y = pool(layer, xs[0])
                elif kind == "Eltwise":
                    y = xs[0]
                    for other in xs[1:]:
                        y = y + other
                elif kind == "Concat":
                    y = torch.cat(xs, 1)
                elif kind == "InnerProduct":
                    y = F.linear(xs[0].flatten(1), w[0], w[1] if len(w) > 1 else None)
                elif kind == "LRN":
                    p = layer.param.lrn_param
                    y = F.local_response_norm(xs[0], p.local_size, p.alpha, p.beta, p.k)
                elif kind == "Softmax":
                    y = F.softmax(xs[0], 1)
                elif kind in ("Dropout", "Split"):
                    for top in tops:
                        blobs[top] = xs[0]
                    continue
                else:
                    raise NotImplementedError(f"the benchmark's mirror has no {kind} layer")
                blobs[tops[0]] = y
            return tuple(blobs[o] for o in (names or self.outputs))

    return Mirror().eval()


# --- workers -----------------------------------------------------------------------------------
class Engine:
    """One engine's forward (and forward+backward) on one net, set up in its worker."""

    def __init__(self, engine: str, prototxt: Path, weights: Path, batch: int) -> None:
        self.engine = engine
        net = load_net(prototxt, batch, weights)
        self.input_name = net.blob_names[net.input_ids[0]]
        shape = net.blobs[self.input_name].shape
        self.x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
        if engine == "pyforge":
            self._setup_pyforge(net)
            return
        import torch

        torch.set_num_threads(THREADS)
        self.mirror = torch_mirror(net)
        self.checked = checked_blobs(net)
        self.out_shapes = [net.blobs[n].shape for n in self.checked]
        producers = {net.blob_names[i]: name for name, ids in zip(net.layer_names, net.top_ids)
                     for i in ids}
        self.cv_layers = [producers[n] for n in self.checked]
        net.close()
        if engine == "torch":
            return
        if engine == "opencv":
            import cv2

            cv2.setNumThreads(THREADS)
            self.cv = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
            self.cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            self.cv.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            return
        import onnxruntime as ort

        path = weights.with_suffix(".onnx")
        checked = self.checked

        class Checked(torch.nn.Module):
            def __init__(self, mirror) -> None:
                super().__init__()
                self.mirror = mirror

            def forward(self, x):
                return self.mirror(x, checked)

        torch.onnx.export(Checked(self.mirror), (torch.from_numpy(self.x),), str(path),
                          dynamo=False, opset_version=17, input_names=["data"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        self.ort = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _setup_pyforge(self, net) -> None:
        from pyforge.config import set_threads

        set_threads(THREADS)
        self.net = net
        self.checked = checked_blobs(net)
        self.layers = net.layers
        self.bottoms = [net.bottoms(i) for i in range(len(net.layers))]
        self.tops = [net.tops(i) for i in range(len(net.layers))]
        inputs = set(net.input_ids)
        # Data gradients where a training step needs them: every bottom but the input's.
        self.propagate = [[i not in inputs for i in ids] for ids in net.bottom_ids]
        net.blobs[self.input_name].data[...] = self.x
        self.grads = [np.random.default_rng(8).standard_normal(net.blob_list[i].shape)
                      .astype(np.float32) for i in net.output_ids]

    def forward(self) -> list[np.ndarray]:
        """One forward pass; returns the :func:`checked_blobs`."""
        if self.engine == "pyforge":
            # What pycaffe's net.forward() and pyforge test run (convolutions with their
            # in-place followers in one pass).
            self.net.forward_from_to()
            return [self.net.blobs[name].data for name in self.checked]
        if self.engine == "torch":
            import torch

            with torch.inference_mode():
                return [t.numpy() for t in self.mirror(torch.from_numpy(self.x), self.checked)]
        if self.engine == "opencv":
            self.cv.setInput(self.x)
            outs = self.cv.forward(self.cv_layers)
            return [o.reshape(s) for o, s in zip(outs, self.out_shapes)]
        return self.ort.run(None, {"data": self.x})

    def forward_backward(self) -> None:
        if self.engine == "pyforge":
            # Layer by layer, as pyforge time runs it (every layer keeps what its backward
            # reads), then the backward pass a training step needs.
            for layer, bottom, top in zip(self.layers, self.bottoms, self.tops):
                layer.reshape(bottom, top)
                layer.forward(bottom, top)
            for blob_id, grad in zip(self.net.output_ids, self.grads):
                self.net.blob_list[blob_id].diff[...] = grad
            for i in range(len(self.layers) - 1, -1, -1):
                self.layers[i].backward(self.tops[i], self.propagate[i], self.bottoms[i])
            return
        import torch

        self.mirror.zero_grad(set_to_none=False)
        outs = self.mirror(torch.from_numpy(self.x))
        grads = getattr(self, "torch_grads", None)
        if grads is None:
            grads = self.torch_grads = [torch.from_numpy(np.random.default_rng(8).standard_normal(
                o.shape).astype(np.float32)) for o in outs]
        torch.autograd.backward(outs, grads)


def worker(engine: str, prototxt: str, weights: str, batch: int) -> None:
    """Serve timing requests on stdin: ``check``, ``fwd N`` or ``fwdbwd N``."""
    runner = Engine(engine, Path(prototxt), Path(weights), batch)
    runner.forward()  # warm up: compilation, allocation
    if engine in BACKWARD_ENGINES:
        runner.forward_backward()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "check":
            outs = runner.forward()
            path = Path(weights).with_name(f"out_{engine}.npz")
            np.savez(path, *[np.asarray(o) for o in outs])
            print(path, flush=True)
            continue
        step = runner.forward if command[0] == "fwd" else runner.forward_backward
        times = []
        for _ in range(int(command[1])):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        print(json.dumps(times), flush=True)


class Worker:
    def __init__(self, engine: str, prototxt: Path, weights: Path, batch: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), OPENBLAS_NUM_THREADS=str(THREADS),
                   MKL_NUM_THREADS=str(THREADS), NUMBA_NUM_THREADS=str(THREADS),
                   PYFORGE_THREADS=str(THREADS))
        self.engine = engine
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", engine, str(prototxt), str(weights),
             str(batch)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=ROOT)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"{engine} worker failed to start ({line!r})")

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def compare(workers: dict[str, Worker]) -> dict[str, float]:
    """Each engine's largest output difference from pyforge's, relative to the output's
    largest magnitude."""
    outs = {name: np.load(w.ask("check")) for name, w in workers.items()}
    reference = [outs["pyforge"][k] for k in outs["pyforge"].files]
    errors = {}
    for name, archive in outs.items():
        got = [archive[k] for k in archive.files]
        errors[name] = max(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-30))
                           for g, r in zip(got, reference))
    return errors


def bench_net(net_name: str, batch: int, rounds: int, iterations: int, folder: Path) -> dict:
    prototxt, weights = write_deploy(net_name, batch, folder)
    workers = {engine: Worker(engine, prototxt, weights, batch) for engine in ENGINES}
    try:
        errors = compare(workers)
        print(f"{net_name} b{batch}: largest output difference from pyforge, relative to "
              f"scale: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items() if k != "pyforge"),
              flush=True)
        result = {"batch": batch, "max_rel_diff": errors, "forward_ms": {},
                  "forward_backward_ms": {}, "forward_ratio": {}, "forward_backward_ratio": {}}
        for mode, engines, key in (("fwd", ENGINES, "forward"),
                                   ("fwdbwd", BACKWARD_ENGINES, "forward_backward")):
            medians: dict[str, list[float]] = {e: [] for e in engines}
            for _ in range(rounds):
                for engine in engines:
                    # Let the previous engine's worker threads stop spinning (ONNX Runtime's
                    # pool spins after a run by default) before the next one starts.
                    time.sleep(SETTLE_S)
                    times = json.loads(workers[engine].ask(f"{mode} {iterations}"))
                    medians[engine].append(statistics.median(times) * 1e3)
            result[f"{key}_ms"] = {e: statistics.median(v) for e, v in medians.items()}
            result[f"{key}_ratio"] = {
                e: statistics.median(p / q for p, q in zip(medians["pyforge"], medians[e]))
                for e in engines if e != "pyforge"}
            result[f"{key}_rounds_ms"] = medians
        return result
    finally:
        for w in workers.values():
            w.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--json", default="")
    parser.add_argument("--worker", nargs=4, metavar=("ENGINE", "PROTOTXT", "WEIGHTS", "BATCH"))
    args = parser.parse_args()
    if args.worker:
        engine, prototxt, weights, batch = args.worker
        worker(engine, prototxt, weights, int(batch))
        return 0
    import cv2
    import numba
    import onnxruntime
    import torch

    import pyforge
    from pyforge.layers.blas import blas_name

    results = {"threads": THREADS, "rounds": args.rounds, "iterations": args.iterations,
               "versions": {"pyforge": pyforge.__version__, "torch": torch.__version__,
                            "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__,
                            "numba": numba.__version__, "numpy": np.__version__},
               "pyforge_convolution_sgemm": blas_name(),
               "nets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.nets.split(","):
            results["nets"][name] = bench_net(name, NETS[name], args.rounds, args.iterations,
                                              Path(tmp))
            r = results["nets"][name]
            print("  forward ms: " + ", ".join(f"{k} {v:.1f}" for k, v in r["forward_ms"].items())
                  + " | pyforge/peer: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                     r["forward_ratio"].items()), flush=True)
            print("  forward+backward ms: " + ", ".join(
                f"{k} {v:.1f}" for k, v in r["forward_backward_ms"].items()) + " | pyforge/torch "
                f"{r['forward_backward_ratio']['torch']:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
