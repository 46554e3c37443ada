"""The training loop shared by every solver type (Caffe's Solver: Solve, Step, TestAll).

The solver gets its nets built (:mod:`.factory` reads the prototxts); the update rule is
:class:`.sgd.SGDSolver`'s template with one hook per solver type. The loop hands the other jobs
to their own modules: test passes and their watchers (:mod:`.testing`), the divergence checks
(:mod:`.divergence`), snapshots and resuming (:mod:`.state`), and the processes it runs in
(a :class:`~pyforge.parallel.strategy.TrainingStrategy`).
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from ..blob import Blob
from ..errors import SolverError
from ..log import fmt, get_logger, glog_microseconds
from ..net.net import Net
from ..parallel.strategy import SingleProcessTraining, TrainingStrategy
from ..proto import caffe_pb2
from ..proto.io import debug_string
from ..proto.numbers import nonfinite_message
from ..signals import NONE, SNAPSHOT, SNAPSHOT_STOP, STOP
from .compile_watch import CompileWatch
from .data_layers import batch_size
from .divergence import DivergenceCheck
from .lr_policy import LrState, get_policy
from .monitor import MetricsFile, loss_note, metrics_path, net_outputs
from .state import restore_solver, write_snapshot
from .testing import OutputWatchers, run_test_pass

f32 = np.float32

#: Polled for the request of a signal: ``signals.NONE``, ``STOP``, ``SNAPSHOT`` ...
Action = Callable[[], str]

#: Settings that cannot be negative, with what a value means (Caffe accepts and misuses them:
#: a negative display or snapshot period acts as 1, a negative base_lr climbs the loss).
_NOT_NEGATIVE = {
    "base_lr": " (a negative rate climbs the loss)",
    "max_iter": " (iterations)",
    "display": " (0: no display lines)",
    "snapshot": " (0: no periodic snapshots)",
    "test_interval": " (iterations)",
    "stepsize": " (iterations)",
    "momentum": "",
    "weight_decay": " (a negative decay grows the weights)",
    "early_stop_patience": " (test passes; 0: never stop early)",
    "plateau_patience": " (test passes)",
    "plateau_cooldown": " (test passes)",
}


class Solver(abc.ABC):
    """Trains a built train net, testing the test nets on the way (Caffe's Solver).

    Subclasses implement :meth:`apply_update` (:class:`.sgd.SGDSolver`'s template, whose
    solver types override only ``compute_update_value``) and may add checks in
    :meth:`check_params`. :func:`.factory.create_solver` builds the nets and the solver from a
    SolverParameter.
    """

    type_name = ""
    #: Number of history blobs per learnable parameter (AdaDelta and Adam keep two).
    history_sets = 1
    #: Whether the update divides by a root of the history plus ``delta`` (adaptive types).
    uses_delta = False

    def __init__(self, param: caffe_pb2.SolverParameter, net: Net, test_nets: Sequence[Net] = (),
                 *, logger: logging.Logger | None = None, action: Action | None = None,
                 parallel: TrainingStrategy | None = None) -> None:
        self.logger = logger or get_logger()
        #: The processes training runs in: one, or data-parallel ranks under mpiexec.
        self.parallel = parallel or SingleProcessTraining()
        self.param = param
        self.action = action or (lambda: NONE)
        self.check_params(param)
        self.lr_policy = get_policy(param)
        self.net = net
        self.test_nets = list(test_nets)
        self.watchers = OutputWatchers(param, self.test_nets[0].outputs if self.test_nets
                                       else [], self.logger)
        self.parallel.join(net, lambda: [net.fingerprint(), debug_string(param), self.type_name],
                           batch_size(net), param.iter_size, self.logger)
        self.logger.info("Solver scaffolding done.")
        self.divergence = DivergenceCheck(net, param, self.logger)
        self.iter = 0
        self.lr_state = LrState(logger=self.logger)
        self.losses: list[np.float32] = []
        self.smoothed_loss = f32(0)
        #: The iteration the smoothing window of the losses started at.
        self.loss_start_iter = 0
        #: The smoothing window a resumed run continues (set by restore, taken by step).
        self.resume_window: dict | None = None
        #: Every rank's data state, from the snapshot resumed (data parallelism).
        self.restored_rank_states: list | None = None
        self.resumed = False
        self.requested_early_exit = False
        self.iterations_last = 0
        self.history: list[Blob] = []
        self.last_snapshot: tuple[str, str] | None = None
        self.last_snapshot_iter = -1
        self._snapshot_on_stop = False
        #: Stop at the first non-finite loss, gradient or parameter (--allow_nonfinite clears).
        self.stop_on_nonfinite = True
        #: Add an ETA to the display line (the CLI sets it when stderr is a terminal).
        self.show_eta = False
        #: Where the JSONL metrics go (None: the solver's metrics_file or <prefix>.metrics.jsonl).
        self.metrics_override: str | None = None
        self._metrics: MetricsFile | None = None
        self._start_time = time.time()
        #: When the "Solving" line was logged: Caffe's parse_log.py counts Seconds from it.
        self._solving_time = self._start_time
        #: Kernel compilation: announced once, and left out of the speed figures.
        self.compile_watch = CompileWatch(self.logger)
        #: The clock of the speed figures (seconds).
        self.clock: Callable[[], float] = time.perf_counter
        self._compile_mark = 0.0
        self._pending_record: dict | None = None
        self.pre_solve()

    @classmethod
    def check_params(cls, param: caffe_pb2.SolverParameter) -> None:
        """Caffe's checks of the settings (solver types add theirs); a SolverError if one
        fails. :func:`.factory.build_nets` runs them before building the nets."""
        p = param
        problem = nonfinite_message(p)
        if problem is not None:
            raise SolverError(problem)
        for name in _NOT_NEGATIVE:
            value = getattr(p, name)
            if value < 0:
                raise SolverError(f"{name} must be >= 0{_NOT_NEGATIVE[name]}, found {value:g}")
        if any(v < 0 for v in p.stepvalue):
            raise SolverError(f"stepvalue must be >= 0 (iterations), found {list(p.stepvalue)}")
        if cls.uses_delta and p.delta <= 0:
            raise SolverError(f"{cls.type_name} needs delta > 0 (it keeps the update's "
                              f"denominator away from zero), found delta: {p.delta:g}")
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

    def pre_solve(self) -> None:
        """The update rule's history: ``history_sets`` zero blobs per learnable parameter."""
        shapes = [p.blob.shape for p in self.net.learnable]
        self.history = [Blob(s) for _ in range(self.history_sets) for s in shapes]

    # --- the loop --------------------------------------------------------------------------
    def solve(self, resume_file: str | None = None) -> None:
        log = self.logger.info
        self._solving_time = time.time()
        log("Solving %s", self.net.name, extra={"glog_time": self._solving_time})
        log("Learning Rate Policy: %s", self.param.lr_policy)
        self.requested_early_exit = False
        if resume_file:
            log("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        self._start_time = time.time()
        if self._metrics is None:
            self._metrics = MetricsFile(metrics_path(self.param, self.metrics_override),
                                        append=self.resumed, logger=self.logger)
        self.step(self.param.max_iter - self.iter)
        p = self.param
        after_train = p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0)
        # (A stop requested with a snapshot writes one even with snapshot_after_train: false.)
        if (after_train or self._snapshot_on_stop) and self.last_snapshot_iter != self.iter:
            self.snapshot()
        if self.requested_early_exit:
            log("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            loss = f32(self.net.forward_loss())
            # The window's start is Solve's start iteration, or, after an exact resume, that of
            # the run resumed (restored with the window).
            self.update_smoothed_loss(loss, self.loss_start_iter, p.average_loss)
            log("Iteration %d, loss = %s", self.iter, fmt(self.smoothed_loss))
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log("Optimization Done.")
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def step(self, iters: int) -> None:
        stop_iter = self.iter + iters
        start_iter = self._start_smoothing()
        with self.compile_watch:
            self._steps(stop_iter, start_iter)

    def _steps(self, stop_iter: int, start_iter: int) -> None:
        p = self.param
        timer = self.clock()
        self._compile_mark = self.compile_watch.seconds
        while self.iter < stop_iter:
            self.parallel.heartbeat(self.iter)
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
            diverged_elsewhere = self.parallel.exchange_gradients(self.net, loss, self.action,
                                                                  self.iter)
            if self.stop_on_nonfinite:
                self.divergence.after_backward(loss, self.iter, self.last_snapshot,
                                               diverged_elsewhere)
            self.update_smoothed_loss(loss, start_iter, p.average_loss)
            if display:
                timer = self._display(loss, timer)
            self.on_gradients_ready()
            rate = self.apply_update()
            if self._pending_record is not None:
                self._pending_record["lr"] = float(rate)
                self._record(self._pending_record)
                self._pending_record = None
            if self.stop_on_nonfinite:
                self.divergence.after_update(self.iter, self.last_snapshot)
            request = self.parallel.requested_action(self.action)
            if p.snapshot and self.iter % p.snapshot == 0 and request != SNAPSHOT:
                self.snapshot()
            if request in (STOP, SNAPSHOT_STOP):
                self.logger.info("Stop requested at iteration %d%s", self.iter,
                                 "; snapshotting" if request == SNAPSHOT_STOP else "")
            self._act_on(request)
            if self.requested_early_exit:
                break

    def _start_smoothing(self) -> int:
        """A fresh smoothing window for this step() call, or the one of the run this one
        resumes (so the displayed losses equal the uninterrupted run's); returns the
        iteration the window started at."""
        self.losses = []
        self.smoothed_loss = f32(0)
        start_iter = self.iter
        if self.resume_window is not None:
            window = self.resume_window
            self.resume_window = None
            self.losses = [f32(x) for x in window["losses"]]
            self.smoothed_loss = f32(window["value"])
            start_iter = int(window["start_iter"])
        self.loss_start_iter = start_iter
        return start_iter

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

    def _act_on(self, request: str) -> None:
        """Carry out a signal's request (Caffe's SolverAction): SNAPSHOT writes a snapshot
        now; STOP and SNAPSHOT_STOP end the run, the latter with a snapshot on the way out
        (in :meth:`solve`)."""
        if request == SNAPSHOT:
            self.snapshot()
        elif request in (STOP, SNAPSHOT_STOP):
            self._snapshot_on_stop = request == SNAPSHOT_STOP
            self.requested_early_exit = True

    def _stop_requested(self) -> bool:
        """Between test iterations: act on every pending request; True when the run must
        stop."""
        request = self.action()
        while request != NONE:
            self._act_on(request)
            request = self.action()
        return self.requested_early_exit

    def on_iteration_start(self) -> None:
        """Hook: after an iteration's test pass, before its first forward pass (where Caffe
        calls its solver callbacks' on_start)."""

    def on_gradients_ready(self) -> None:
        """Hook: after the forward/backward passes (and the data-parallel exchange), before
        the update (Caffe's on_gradients_ready)."""

    # --- display and metrics ---------------------------------------------------------------
    def _display(self, loss: np.float32, timer: float) -> float:
        """The display lines of this iteration; returns the new start of the speed timer."""
        p = self.param
        # The lapse since the last display, less the seconds Numba spent compiling kernels.
        compiling = self.compile_watch.seconds - self._compile_mark
        lapse = max(0.0, self.clock() - timer - compiling)
        per_s = (self.iter - self.iterations_last) / (lapse if lapse else 1)
        self.logger.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s%s", self.iter,
                         fmt(per_s), fmt(round(lapse, 3)), p.display, fmt(self.smoothed_loss),
                         self._eta(per_s))
        restart = self.clock()
        self._compile_mark = self.compile_watch.seconds
        self.iterations_last = self.iter
        first_line = self._log_outputs("Train", self.net)
        self._pending_record = {
            "kind": "train", "iter": self.iter, "loss": float(loss),
            "smoothed_loss": float(self.smoothed_loss), "outputs": net_outputs(self.net),
            "wall_time": self._wall_time(), "seconds": self._seconds(first_line),
            "iter_per_s": per_s}
        return restart

    def _eta(self, per_s: float) -> str:
        """", ETA 1:23:45" on a terminal; nothing in logs written to files or pipes, which keep
        Caffe's exact line."""
        if not self.show_eta or per_s <= 0 or self.iter == self.iterations_last:
            return ""
        left = int((self.param.max_iter - self.iter) / per_s)
        return f", ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"

    def _log_outputs(self, kind: str, net: Net) -> float:
        """Log the net's output lines; returns the time stamped on the first."""
        index = 0
        first_line = time.time()
        for name, blob, weight in net.output_blobs():
            for value in blob.data.reshape(-1):
                self.logger.info("    %s net output #%d: %s = %s%s", kind, index, name,
                                 fmt(value), loss_note(weight, value),
                                 extra={"glog_time": first_line} if index == 0 else None)
                index += 1
        return first_line

    def _record(self, record: dict) -> None:
        if self._metrics is not None:
            self._metrics.write(record)

    def _wall_time(self) -> float:
        return round(time.time() - self._start_time, 3)

    def _seconds(self, stamp: float) -> float:
        """Caffe's parse_log.py Seconds for a row whose first output line was stamped
        ``stamp``: from the "Solving" line, in the microseconds the two log lines print."""
        return (glog_microseconds(stamp) - glog_microseconds(self._solving_time)) / 1e6

    # --- testing -----------------------------------------------------------------------------
    def test_all(self) -> None:
        """A test pass of every test net (Caffe's TestAll). Under data parallelism rank 0
        tests for the job, and the decisions a pass can make (early stop, a plateau cut) are
        sent to every rank."""
        stop, lr_step, watches = self.parallel.leader_decides(self._test_all_nets)
        self.requested_early_exit = stop
        self.lr_state.current_step = lr_step
        self.watchers.load(watches)

    def _test_all_nets(self) -> tuple[bool, int, dict]:
        for test_id in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            result = self.test(test_id)
            if result is None:
                continue
            means, first_line = result
            self._record({"kind": "test", "iter": self.iter, "test_net": test_id,
                          "outputs": means, "wall_time": self._wall_time(),
                          "seconds": self._seconds(first_line)})
            if test_id == 0 and self.watchers.after_pass(means, self.iter, self.net,
                                                         self.lr_state, self.learning_rate):
                self.requested_early_exit = True
        return self.requested_early_exit, self.lr_state.current_step, self.watchers.state()

    def test(self, test_id: int) -> tuple[dict, float] | None:
        """One test pass of test net ``test_id`` on the train net's weights: the mean of each
        output and the time stamped on its first output line, or None when a stop was
        requested during the pass."""
        self.logger.info("Iteration %d, Testing net (#%d)", self.iter, test_id)
        test_net = self.test_nets[test_id]
        test_net.share_trained_layers_with(self.net)
        return run_test_pass(test_net, self.param.test_iter[test_id],
                             self.param.test_compute_loss, self.logger, self._stop_requested)

    # --- the update ----------------------------------------------------------------------------
    def learning_rate(self) -> np.float32:
        return f32(self.lr_policy.rate(self.param, self.iter, self.lr_state))

    @abc.abstractmethod
    def apply_update(self) -> np.float32:
        """Update the train net's parameters from their gradients, advance ``iter``, and
        return the learning rate used (Caffe's ApplyUpdate)."""

    # --- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> str:
        """Write ``<prefix>_iter_<N>.caffemodel`` and ``.solverstate`` (:mod:`.state`)."""
        return write_snapshot(self)

    def restore(self, path: str, force: bool = False) -> None:
        """Resume from a .solverstate[.h5] or the .caffemodel beside one (:mod:`.state`)."""
        restore_solver(self, path, force)

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        self.net.close()
        for net in self.test_nets:
            net.close()
