"""The training loop shared by every solver type (Caffe's Solver and SGDSolver template)."""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable

import numpy as np

from ..blob import Blob, mean_abs
from ..errors import EXIT_DIVERGED, PyforgeError, SolverError, WeightsError
from ..io.snapshot import (
    SolverStateData,
    load_weights,
    read_solver_state,
    snapshot_filename,
    write_model,
    write_solver_state,
)
from ..kernels.checks import all_finite
from ..log import fmt, get_logger
from ..net.net import Net
from ..parallel.comm import Communicator
from ..proto import caffe_pb2, read_net_param, resolve_path
from ..proto.io import debug_string
from ..rng import make_rng
from ..signals import NONE, SNAPSHOT, SNAPSHOT_STOP, STOP
from .lr_policy import LrState, get_policy
from .monitor import MetricsFile, MetricWatch, make_watch, metrics_path

f32 = np.float32


class Solver(abc.ABC):
    """Builds the train and test nets from a SolverParameter and trains them.

    Subclasses implement ``compute_update_value(param_id, rate)``; everything else (the loop,
    lr, clipping, normalisation, regularisation, testing, snapshots) is shared, in Caffe's order.
    """

    type_name = ""
    #: Number of history blobs per learnable parameter (AdaDelta and Adam keep two).
    history_sets = 1

    def __init__(self, param: caffe_pb2.SolverParameter, solver_file: str | None = None,
                 logger: logging.Logger | None = None,
                 action: Callable[[], str] | None = None,
                 comm: Communicator | None = None) -> None:
        self.logger = logger or get_logger()
        #: The data-parallel communicator (single process unless run under mpiexec).
        self.comm = comm or Communicator()
        self.param = param
        self.solver_file = solver_file
        self.action = action or (lambda: NONE)
        log = self.logger.info
        log("Initializing solver from parameters: \n%s", debug_string(param))
        try:
            self.check_params()
            self.lr_policy = get_policy(param)
            self._resolve_snapshot_prefix()
            self._check_snapshot_write_permissions()
        except SolverError as exc:
            raise self._in_file(exc) from None
        # Caffe seeds each solver with random_seed + its rank; rank 0's weights are broadcast
        # below, so only the per-rank random streams (dropout, crops) differ.
        seed = param.random_seed if param.HasField("random_seed") else None
        if seed is not None and seed >= 0:
            seed += self.comm.rank
        self.rng = make_rng(seed)
        try:
            self.net = self._init_train_net()
            self.test_nets = self._init_test_nets()
        except SolverError as exc:
            raise self._in_file(exc) from None
        self._warn_about_settings()
        self._setup_watches()
        if self.comm.size > 1:
            self._join_ranks()
        log("Solver scaffolding done.")
        self.iter = 0
        self.lr_state = LrState(logger=self.logger)
        self.losses: list[np.float32] = []
        self.smoothed_loss = f32(0)
        self.requested_early_exit = False
        self.iterations_last = 0
        self.history: list[Blob] = []
        self._resume_window: dict | None = None
        self._restored_rank_states: list | None = None
        self._loss_start_iter = 0
        self.last_snapshot: tuple[str, str] | None = None
        self._last_snapshot_iter = -1
        self._snapshot_on_stop = False
        #: Stop at the first non-finite loss, gradient or parameter (--allow_nonfinite clears).
        self.stop_on_nonfinite = True
        #: Add an ETA to the display line (the CLI sets it when stderr is a terminal).
        self.show_eta = False
        #: Where the JSONL metrics go (None: the solver's metrics_file or <prefix>.metrics.jsonl).
        self.metrics_override: str | None = None
        self._metrics: MetricsFile | None = None
        self._resumed = False
        self._start_time = time.time()
        self._pending_record: dict | None = None
        self.pre_solve()

    # --- construction ----------------------------------------------------------------------
    def _in_file(self, exc: SolverError) -> SolverError:
        """The error with the solver file named first (errors from settings carry no file)."""
        if self.solver_file and not exc.message.startswith(self.solver_file):
            return SolverError(f"{self.solver_file}: {exc.message}")
        return exc

    def check_params(self) -> None:
        p = self.param
        if p.average_loss < 1:
            raise SolverError(f"average_loss must be >= 1, found {p.average_loss}")
        if p.iter_size < 1:
            raise SolverError(f"iter_size must be >= 1, found {p.iter_size}")
        if any(n <= 0 for n in p.test_iter):
            raise SolverError(f"test_iter must be > 0 for every test net, found "
                              f"{list(p.test_iter)}")
        if p.regularization_type not in ("L1", "L2"):
            raise SolverError(f"unknown regularization_type '{p.regularization_type}' "
                              "(known: L1, L2)")

    def _resolve_snapshot_prefix(self) -> None:
        prefix = self.param.snapshot_prefix
        directory = os.path.dirname(prefix)
        if directory and not os.path.isdir(directory) and self.solver_file:
            candidate = os.path.join(os.path.dirname(self.solver_file), directory)
            if os.path.isdir(candidate):
                self.param.snapshot_prefix = os.path.join(os.path.dirname(self.solver_file),
                                                          prefix)
                self.logger.info("snapshot_prefix folder '%s' does not exist relative to the "
                                 "current directory; using '%s' (relative to %s)", directory,
                                 candidate, self.solver_file)

    def _check_snapshot_write_permissions(self) -> None:
        p = self.param
        if not (p.snapshot > 0 or p.snapshot_after_train) or self.comm.rank != 0:
            return  # only rank 0 writes snapshots
        if p.snapshot > 0 and not p.snapshot_prefix:
            raise SolverError("snapshot is set but snapshot_prefix is not")
        probe = f"{p.snapshot_prefix}_iter_probe{os.getpid()}.tempfile"
        try:
            with open(probe, "w"):
                pass
            os.remove(probe)
        except (OSError, ValueError):  # ValueError: a NUL byte in the prefix
            raise SolverError(f"cannot write to snapshot_prefix '{p.snapshot_prefix}'; make sure "
                              "its directory exists and is writable") from None

    def _read_net(self, path: str) -> tuple[caffe_pb2.NetParameter, str]:
        resolved = resolve_path(path, self.solver_file, "net")
        try:
            return read_net_param(resolved), resolved
        except PyforgeError as exc:
            # Name the solver file when the message cannot show the net path plainly.
            if self.solver_file and (not resolved or resolved not in exc.message):
                raise type(exc)(f"{self.solver_file}: net: {exc.message}", exc.detail) from None
            raise

    def _init_train_net(self) -> Net:
        p = self.param
        sources = [p.HasField("train_net_param"), p.HasField("train_net"), p.HasField("net_param"),
                   p.HasField("net")]
        if sum(sources) != 1:
            raise SolverError("give exactly one of net, net_param, train_net, train_net_param "
                              f"in the solver; found {sum(sources)}")
        if p.HasField("train_net_param"):
            self.logger.info("Creating training net specified in train_net_param.")
            net_param, source = caffe_pb2.NetParameter(), self.solver_file
            net_param.CopyFrom(p.train_net_param)
        elif p.HasField("train_net"):
            self.logger.info("Creating training net from train_net file: %s", p.train_net)
            net_param, source = self._read_net(p.train_net)
        elif p.HasField("net_param"):
            self.logger.info("Creating training net specified in net_param.")
            net_param, source = caffe_pb2.NetParameter(), self.solver_file
            net_param.CopyFrom(p.net_param)
        else:
            self.logger.info("Creating training net from net file: %s", p.net)
            net_param, source = self._read_net(p.net)
        state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN)
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        net_param.state.CopyFrom(state)
        net = Net(net_param, rng=self.rng, logger=self.logger, source_file=source,
                  reserve_diff=len(_FLAGS) if self.comm.size > 1 else 0)
        self._load_weights(net)
        if self.comm.size > 1:
            for layer in net.layers:
                if hasattr(layer, "set_shard"):
                    layer.set_shard(self.comm.rank, self.comm.size)
        return net

    def _init_test_nets(self) -> list[Net]:
        p = self.param
        generic = p.HasField("net") or p.HasField("net_param")
        if p.HasField("net") and p.HasField("net_param"):
            raise SolverError("give only one of net and net_param")
        specific = len(p.test_net_param) + len(p.test_net)
        n_tests = len(p.test_iter)
        if generic:
            if n_tests < specific:
                raise SolverError(f"test_iter must be given for each test net: {n_tests} "
                                  f"test_iter for {specific} test net(s)")
        elif n_tests != specific:
            raise SolverError(f"test_iter must be given once per test net: {n_tests} test_iter "
                              f"for {specific} test net(s)")
        n_generic = n_tests - specific
        total = specific + (n_generic if generic else 0)
        if len(p.test_state) and len(p.test_state) != total:
            raise SolverError(f"test_state must be empty or given once per test net: "
                              f"{len(p.test_state)} test_state for {total} test net(s)")
        if total and p.test_interval <= 0:
            raise SolverError(f"test_interval must be > 0 when there are test nets, found "
                              f"{p.test_interval}")
        specs: list[tuple[str, caffe_pb2.NetParameter, str | None]] = []
        for net_param in p.test_net_param:
            specs.append(("test_net_param", net_param, self.solver_file))
        for name in p.test_net:
            net_param, source = self._read_net(name)
            specs.append((f"test_net file: {name}", net_param, source))
        for _ in range(n_generic if generic else 0):
            if p.HasField("net"):
                net_param, source = self._read_net(p.net)
                specs.append((f"net file: {p.net}", net_param, source))
            else:
                specs.append(("net_param", p.net_param, self.solver_file))
        nets = []
        for i, (label, net_param, source) in enumerate(specs):
            copy = caffe_pb2.NetParameter()
            copy.CopyFrom(net_param)
            state = caffe_pb2.NetState(phase=caffe_pb2.TEST)
            state.MergeFrom(copy.state)
            if len(p.test_state):
                state.MergeFrom(p.test_state[i])
            copy.state.CopyFrom(state)
            self.logger.info("Creating test net (#%d) specified by %s", i, label)
            net = Net(copy, rng=self.rng, logger=self.logger, source_file=source)
            net.debug_info = p.debug_info
            self._load_weights(net)
            nets.append(net)
        return nets

    def _load_weights(self, net: Net) -> None:
        for entry in self.param.weights:
            for path in entry.split(","):
                path = path.strip()
                if not path:
                    continue
                resolved = resolve_path(path, self.solver_file, "weights")
                self.logger.info("Finetuning from %s", path)
                load_weights(net, resolved)

    def _warn_about_settings(self) -> None:
        """Checks Caffe does not make, logged as warnings: lr-policy parameters that the policy
        ignores, the effective batch, and test passes that do not cover their test set."""
        p = self.param
        for name in ("gamma", "power", "stepsize", "stepvalue"):
            is_set = len(p.stepvalue) > 0 if name == "stepvalue" else p.HasField(name)
            if is_set and name not in self.lr_policy.uses:
                self.logger.warning("%s is set but lr_policy '%s' does not use it (it uses %s)",
                                    name, p.lr_policy, ", ".join(self.lr_policy.uses))
        batch = _batch_size(self.net)
        if batch:
            self.logger.info("Effective batch size: %d (batch %d x iter_size %d)",
                             batch * p.iter_size, batch, p.iter_size)
        for i, net in enumerate(self.test_nets):
            batch = _batch_size(net)
            size = _dataset_size(net)
            if batch and size and i < len(p.test_iter) and p.test_iter[i] * batch != size:
                self.logger.warning(
                    "Test net #%d scores test_iter %d x batch %d = %d items per test pass, but "
                    "its data holds %d; %s", i, p.test_iter[i], batch, p.test_iter[i] * batch,
                    size, "each pass sees a different part" if p.test_iter[i] * batch < size
                    else "some items are scored twice")

    def _join_ranks(self) -> None:
        """Every rank must build the same net and solver; then all take rank 0's weights."""
        digest = hashlib.sha256(json.dumps([self.net.fingerprint(), debug_string(self.param),
                                            self.type_name]).encode()).hexdigest()
        digests = self.comm.allgather_object(digest)
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise PyforgeError(f"ranks {differing} built a different net or solver than rank 0 "
                               "(check that every machine has the same files and pyforge "
                               "version); stopping every rank")
        self.comm.broadcast_(self.net.param_data)
        batch = _batch_size(self.net)
        self.logger.info("Data parallel over %d ranks: effective batch %d (batch %d x iter_size "
                         "%d x %d ranks); rank r reads records r, r+%d, ...", self.comm.size,
                         batch * self.param.iter_size * self.comm.size, batch,
                         self.param.iter_size, self.comm.size, self.comm.size)

    def _setup_watches(self) -> None:
        """Early stopping / keep_best and the plateau policy watch one test output each."""
        p = self.param
        outputs = self.test_nets[0].outputs if self.test_nets else []
        self.early_watch: MetricWatch | None = None
        self.plateau_watch: MetricWatch | None = None
        self.plateau_cooldown = 0
        if p.early_stop_patience < 0:
            raise SolverError(f"early_stop_patience must be >= 0, found {p.early_stop_patience}")
        if p.early_stop_patience > 0 or p.keep_best:
            what = "early stopping" if p.early_stop_patience > 0 else "keep_best"
            self.early_watch = make_watch(p.early_stop_metric, p.early_stop_mode, outputs, what)
        if p.lr_policy == "plateau":
            self.plateau_watch = make_watch(p.plateau_metric or p.early_stop_metric,
                                            p.plateau_mode or p.early_stop_mode, outputs,
                                            "lr_policy 'plateau'")

    def pre_solve(self) -> None:
        shapes = [p.blob.shape for p in self.net.learnable]
        self.history = [Blob(s) for _ in range(self.history_sets) for s in shapes]

    # --- the loop --------------------------------------------------------------------------
    def solve(self, resume_file: str | None = None) -> None:
        log = self.logger.info
        log("Solving %s", self.net.name)
        log("Learning Rate Policy: %s", self.param.lr_policy)
        self.requested_early_exit = False
        if resume_file:
            log("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        self._start_time = time.time()
        if self._metrics is None:
            self._metrics = MetricsFile(metrics_path(self.param, self.metrics_override),
                                        append=self._resumed)
        self.step(self.param.max_iter - self.iter)
        p = self.param
        after_train = p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0)
        # (A stop requested with a snapshot writes one even with snapshot_after_train: false.)
        if (after_train or self._snapshot_on_stop) and self._last_snapshot_iter != self.iter:
            self.snapshot()
        if self.requested_early_exit:
            log("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            loss = f32(self.net.forward_loss())
            # The window's start is Solve's start iteration, or, after an exact resume, that of
            # the run resumed (restored with the window).
            self.update_smoothed_loss(loss, self._loss_start_iter, p.average_loss)
            log("Iteration %d, loss = %s", self.iter, fmt(self.smoothed_loss))
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log("Optimization Done.")
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def step(self, iters: int) -> None:
        p = self.param
        start_iter = self.iter
        stop_iter = self.iter + iters
        self.losses = []
        self.smoothed_loss = f32(0)
        if self._resume_window is not None:
            # Continue the smoothing window of the run this one resumes, so the displayed
            # losses equal the uninterrupted run's.
            window = self._resume_window
            self._resume_window = None
            self.losses = [f32(x) for x in window["losses"]]
            self.smoothed_loss = f32(window["value"])
            start_iter = int(window["start_iter"])
        self._loss_start_iter = start_iter
        timer = time.perf_counter()
        while self.iter < stop_iter:
            self.comm.heartbeat(self.iter)
            self.net.clear_param_diffs()
            if p.test_interval and self.iter % p.test_interval == 0 and (
                self.iter > 0 or p.test_initialization
            ):
                self.test_all()
                if self.requested_early_exit:
                    break
            display = bool(p.display) and self.iter % p.display == 0
            self.net.debug_info = display and p.debug_info
            self.on_iteration_start()
            loss = f32(0)
            for _ in range(p.iter_size):
                loss += f32(self.net.forward_backward())
            loss /= f32(p.iter_size)
            request = NONE
            if self.comm.size > 1:
                request = self._exchange_gradients(loss)
            if self.stop_on_nonfinite:
                self._check_finite_after_backward(loss)
            self.update_smoothed_loss(loss, start_iter, p.average_loss)
            if display:
                lapse = time.perf_counter() - timer
                per_s = (self.iter - self.iterations_last) / (lapse if lapse else 1)
                self.logger.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s%s",
                                 self.iter, fmt(per_s), fmt(round(lapse, 3)), p.display,
                                 fmt(self.smoothed_loss), self._eta(per_s))
                timer = time.perf_counter()
                self.iterations_last = self.iter
                self._log_outputs("Train", self.net)
                self._pending_record = {
                    "kind": "train", "iter": self.iter, "loss": float(loss),
                    "smoothed_loss": float(self.smoothed_loss),
                    "outputs": _outputs(self.net), "wall_time": self._wall_time(),
                    "iter_per_s": per_s}
            self.on_gradients_ready()
            rate = self.apply_update()
            if self._pending_record is not None:
                self._pending_record["lr"] = float(rate)
                self._record(self._pending_record)
                self._pending_record = None
            if self.stop_on_nonfinite:
                self._check_params_finite()
            if self.comm.size == 1:
                request = self.action()
            if (p.snapshot and self.iter % p.snapshot == 0) or request == SNAPSHOT:
                self.snapshot()
            if request in (STOP, SNAPSHOT_STOP):
                self.logger.info("Stop requested at iteration %d%s", self.iter,
                                 "; snapshotting" if request == SNAPSHOT_STOP else "")
                self._snapshot_on_stop = request == SNAPSHOT_STOP
                self.requested_early_exit = True
                break

    def _exchange_gradients(self, loss: np.float32) -> str:
        """Sum the gradients over the ranks in one in-place collective, with the control flags
        in the slots after them, and average as Caffe does (sum, then scale by 1/N). Signals are
        agreed here, so every rank acts on them at the same iteration."""
        request = self.action()
        flags = self.net.diff_buffer[len(self.net.param_diff):]
        flags[:] = 0
        flags[_FLAGS.index("stop")] = request in (STOP, SNAPSHOT_STOP)
        flags[_FLAGS.index("snapshot")] = request in (SNAPSHOT, SNAPSHOT_STOP)
        flags[_FLAGS.index("nonfinite")] = not np.isfinite(loss)
        self.comm.allreduce_sum_(self.net.diff_buffer, self.iter)
        self.net.param_diff *= f32(1.0 / self.comm.size)
        if flags[_FLAGS.index("nonfinite")] and np.isfinite(loss) and self.stop_on_nonfinite:
            raise DivergenceError(f"training diverged at iteration {self.iter} on another rank "
                                  "(rank 0 reports where)")
        stop = flags[_FLAGS.index("stop")] > 0
        snap = flags[_FLAGS.index("snapshot")] > 0
        return SNAPSHOT_STOP if stop and snap else STOP if stop else SNAPSHOT if snap else NONE

    def _eta(self, per_s: float) -> str:
        """", ETA 1:23:45" on a terminal; nothing in logs written to files or pipes, which keep
        Caffe's exact line."""
        if not self.show_eta or per_s <= 0 or self.iter == self.iterations_last:
            return ""
        left = int((self.param.max_iter - self.iter) / per_s)
        return f", ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"

    def on_iteration_start(self) -> None:
        """Hook: after an iteration's test pass, before its first forward pass (where Caffe
        calls its solver callbacks' on_start)."""

    def on_gradients_ready(self) -> None:
        """Hook: after the forward/backward passes (and the data-parallel exchange), before
        the update (Caffe's on_gradients_ready)."""

    def _log_outputs(self, kind: str, net: Net) -> None:
        index = 0
        for name, blob, weight in net.output_blobs():
            for value in blob.data.reshape(-1):
                self.logger.info("    %s net output #%d: %s = %s%s", kind, index, name,
                                 fmt(value), _loss_note(weight, value))
                index += 1

    def update_smoothed_loss(self, loss: np.float32, start_iter: int, average_loss: int) -> None:
        if len(self.losses) < average_loss:
            self.losses.append(loss)
            size = len(self.losses)
            self.smoothed_loss = f32((self.smoothed_loss * f32(size - 1) + loss) / f32(size))
        else:
            idx = (self.iter - start_iter) % average_loss
            self.smoothed_loss = f32(self.smoothed_loss
                                     + (loss - self.losses[idx]) / f32(average_loss))
            self.losses[idx] = loss

    # --- divergence ---------------------------------------------------------------------------
    def _check_finite_after_backward(self, loss: np.float32) -> None:
        """After forward/backward: the loss and every gradient must be finite."""
        if np.isfinite(loss) and all(all_finite(p.blob.diff.reshape(-1))
                                     for p in self.net.learnable):
            return
        where = first_nonfinite(self.net)
        raise DivergenceError(self._divergence_message(
            f"the loss is {loss:g}" if not np.isfinite(loss) else "a gradient is not finite",
            where))

    def _check_params_finite(self) -> None:
        """After the update: every parameter must be finite."""
        for p in self.net.learnable:
            if not all_finite(p.blob.data.reshape(-1)):
                where = f"layer '{p.layer}' parameter blob {p.index} data"
                raise DivergenceError(self._divergence_message(
                    "the update made a parameter non-finite (its gradient was finite)", where,
                    self.iter - 1))

    def _divergence_message(self, what: str, where: str, iteration: int | None = None) -> str:
        if self.param.debug_info:
            self.logger.error("Per-layer statistics of iteration %d:", self.iter)
            for line in layer_statistics(self.net):
                self.logger.error("    %s", line)
        last = (f"the last good snapshot is {self.last_snapshot[1]}" if self.last_snapshot
                else "no snapshot was written")
        iteration = self.iter if iteration is None else iteration
        return (f"training diverged at iteration {iteration}: {what}; first non-finite value: "
                f"{where}; {last}; lower base_lr (now {fmt(self.param.base_lr)}) or set "
                "clip_gradients, or pass --allow_nonfinite to continue anyway")

    # --- testing -----------------------------------------------------------------------------
    def test_all(self) -> None:
        if self.comm.size > 1:
            # Rank 0 tests for the job; the decisions a test pass can make (early stop, a
            # plateau cut) are then sent to every rank.
            if self.comm.rank == 0:
                self._test_all_nets()
            decisions = self.comm.broadcast_object(
                (self.requested_early_exit, self.lr_state.current_step, self.plateau_cooldown,
                 self.early_watch, self.plateau_watch))
            (self.requested_early_exit, self.lr_state.current_step, self.plateau_cooldown,
             self.early_watch, self.plateau_watch) = decisions
            return
        self._test_all_nets()

    def _test_all_nets(self) -> None:
        for test_id in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            means = self.test(test_id)
            if means is None:
                continue
            self._record({"kind": "test", "iter": self.iter, "test_net": test_id,
                          "outputs": means, "wall_time": self._wall_time()})
            if test_id == 0:
                self._watch(means)

    def _watch(self, means: dict) -> None:
        """After test net #0's pass: keep_best, early stopping and plateau cuts."""
        p = self.param
        if self.early_watch is not None:
            watch = self.early_watch
            value = _scalar(means[watch.name])
            improved = watch.update(value, self.iter)
            if improved and p.keep_best:
                path = f"{p.snapshot_prefix}_best.caffemodel"
                self.logger.info("Best %s so far: %s at iteration %d; writing %s", watch.name,
                                 fmt(value), self.iter, path)
                write_model(path, self.net)
            if p.early_stop_patience and watch.bad_passes >= p.early_stop_patience:
                self.logger.info("Early stopping at iteration %d: %s has not improved for %d "
                                 "test passes (best %s at iteration %d)", self.iter, watch.name,
                                 watch.bad_passes, fmt(watch.best), watch.best_iter)
                self.requested_early_exit = True
        if self.plateau_watch is not None:
            watch = self.plateau_watch
            watch.update(_scalar(means[watch.name]), self.iter)
            if self.plateau_cooldown > 0:
                self.plateau_cooldown -= 1
                watch.bad_passes = 0
            elif watch.bad_passes >= p.plateau_patience:
                before = self.learning_rate()
                self.lr_state.current_step += 1
                watch.bad_passes = 0
                self.plateau_cooldown = p.plateau_cooldown
                self.logger.info("Plateau: %s has not improved for %d test passes (best %s at "
                                 "iteration %d); lr %s -> %s", watch.name, p.plateau_patience,
                                 fmt(watch.best), watch.best_iter, fmt(before),
                                 fmt(self.learning_rate()))

    def _record(self, record: dict) -> None:
        if self._metrics is not None:
            self._metrics.write(record)

    def _wall_time(self) -> float:
        return round(time.time() - self._start_time, 3)

    def test(self, test_id: int) -> dict | None:
        """One test pass of test net ``test_id``; returns the mean of each output."""
        log = self.logger.info
        log("Iteration %d, Testing net (#%d)", self.iter, test_id)
        test_net = self.test_nets[test_id]
        test_net.share_trained_layers_with(self.net)
        scores: list[np.float32] = []
        loss = f32(0)
        n_iter = self.param.test_iter[test_id]
        for i in range(n_iter):
            request = self.action()
            while request != NONE:
                if request == SNAPSHOT:
                    self.snapshot()
                elif request in (STOP, SNAPSHOT_STOP):
                    self._snapshot_on_stop = request == SNAPSHOT_STOP
                    self.requested_early_exit = True
                request = self.action()
            if self.requested_early_exit:
                break
            iter_loss = f32(test_net.forward_loss())
            if self.param.test_compute_loss:
                loss += iter_loss
            values = [v for _, blob, _ in test_net.output_blobs() for v in blob.data.reshape(-1)]
            if i == 0:
                scores = [f32(v) for v in values]
            else:
                scores = [f32(s + v) for s, v in zip(scores, values)]
        if self.requested_early_exit:
            log("Test interrupted.")
            return None
        if self.param.test_compute_loss:
            log("Test loss: %s", fmt(loss / f32(n_iter)))
        index = 0
        means: dict[str, float | list[float]] = {}
        for name, blob, weight in test_net.output_blobs():
            values = []
            for _ in range(blob.count):
                mean = f32(scores[index] / f32(n_iter))
                log("    Test net output #%d: %s = %s%s", index, name, fmt(mean),
                    _loss_note(weight, mean))
                values.append(float(mean))
                index += 1
            means[name] = values[0] if len(values) == 1 else values
        return means

    # --- the update (SGDSolver::ApplyUpdate) -------------------------------------------------
    def learning_rate(self) -> float:
        return f32(self.lr_policy.rate(self.param, self.iter, self.lr_state))

    def apply_update(self) -> np.float32:
        rate = self.learning_rate()
        p = self.param
        if p.display and self.iter % p.display == 0:
            self.logger.info("Iteration %d, lr = %s", self.iter, fmt(rate))
        self.clip_gradients()
        for param_id in range(len(self.net.learnable)):
            self.normalize(param_id)
            self.regularize(param_id)
            self.compute_update_value(param_id, rate)
        self.net.update()
        self.iter += 1
        return rate

    def clip_gradients(self) -> None:
        clip = f32(self.param.clip_gradients)
        if clip < 0:
            return
        sumsq = f32(sum(f32(p.blob.sumsq_diff()) for p in self.net.learnable))
        l2norm = f32(np.sqrt(sumsq))
        if l2norm > clip:
            scale = f32(clip / l2norm)
            self.logger.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by "
                             "scale factor %s", fmt(l2norm), fmt(clip), fmt(scale))
            for p in self.net.learnable:
                p.blob.diff *= scale

    def normalize(self, param_id: int) -> None:
        if self.param.iter_size == 1:
            return
        self.net.learnable[param_id].blob.diff *= f32(1.0) / f32(self.param.iter_size)

    def regularize(self, param_id: int) -> None:
        learnable = self.net.learnable[param_id]
        local_decay = f32(self.param.weight_decay) * f32(learnable.decay_mult)
        if not local_decay:
            return
        blob = learnable.blob
        if self.param.regularization_type == "L2":
            blob.diff += local_decay * blob.data
        else:
            blob.diff += local_decay * np.sign(blob.data)

    @abc.abstractmethod
    def compute_update_value(self, param_id: int, rate: float) -> None:
        """Turn the parameter's diff into the update to subtract (the solver's formula)."""

    def local_rate(self, param_id: int, rate: float) -> np.float32:
        return f32(rate) * f32(self.net.learnable[param_id].lr_mult)

    # --- snapshots -----------------------------------------------------------------------------
    def snapshot(self) -> str:
        """Write ``<prefix>_iter_<N>.caffemodel`` and ``.solverstate`` (``.h5`` for HDF5); the
        model first, since the state names it."""
        p = self.param
        extra = self.resume_state()
        if self.comm.size > 1:
            # Each rank's data cursors and random states, so every rank resumes exactly.
            extra["rank_states"] = self.comm.allgather_object(self.net.get_state())
            if self.comm.rank != 0:
                self._last_snapshot_iter = self.iter
                return ""
        hdf5 = p.snapshot_format == caffe_pb2.SolverParameter.HDF5
        suffix = ".h5" if hdf5 else ""
        kind = "HDF5 file" if hdf5 else "binary proto file"
        model_file = snapshot_filename(p.snapshot_prefix, self.iter, ".caffemodel" + suffix)
        self.logger.info("Snapshotting to %s %s", kind, model_file)
        write_model(model_file, self.net, write_diff=p.snapshot_diff, hdf5=hdf5)
        state_file = snapshot_filename(p.snapshot_prefix, self.iter, ".solverstate" + suffix)
        self.logger.info("Snapshotting solver state to %s %s", kind, state_file)
        state = SolverStateData(self.iter, model_file, self.lr_state.current_step,
                                [blob.data for blob in self.history], extra)
        write_solver_state(state_file, state, hdf5=hdf5)
        self.last_snapshot = (model_file, state_file)
        self._last_snapshot_iter = self.iter
        return model_file

    def resume_state(self) -> dict:
        """What exact resume needs beyond Caffe's SolverState fields (stored as JSON)."""
        return {
            "format": 1,
            "solver_type": self.type_name,
            "net": self.net.fingerprint(),
            "solver_param": debug_string(self.param),
            "train_net": self.net.get_state(),
            "test_nets": [net.get_state() for net in self.test_nets],
            "smoothed_loss": {
                "losses": [float(x) for x in self.losses],
                "value": float(self.smoothed_loss),
                "start_iter": self._loss_start_iter,
            },
            "early_watch": self.early_watch.state() if self.early_watch else None,
            "plateau_watch": self.plateau_watch.state() if self.plateau_watch else None,
            "plateau_cooldown": self.plateau_cooldown,
        }

    def restore(self, path: str, force: bool = False) -> None:
        if self.comm.size == 1:
            self._restore(path, force)
            return
        # Rank 0 reads the files (they need not be on every machine) and sends the state.
        error = None
        if self.comm.rank == 0:
            try:
                self._restore(path, force)
            except PyforgeError as exc:
                error = exc
        error = self.comm.broadcast_object(error)
        if error is not None:
            raise error
        self.comm.broadcast_(self.net.param_data)
        for blob in self.history:
            self.comm.broadcast_(blob.data.reshape(-1))
        shared = self.comm.broadcast_object(
            (self.iter, self.lr_state.current_step, self._resume_window, self.early_watch,
             self.plateau_watch, self.plateau_cooldown, self._restored_rank_states))
        (self.iter, self.lr_state.current_step, self._resume_window, self.early_watch,
         self.plateau_watch, self.plateau_cooldown, rank_states) = shared
        self._resumed = True
        if rank_states and self.comm.rank < len(rank_states):
            self.net.set_state(rank_states[self.comm.rank])

    def _restore(self, path: str, force: bool = False) -> None:
        """Resume from a .solverstate[.h5] (Caffe's Restore).

        A state written by Caffe restores what Caffe restores (the data cursors restart, as in
        Caffe). A state written by pyforge also restores the data cursors, random generators and
        the smoothed-loss window, so the run continues exactly; it is refused when it was
        written by another solver type or for another net, unless ``force``."""
        path = _solverstate_for(path, self.logger)
        state = read_solver_state(path)
        if state.extra is not None:
            with _malformed_state(path):
                self._check_compatible(path, state.extra, force)
        elif len(state.history) != len(self.history):
            raise WeightsError(
                f"{path}: holds {len(state.history)} history blobs but a {self.type_name} solver "
                f"on this net needs {len(self.history)} ({len(self.net.learnable)} learnable "
                f"parameter blobs x {self.history_sets}); it was written by another solver type "
                "(AdaDelta and Adam keep two blobs per parameter) or for another net")
        for i, (blob, array) in enumerate(zip(self.history, state.history)):
            if array.shape != blob.shape:
                raise WeightsError(f"{path}: history blob {i} has shape {array.shape}, the net's "
                                   f"parameter {i} has {blob.shape}")
        if len(state.history) != len(self.history):
            raise WeightsError(f"{path}: holds {len(state.history)} history blobs, this solver "
                               f"needs {len(self.history)}")
        self.iter = state.iteration
        if state.learned_net:
            model = _learned_net_path(state.learned_net, path, self.logger)
            load_weights(self.net, model)
        self.lr_state.current_step = state.current_step
        self.logger.info("SGDSolver: restoring history")
        for blob, array in zip(self.history, state.history):
            blob.data[...] = array
        self._restored_rank_states = None
        if state.extra is not None:
            with _malformed_state(path):
                self._restore_extra(state.extra)
        self._resumed = True

    def _restore_extra(self, extra: dict) -> None:
        """Data cursors, random states, the smoothed-loss window and the watches."""
        self._restored_rank_states = extra.get("rank_states")
        self.net.set_state(extra.get("train_net", {}))
        for net, net_state in zip(self.test_nets, extra.get("test_nets", [])):
            net.set_state(net_state)
        window = extra.get("smoothed_loss")
        if window:
            self._resume_window = {"losses": [float(x) for x in window["losses"]],
                                   "value": float(window["value"]),
                                   "start_iter": int(window["start_iter"])}
        for watch, key in ((self.early_watch, "early_watch"),
                           (self.plateau_watch, "plateau_watch")):
            if watch is not None and extra.get(key):
                watch.load(extra[key])
        self.plateau_cooldown = int(extra.get("plateau_cooldown", 0))

    def _check_compatible(self, path: str, extra: dict, force: bool) -> None:
        problems = []
        saved_type = extra.get("solver_type")
        if saved_type and saved_type != self.type_name:
            problems.append(f"it was written by a {saved_type} solver, this solver is "
                            f"{self.type_name}")
        saved_net = extra.get("net")
        if saved_net is not None:
            difference = _net_difference(saved_net, self.net.fingerprint())
            if difference:
                problems.append(f"it was written for another net ({difference})")
        if problems:
            message = f"{path}: " + "; ".join(problems)
            if not force:
                raise WeightsError(message + "; resuming would misread its history. Use a "
                                   "matching solver and net, or --force to resume anyway")
            self.logger.warning("%s; resuming anyway (--force)", message)
        saved_param = extra.get("solver_param")
        if saved_param:
            for line in _settings_changed(saved_param, self.param):
                self.logger.warning("Solver setting changed since the snapshot: %s", line)

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        self.net.close()
        for net in self.test_nets:
            net.close()


#: Control flags sent after the gradients in the data-parallel collective.
_FLAGS = ("stop", "snapshot", "nonfinite")


def _outputs(net: Net) -> dict:
    out: dict[str, float | list[float]] = {}
    for name, blob, _ in net.output_blobs():
        values = [float(v) for v in blob.data.reshape(-1)]
        out[name] = values[0] if len(values) == 1 else values
    return out


def _scalar(value) -> float:
    return float(value[0] if isinstance(value, list) else value)


def _data_layers(net: Net):
    return [layer for layer in net.layers if hasattr(layer, "batch_size")]


def _batch_size(net: Net) -> int:
    layers = _data_layers(net)
    return int(layers[0].batch_size) if layers else 0


def _dataset_size(net: Net) -> int:
    for layer in _data_layers(net):
        size = getattr(layer, "dataset_size", None)
        if size is None and hasattr(layer, "reader"):
            size = len(layer.reader)
        if size:
            return int(size)
    return 0


class DivergenceError(PyforgeError):
    """Training produced a non-finite loss, gradient or parameter."""

    exit_code = EXIT_DIVERGED


def first_nonfinite(net: Net) -> str:
    """The first place, in computation order, where this pass's values stop being finite:
    parameters and tops in forward layer order, then parameter and bottom diffs in backward
    order."""
    for layer_id, name in enumerate(net.layer_names):
        # A layer's parameters come before its outputs: a non-finite weight is the cause.
        for i, blob in enumerate(net.layers[layer_id].blobs):
            if not np.isfinite(blob.data).all():
                return f"layer '{name}' parameter blob {i} data"
        for blob_id in net.top_ids[layer_id]:
            blob = net.blob_list[blob_id]
            if blob.count and not np.isfinite(blob.data).all():
                return f"layer '{name}' top blob '{net.blob_names[blob_id]}' data (forward)"
    for layer_id in range(len(net.layers) - 1, -1, -1):
        name = net.layer_names[layer_id]
        for i, blob in enumerate(net.layers[layer_id].blobs):
            if net.layers[layer_id].param_propagate_down[i] and not np.isfinite(blob.diff).all():
                return f"layer '{name}' parameter blob {i} diff (backward)"
        for j, blob_id in enumerate(net.bottom_ids[layer_id]):
            blob = net.blob_list[blob_id]
            if net.bottom_need_backward[layer_id][j] and not np.isfinite(blob.diff).all():
                return f"layer '{name}' bottom blob '{net.blob_names[blob_id]}' diff (backward)"
    return "no single blob (the sum overflowed)"


def layer_statistics(net: Net) -> list[str]:
    """Per-layer mean |data| and |diff| of every top and parameter, for divergence reports."""
    lines = []
    for layer_id, name in enumerate(net.layer_names):
        for blob_id in net.top_ids[layer_id]:
            blob = net.blob_list[blob_id]
            if blob.count:
                lines.append(f"[{name}] top {net.blob_names[blob_id]}: mean|data| "
                             f"{fmt(mean_abs(blob.data))}, mean|diff| {fmt(mean_abs(blob.diff))}")
        for i, blob in enumerate(net.layers[layer_id].blobs):
            lines.append(f"[{name}] param {i}: mean|data| {fmt(mean_abs(blob.data))}, "
                         f"mean|diff| {fmt(mean_abs(blob.diff))}")
    return lines


def _loss_note(weight: float, value) -> str:
    if not weight:
        return ""
    return f" (* {fmt(f32(weight))} = {fmt(f32(weight) * f32(value))} loss)"


def _solverstate_for(path: str, logger: logging.Logger) -> str:
    """Accept a .caffemodel[.h5] where the .solverstate belongs, when its partner exists."""
    for model_ext, state_ext in ((".caffemodel", ".solverstate"),
                                 (".caffemodel.h5", ".solverstate.h5")):
        if path.endswith(model_ext):
            partner = path[: -len(model_ext)] + state_ext
            if os.path.exists(partner):
                logger.info("%s holds weights only; resuming from its partner %s", path, partner)
                return partner
            raise WeightsError(f"{path}: this is a weights-only {model_ext} and no {partner} "
                               "is beside it; use --weights to fine-tune from it (weights only, "
                               "iteration 0), or pass a .solverstate to --snapshot to resume "
                               "(weights, iteration and solver history)")
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such solver state file")
    return path


@contextlib.contextmanager
def _malformed_state(path: str):
    """pyforge's resume JSON of an unexpected shape is a clear error, not a crash."""
    try:
        yield
    except PyforgeError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
        raise WeightsError(f"{path}: pyforge_state is malformed ({type(exc).__name__}: "
                           f"{exc}); resume from a snapshot pyforge wrote, or remove the "
                           "field to resume as Caffe does") from None


def _learned_net_path(learned_net: str, state_path: str, logger: logging.Logger) -> str:
    """The weights file a state names. Caffe stores the path as written at snapshot time
    (relative to that run's working directory); when it is not found from here, the file of
    that name beside the state is used."""
    if os.path.exists(learned_net):
        return learned_net
    beside = os.path.join(os.path.dirname(state_path), os.path.basename(learned_net))
    if os.path.exists(beside):
        logger.info("learned_net '%s' not found from the current directory; using '%s' beside "
                    "the solver state", learned_net, beside)
        return beside
    raise WeightsError(f"{state_path}: names weights '{learned_net}', which does not exist (nor "
                       f"'{beside}')")


def _net_difference(saved: list, current: list) -> str:
    saved_map = {name: (kind, shapes) for name, kind, shapes in saved}
    current_map = {name: (kind, shapes) for name, kind, shapes in current}
    notes = []
    for name, (kind, shapes) in saved_map.items():
        if name not in current_map:
            notes.append(f"layer '{name}' only in the snapshot")
        elif current_map[name] != (kind, shapes):
            notes.append(f"layer '{name}': {kind} {_shapes(shapes)} in the snapshot, "
                         f"{current_map[name][0]} {_shapes(current_map[name][1])} here")
    for name in current_map:
        if name not in saved_map:
            notes.append(f"layer '{name}' only in this net")
    return "; ".join(notes[:4]) + ("; ..." if len(notes) > 4 else "")


def _shapes(shapes: list) -> str:
    return ", ".join(str(tuple(s)) for s in shapes)


#: Settings whose change at resume is worth a warning (user_needs: "the old lr kept coming back").
_WATCHED_SETTINGS = ("type", "base_lr", "lr_policy", "gamma", "power", "stepsize", "stepvalue",
                     "max_iter", "momentum", "momentum2", "weight_decay", "regularization_type",
                     "iter_size", "clip_gradients", "delta", "rms_decay")


def _settings_changed(saved_text: str, current: caffe_pb2.SolverParameter) -> list[str]:
    from ..proto import parse_text_proto

    if not isinstance(saved_text, str):
        raise TypeError("solver_param should be text")
    try:
        saved = parse_text_proto(saved_text, caffe_pb2.SolverParameter(), "snapshot")
    except PyforgeError:
        return []
    changes = []
    for name in _WATCHED_SETTINGS:
        before, after = getattr(saved, name), getattr(current, name)
        if hasattr(before, "__len__") and not isinstance(before, str):
            before, after = list(before), list(after)
        if before != after:
            changes.append(f"{name}: {_show(before)} -> {_show(after)}")
    return changes


def _show(value) -> str:
    if isinstance(value, float):
        return fmt(value)
    return repr(value) if isinstance(value, str) else str(value)
