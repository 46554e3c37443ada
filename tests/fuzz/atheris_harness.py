"""Coverage-guided fuzzing of pyforge's readers with atheris (libFuzzer), run by hand.

Not collected by pytest (no ``test_`` prefix) and not a dependency: install atheris where you
like, for example ``pip install --target /tmp/atheris_pkgs atheris``, then from the repo root::

    PYTHONPATH=/tmp/atheris_pkgs python -m tests.fuzz.atheris_harness TARGET [libFuzzer flags]

TARGET is one of ``caffemodel``, ``solverstate``, ``datum``, ``net``, ``solver``, ``mean``.
Useful flags: ``-atheris_runs=N`` (inputs to try), ``-max_total_time=S``, ``-max_len=N``, and a
corpus folder as the last argument (it is seeded with the real files when empty). An input
that breaks the rule (an exception other than PyforgeError, or a PyforgeError whose message is
not one line) stops the run, and libFuzzer writes it to ``crash-<sha1>``; violations already in
``_harness.KNOWN_BUGS`` are counted and skipped. The same oracle as the hypothesis tests.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import atheris
import numpy as np

# Numba compiles the kernels from their bytecode, which must stay free of atheris' probes
# (``exclude`` takes whole module names, not prefixes).
KERNELS = ["pyforge.kernels"] + [
    f"pyforge.kernels.{p.stem}"
    for p in (Path(__file__).resolve().parents[2] / "pyforge" / "kernels").glob("*.py")]

with atheris.instrument_imports(include=["pyforge"], exclude=KERNELS):
    from pyforge.errors import PyforgeError
    from pyforge.io.datum import datum_array, parse_datum
    from pyforge.io.snapshot import load_weights, read_solver_state, read_weights
    from pyforge.io.transform import DataTransformer
    from pyforge.net.net import Net
    from pyforge.proto import caffe_pb2, read_net_param, read_solver_param
    from pyforge.solvers import create_solver

from tests.fuzz._harness import (  # noqa: E402
    FUZZ_DATA,
    KNOWN_BUGS,
    REFERENCE,
    pyforge_origin,
    quiet_logger,
)

WORK = Path(tempfile.mkdtemp(prefix="pyforge-atheris-"))
SEEN: Counter = Counter()


def _lenet() -> Net:
    param = read_net_param(FUZZ_DATA / "lenet_dummy.prototxt")
    param.state.phase = caffe_pb2.TEST
    return Net(param, logger=quiet_logger())


def _target(name: str):
    """(function of one input's bytes, seed files) for ``name``."""
    if name == "caffemodel":
        net = _lenet()
        path = WORK / "fuzz.caffemodel"

        def run(data: bytes) -> None:
            path.write_bytes(data)
            read_weights(str(path))
            load_weights(net, str(path))
        return run, [REFERENCE / "init" / "snap_iter_0.caffemodel"]
    if name == "solverstate":
        path = WORK / "fuzz.solverstate"

        def run(data: bytes) -> None:
            path.write_bytes(data)
            read_solver_state(str(path))
        return run, [REFERENCE / "runs" / "sgd_inv" / "snap_iter_30.solverstate"]
    if name == "datum":
        def run(data: bytes) -> None:
            datum = parse_datum(data, "fuzz record")
            datum_array(datum, "fuzz record", bool(len(data) % 2), bool(len(data) % 3 == 0))
        seed = WORK / "datum.bin"
        seed.write_bytes(caffe_pb2.Datum(channels=1, height=2, width=2, data=b"abcd",
                                         label=1).SerializeToString())
        return run, [seed]
    if name == "mean":
        path = WORK / "mean.binaryproto"

        def run(data: bytes) -> None:
            path.write_bytes(data)
            param = caffe_pb2.TransformationParameter(mean_file=str(path), crop_size=2)
            transformer = DataTransformer(param, caffe_pb2.TRAIN, 1, "layer 'fuzz'")
            raw = np.ones((1, 3, 4, 4), np.float32)
            transformer.transform(raw, 0, np.empty((1, 3, 2, 2), np.float32))
        seed = WORK / "mean_seed.binaryproto"
        blob = caffe_pb2.BlobProto()
        blob.shape.dim.extend([1, 3, 4, 4])
        blob.data.extend([0.5] * 48)
        seed.write_bytes(blob.SerializeToString())
        return run, [seed]
    if name == "net":
        path = WORK / "fuzz.prototxt"

        def run(data: bytes) -> None:
            path.write_bytes(data)
            param = read_net_param(path)
            if any(layer.type == "LRN" and layer.lrn_param.local_size > 100_001
                   for layer in param.layer):
                return  # the known LRN hang (test_regressions.py)
            net = Net(param, logger=quiet_logger(), source_file=str(path))
            try:
                net.forward_loss()
                net.backward_all()
            finally:
                net.close()
        return run, [FUZZ_DATA / "zoo_net.prototxt",
                     REFERENCE / "shapes" / "examples_cifar10_cifar10_quick.prototxt"]
    if name == "solver":
        (WORK / "net.prototxt").write_text((FUZZ_DATA / "lenet_dummy.prototxt").read_text())
        path = WORK / "fuzz_solver.prototxt"

        def run(data: bytes) -> None:
            path.write_bytes(data)
            solver = create_solver(read_solver_param(path), solver_file=str(path),
                                   logger=quiet_logger())
            solver.close()
        return run, [FUZZ_DATA / "solver_inline.prototxt"]
    raise SystemExit(f"unknown target {name!r}")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__)
    name = sys.argv.pop(1)
    logging.disable(logging.CRITICAL)
    os.chdir(WORK)  # solvers write snapshot probes in the current folder
    run, seeds = _target(name)
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for folder in corpus:
        Path(folder).mkdir(parents=True, exist_ok=True)
        if not any(Path(folder).iterdir()):
            for seed in seeds:
                (Path(folder) / seed.name).write_bytes(seed.read_bytes())

    def one_input(data: bytes) -> None:
        try:
            with np.errstate(all="ignore"):
                run(data)
        except PyforgeError as exc:
            if "\n" in exc.message or not exc.message.strip():
                raise AssertionError(f"bad PyforgeError message: {exc.message!r}") from None
            SEEN["PyforgeError"] += 1
        except Exception as exc:
            origin = pyforge_origin(exc)
            problem = f"escaped as {type(exc).__name__} from {origin}: {exc}"
            for bug in KNOWN_BUGS:
                if bug.matches(name, exc, origin, problem):
                    SEEN[f"known:{bug.name}"] += 1
                    return
            raise
        else:
            SEEN["loaded"] += 1
        finally:
            if sum(SEEN.values()) % 1000 == 0:  # libFuzzer exits without running atexit
                print(f"pyforge atheris {name}: {sum(SEEN.values())} inputs {dict(SEEN)}",
                      file=sys.stderr, flush=True)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
