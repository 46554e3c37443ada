"""Test passes (Caffe's Solver::Test) and what watches them: early stopping, keep_best and the
plateau lr policy, pyforge's additions, each watching one output of test net #0."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from ..errors import SolverError
from ..io.snapshot import write_model
from ..log import fmt
from ..net.net import Net
from ..proto import caffe_pb2
from .lr_policy import LrState
from .monitor import MetricWatch, loss_note, make_watch

f32 = np.float32


def run_test_pass(net: Net, iterations: int, compute_loss: bool, logger: logging.Logger,
                  stop_requested: Callable[[], bool]) -> tuple[dict, float] | None:
    """``iterations`` forward passes of the test ``net``; logs and returns the mean of each
    output (a list for outputs of several elements) and the time stamped on the first output
    line (the metrics file's Seconds), or None when ``stop_requested()`` (asked before each
    pass) ends it early.

    As in Caffe, the scores are summed in float32 output by output, element by element, and
    divided by the number of passes at the end."""
    scores: list[np.float32] = []
    loss = f32(0)
    for i in range(iterations):
        if stop_requested():
            logger.info("Test interrupted.")
            return None
        iter_loss = f32(net.forward_loss())
        if compute_loss:
            loss += iter_loss
        values = [v for _, blob, _ in net.output_blobs() for v in blob.data.reshape(-1)]
        if i == 0:
            scores = [f32(v) for v in values]
        else:
            scores = [f32(s + v) for s, v in zip(scores, values)]
    if compute_loss:
        logger.info("Test loss: %s", fmt(loss / f32(iterations)))
    index = 0
    means: dict[str, float | list[float]] = {}
    first_line = time.time()
    for name, blob, weight in net.output_blobs():
        values = []
        for _ in range(blob.count):
            mean = f32(scores[index] / f32(iterations))
            logger.info("    Test net output #%d: %s = %s%s", index, name, fmt(mean),
                        loss_note(weight, mean),
                        extra={"glog_time": first_line} if index == 0 else None)
            values.append(float(mean))
            index += 1
        means[name] = values[0] if len(values) == 1 else values
    return means, first_line


class OutputWatchers:
    """Early stopping / keep_best and the plateau lr policy of one solver, watching test net
    #0's outputs."""

    def __init__(self, param: caffe_pb2.SolverParameter, outputs: list[str],
                 logger: logging.Logger) -> None:
        """``outputs``: the output names of test net #0 (empty without test nets)."""
        self.param = param
        self.logger = logger
        self.early: MetricWatch | None = None
        self.plateau: MetricWatch | None = None
        #: Test passes left before the plateau policy watches again after a cut.
        self.plateau_cooldown = 0
        p = param
        if p.early_stop_patience < 0:
            raise SolverError(f"early_stop_patience must be >= 0, found {p.early_stop_patience}")
        if p.early_stop_patience > 0 or p.keep_best:
            what = "early stopping" if p.early_stop_patience > 0 else "keep_best"
            self.early = make_watch(p.early_stop_metric, p.early_stop_mode, outputs, what)
        if p.lr_policy == "plateau":
            self.plateau = make_watch(p.plateau_metric or p.early_stop_metric,
                                      p.plateau_mode or p.early_stop_mode, outputs,
                                      "lr_policy 'plateau'")

    def after_pass(self, means: dict, iteration: int, train_net: Net, lr_state: LrState,
                   learning_rate: Callable[[], float]) -> bool:
        """After test net #0's pass: write ``<prefix>_best.caffemodel`` on a new best
        (keep_best), cut the lr on a plateau (``lr_state.current_step += 1``); True when
        early stopping ends the run."""
        p = self.param
        stop = False
        if self.early is not None:
            watch = self.early
            value = _scalar(means[watch.name])
            improved = watch.update(value, iteration)
            if improved and p.keep_best:
                path = f"{p.snapshot_prefix}_best.caffemodel"
                self.logger.info("Best %s so far: %s at iteration %d; writing %s", watch.name,
                                 fmt(value), iteration, path)
                write_model(path, train_net)
            if p.early_stop_patience and watch.bad_passes >= p.early_stop_patience:
                self.logger.info("Early stopping at iteration %d: %s has not improved for %d "
                                 "test passes (best %s at iteration %d)", iteration, watch.name,
                                 watch.bad_passes, fmt(watch.best), watch.best_iter)
                stop = True
        if self.plateau is not None:
            watch = self.plateau
            watch.update(_scalar(means[watch.name]), iteration)
            if self.plateau_cooldown > 0:
                self.plateau_cooldown -= 1
                watch.bad_passes = 0
            elif watch.bad_passes >= p.plateau_patience:
                before = learning_rate()
                lr_state.current_step += 1
                watch.bad_passes = 0
                self.plateau_cooldown = p.plateau_cooldown
                self.logger.info("Plateau: %s has not improved for %d test passes (best %s at "
                                 "iteration %d); lr %s -> %s", watch.name, p.plateau_patience,
                                 fmt(watch.best), watch.best_iter, fmt(before),
                                 fmt(learning_rate()))
        return stop

    def state(self) -> dict:
        """What a snapshot keeps of the watches (keys of the solver state's resume record)."""
        return {
            "early_watch": self.early.state() if self.early else None,
            "plateau_watch": self.plateau.state() if self.plateau else None,
            "plateau_cooldown": self.plateau_cooldown,
        }

    def load(self, state: dict) -> None:
        """Take back :meth:`state` (from a snapshot, or from the leader under data
        parallelism)."""
        for watch, key in ((self.early, "early_watch"), (self.plateau, "plateau_watch")):
            if watch is not None and state.get(key):
                watch.load(state[key])
        self.plateau_cooldown = int(state.get("plateau_cooldown", 0))


def _scalar(value) -> float:
    return float(value[0] if isinstance(value, list) else value)
