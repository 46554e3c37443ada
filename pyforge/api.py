"""What the ``pyforge`` commands do, callable from Python; the CLI only parses flags.

Each function follows the matching action of Caffe's ``tools/caffe.cpp`` and logs the same
lines.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from .errors import PyforgeError, UsageError
from .log import fmt, get_logger
from .net.net import Net
from .parallel.comm import get_communicator
from .parallel.strategy import training_strategy
from .proto import caffe_pb2, read_net_param, read_solver_param, resolve_path
from .rng import make_rng
from .signals import SignalActions
from .solvers import create_solver


def stages_from_flag(stage: str) -> list[str]:
    """Caffe splits ``--stage`` at commas; an empty flag gives one empty stage, as boost does."""
    return stage.split(",")


def named_file(path: str, what: str) -> None:
    """A file named on the command line must exist: a UsageError (exit 2) when it does not.
    What a file holds is checked by its reader (exit 1)."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such {what} file")


def _note_gpu(gpu: str) -> None:
    if gpu:
        get_logger().warning("--gpu=%s ignored: pyforge computes on the CPU", gpu)


def train(solver: str, weights: str = "", snapshot: str = "", level: int = 0, stage: str = "",
          gpu: str = "", sigint_effect: str | None = None, sighup_effect: str = "snapshot",
          overrides: Callable[[caffe_pb2.SolverParameter], None] | None = None,
          force: bool = False, allow_nonfinite: bool = False) -> None:
    """``caffe train``: build the solver, optionally resume or fine-tune, and solve."""
    log = get_logger()
    if not solver:
        raise UsageError("need a solver definition to train (pyforge train SOLVER or "
                         "--solver=SOLVER)")
    if snapshot and weights:
        raise UsageError("give a snapshot to resume training or weights to fine-tune, "
                         "but not both")
    actions = SignalActions(sigint_effect, sighup_effect)  # checks the flags' values
    named_file(solver, "solver")
    if snapshot:
        named_file(snapshot, "snapshot")
    for path in weights.split(","):
        if path.strip():
            named_file(resolve_path(path.strip(), solver, "weights"), "weights")
    param = read_solver_param(solver)
    param.train_state.level = level
    for s in stages_from_flag(stage):
        param.train_state.stage.append(s)
    _note_gpu(gpu)
    if param.HasField("solver_mode") and param.solver_mode == caffe_pb2.SolverParameter.GPU:
        log.warning("solver_mode: GPU ignored: pyforge computes on the CPU")
    log.info("Use CPU.")
    if snapshot:
        param.ClearField("weights")
    elif weights:
        param.ClearField("weights")
        param.weights.append(weights)
    if overrides is not None:
        overrides(param)
    parallel = training_strategy(get_communicator())
    # Under mpiexec rank 0 speaks for the job; the other ranks only report errors.
    parallel.quiet_followers(log)
    try:
        solver_obj = create_solver(param, solver_file=solver, logger=log, action=actions,
                                   parallel=parallel)
    except PyforgeError as exc:
        parallel.abort_job(log, exc)
        parallel.close()
        raise
    except BaseException:
        parallel.close()
        raise
    solver_obj.stop_on_nonfinite = not allow_nonfinite
    solver_obj.show_eta = sys.stderr.isatty() and parallel.is_leader
    actions.install()
    try:
        if snapshot:
            log.info("Resuming from %s", snapshot)
            solver_obj.restore(snapshot, force=force)
        log.info("Starting Optimization")
        solver_obj.solve()
        log.info("Optimization Done.")
    except PyforgeError as exc:
        # Signals off first: under mpiexec the abort ends this process.
        actions.uninstall()
        parallel.abort_job(log, exc)
        raise
    finally:
        actions.uninstall()
        solver_obj.close()
        parallel.close()


def _load_net(model: str, phase: int, level: int, stage: str, seed: int | None = None) -> Net:
    param = read_net_param(model)
    state = caffe_pb2.NetState(phase=phase, level=level)
    state.stage.extend(stages_from_flag(stage))
    param.state.CopyFrom(state)
    return Net(param, rng=make_rng(seed), logger=get_logger(), source_file=model)


def test(model: str, weights: str, iterations: int = 50, level: int = 0, stage: str = "",
         gpu: str = "") -> dict[str, float]:
    """``caffe test``: score a model for ``iterations`` batches; returns the mean outputs."""
    log = get_logger()
    if not model:
        raise UsageError("need a model definition to score (--model)")
    if not weights:
        raise UsageError("need model weights to score (--weights)")
    if iterations <= 0:
        raise UsageError(f"--iterations must be positive, found {iterations}")
    named_file(model, "model")
    named_file(weights, "weights")
    _note_gpu(gpu)
    log.info("Use CPU.")
    net = _load_net(model, caffe_pb2.TEST, level, stage)
    try:
        from .io.snapshot import load_weights

        load_weights(net, weights)
        log.info("Running for %d iterations.", iterations)
        scores: list[np.float32] = []
        names: list[tuple[str, float]] = []
        loss = 0.0
        from .tools.progress import progress_bar

        progress = progress_bar("test")  # only on a terminal
        for i in range(iterations):
            loss += float(np.float32(net.forward_loss()))
            if progress is not None:
                progress(i + 1, iterations)
            index = 0
            for name, blob, weight in net.output_blobs():
                for value in blob.data.reshape(-1):
                    value = np.float32(value)
                    if i == 0:
                        scores.append(value)
                        names.append((name, weight))
                    else:
                        scores[index] = np.float32(scores[index] + value)
                    log.info("Batch %d, %s = %s", i, name, fmt(value))
                    index += 1
        loss /= iterations
        log.info("Loss: %s", fmt(np.float32(loss)))
        result: dict[str, float] = {}
        for (name, weight), total in zip(names, scores):
            mean = np.float32(total / np.float32(iterations))
            note = ""
            if weight:
                note = f" (* {fmt(np.float32(weight))} = {fmt(np.float32(weight) * mean)} loss)"
            log.info("%s = %s%s", name, fmt(mean), note)
            result[name] = float(mean)
        return result
    finally:
        net.close()


def time_net(model: str, iterations: int = 50, phase: str = "", level: int = 0,
             stage: str = "", gpu: str = "") -> float:
    """``caffe time``: per-layer forward/backward timings; returns the average ms per
    forward-backward."""
    log = get_logger()
    if not model:
        raise UsageError("need a model definition to time (--model)")
    if iterations <= 0:
        raise UsageError(f"--iterations must be positive, found {iterations}")
    phase = phase or "TRAIN"
    if phase not in ("TRAIN", "TEST"):
        raise UsageError(f'--phase must be "TRAIN" or "TEST", found "{phase}"')
    named_file(model, "model")
    _note_gpu(gpu)
    log.info("Use CPU.")
    net = _load_net(model, caffe_pb2.Phase.Value(phase), level, stage)
    try:
        log.info("Performing Forward")
        # Unfused, as the timed passes run: every layer's buffers are allocated and touched
        # here, not in the first timed pass (page faults counted as layer time).
        initial_loss = net.forward_from_to(fuse=False)
        log.info("Initial loss: %s", fmt(np.float32(initial_loss)))
        log.info("Performing Backward")
        net.backward_all()
        layers = net.layers
        bottoms = [net.bottoms(i) for i in range(len(layers))]
        tops = [net.tops(i) for i in range(len(layers))]
        # The timed passes run every layer's backward, as Caffe's do, while Backward() above
        # skips the layers no loss needs: run those once untimed too, so that compiling their
        # kernels (seconds on a cold Numba cache) is not counted as layer time.
        for i in range(len(layers) - 1, -1, -1):
            if not net.layer_need_backward[i]:
                layers[i].backward(tops[i], net.bottom_need_backward[i], bottoms[i])
        forward_us = [0.0] * len(layers)
        backward_us = [0.0] * len(layers)
        forward_total = backward_total = 0.0
        log.info("*** Benchmark begins ***")
        log.info("Testing for %d iterations.", iterations)
        clock = time.perf_counter
        total_start = clock()
        for j in range(iterations):
            iter_start = clock()
            for i, layer in enumerate(layers):
                t = clock()
                layer.reshape(bottoms[i], tops[i])
                layer.forward(bottoms[i], tops[i])
                forward_us[i] += (clock() - t) * 1e6
            forward_total += (clock() - iter_start) * 1e6
            back_start = clock()
            for i in range(len(layers) - 1, -1, -1):
                t = clock()
                layers[i].backward(tops[i], net.bottom_need_backward[i], bottoms[i])
                backward_us[i] += (clock() - t) * 1e6
            backward_total += (clock() - back_start) * 1e6
            log.info("Iteration: %d forward-backward time: %s ms.", j + 1,
                     fmt((clock() - iter_start) * 1e3))
        total_ms = (clock() - total_start) * 1e3
        log.info("Average time per layer: ")
        for i, name in enumerate(net.layer_names):
            log.info("%10s\tforward: %s ms.", name, fmt(forward_us[i] / 1000 / iterations))
            log.info("%10s\tbackward: %s ms.", name, fmt(backward_us[i] / 1000 / iterations))
        log.info("Average Forward pass: %s ms.", fmt(forward_total / 1000 / iterations))
        log.info("Average Backward pass: %s ms.", fmt(backward_total / 1000 / iterations))
        average = total_ms / iterations
        log.info("Average Forward-Backward: %s ms.", fmt(average))
        log.info("Total Time: %s ms.", fmt(total_ms))
        # Not in Caffe's table: where the time goes, for users tuning their nets.
        per_layer = [(forward_us[i] + backward_us[i], name) for i, name in
                     enumerate(net.layer_names)]
        spent = sum(t for t, _ in per_layer) or 1.0
        top = sorted(per_layer, reverse=True)[:3]
        log.info("Slowest layers: %s", ", ".join(
            f"{name} {fmt(t / 1000 / iterations)} ms ({100 * t / spent:.0f}%)" for t, name in top))
        log.info("*** Benchmark ends ***")
        return average
    finally:
        net.close()


def device_query(gpu: str = "") -> dict[str, str]:
    """What pyforge computes on: the CPU, its threads, the BLAS and the library versions."""
    import google.protobuf
    import numba

    from . import __version__

    log = get_logger()
    if gpu:
        log.info("Querying GPUs %s", gpu)
        log.warning("pyforge has no GPU backend; reporting the CPU instead")
    info = {
        "pyforge": __version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "logical cpus": str(os.cpu_count()),
        "cpus usable": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                           else os.cpu_count()),
        "numba": numba.__version__,
        "numba threads": str(numba.get_num_threads()),
        "numba threading layer": _threading_layer(),
        "numpy": np.__version__,
        "blas": _blas_name(),
        "convolution sgemm": _convolution_blas(),
        "protobuf": google.protobuf.__version__,
    }
    for key, value in info.items():
        log.info("%s: %s", key, value)
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return "not yet chosen (chosen at the first parallel kernel)"


def _convolution_blas() -> str:
    """The library the convolution kernels' sgemm comes from (PYFORGE_BLAS)."""
    from .errors import PyforgeError
    from .layers.blas import blas_name

    try:
        return blas_name()
    except PyforgeError as error:
        return str(error)


def _blas_name() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        name = blas.get("name", "unknown")
        version = blas.get("version", "")
        return f"{name} {version}".strip()
    except Exception:
        return "unknown"
