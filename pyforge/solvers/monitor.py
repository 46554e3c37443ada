"""Watching a net's outputs: one test output across test passes (the watch behind early
stopping, keep_best and plateau lr cuts), the output lines of the log, and the JSONL metrics
file."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import PyforgeError, SolverError
from ..log import fmt, get_logger


@dataclass
class MetricWatch:
    """The best value of one test output so far and how many passes it has not improved."""

    name: str
    mode: str  # "max" or "min"
    best: float | None = None
    best_iter: int = -1
    bad_passes: int = 0

    def update(self, value: float, iteration: int) -> bool:
        """Record one test pass; True when ``value`` is a new best."""
        if math.isnan(value):
            self.bad_passes += 1
            return False
        better = self.best is None or (value > self.best if self.mode == "max"
                                       else value < self.best)
        if better:
            self.best, self.best_iter, self.bad_passes = value, iteration, 0
        else:
            self.bad_passes += 1
        return better

    def state(self) -> dict:
        return asdict(self)

    def load(self, state: dict) -> None:
        self.best = state.get("best")
        self.best_iter = int(state.get("best_iter", -1))
        self.bad_passes = int(state.get("bad_passes", 0))


def default_mode(name: str) -> str:
    return "min" if "loss" in name else "max"


def make_watch(name: str, mode: str, outputs: list[str], what: str) -> MetricWatch:
    """A watch on test output ``name`` (or the default one) checked against the outputs."""
    if not outputs:
        raise SolverError(f"{what} needs a test net (test_iter / test_interval) to watch")
    if not name:
        name = "accuracy" if "accuracy" in outputs else next(
            (o for o in outputs if "loss" in o), outputs[0])
    if name not in outputs:
        raise SolverError(f"{what}: test net #0 has no output '{name}' (it has "
                          f"{', '.join(outputs)})")
    mode = mode or default_mode(name)
    if mode not in ("max", "min"):
        raise SolverError(f"{what}: mode must be 'max' or 'min', found '{mode}'")
    return MetricWatch(name=name, mode=mode)


class MetricsFile:
    """``<prefix>.metrics.jsonl``: one JSON object per display and per test pass.

    Records: {"kind": "train", "iter", "lr", "loss", "smoothed_loss", "outputs",
    "wall_time", "iter_per_s"} and {"kind": "test", "iter", "test_net", "outputs",
    "wall_time"}; ``outputs`` maps each output name to its value (a list for outputs with
    several elements). A fresh run truncates the file, a resumed one appends to it.

    The metrics are a by-product of training: a write that fails (a full disk, a file system
    gone) is reported once, naming the file, and training goes on with its snapshots. Each
    record is one ``write`` of one line to a file opened for appending; after a record was cut
    short the next one starts on a new line, so readers lose only the cut line.
    """

    def __init__(self, path: str, append: bool, logger: logging.Logger | None = None) -> None:
        self.path = path
        self.logger = logger or get_logger()
        self._failed = False
        self._cut = False
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC)
        try:
            self._fd: int | None = os.open(path, flags, 0o666)
        except OSError as exc:
            raise PyforgeError(f"{path}: cannot write the metrics file: {exc.strerror}") from None
        except ValueError:  # a NUL byte in the path
            raise PyforgeError(f"{path!r}: cannot write the metrics file: not a valid "
                               "path") from None

    def write(self, record: dict) -> None:
        if self._fd is None:
            return
        line = ("\n" if self._cut else "") + json.dumps(record, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            self._write_failed(exc.strerror or str(exc))
            return
        self._cut = written < len(data)
        if self._cut:
            self._write_failed(f"only {written} of {len(data)} bytes of a record were written")

    def _write_failed(self, reason: str) -> None:
        if not self._failed:
            self._failed = True
            self.logger.warning("%s: cannot write the metrics file: %s; training goes on, "
                                "and records that cannot be written are left out", self.path,
                                reason)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def metrics_path(param, override: str | None) -> str:
    if override:
        return override
    if param.metrics_file:
        return param.metrics_file
    return f"{param.snapshot_prefix}.metrics.jsonl" if param.snapshot_prefix else os.devnull


def net_outputs(net) -> dict[str, float | list[float]]:
    """Each output blob's value, a list for outputs with several elements (metrics records)."""
    out: dict[str, float | list[float]] = {}
    for name, blob, _ in net.output_blobs():
        values = [float(v) for v in blob.data.reshape(-1)]
        out[name] = values[0] if len(values) == 1 else values
    return out


def loss_note(weight: float, value) -> str:
    """Caffe's `` (* 1 = 2.3 loss)`` after an output that counts in the loss."""
    if not weight:
        return ""
    return f" (* {fmt(np.float32(weight))} = {fmt(np.float32(weight) * np.float32(value))} loss)"
