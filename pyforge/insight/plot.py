"""Training curves of one or more runs: loss, test metrics and learning rate by iteration.

Each run is a glog log (Caffe's or pyforge's) or a metrics JSONL file, read by
:func:`pyforge.insight.parse_log.load_log`. The figure has up to three panels sharing the
iteration axis:

1. **Loss**: the training loss as displayed (smoothed over ``average_loss`` iterations, solid
   line) and each test output that carries a loss weight (dashed, with markers).
2. **Metrics**: the other outputs (test accuracy and the like, dashed; train outputs, solid).
3. **Learning rate**: the logged rate, drawn as steps because each value holds until the
   next one is logged; on a log scale when it spans more than a decade.

Each run has one colour; the legend names runs by file name (with as many parent folders as
needed to tell them apart). A run whose loss becomes NaN or infinite gets a dotted vertical
line at the first such iteration, since matplotlib would silently leave a gap there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from ._mpl import new_figure, save_png
from .parse_log import TrainingLog, load_log

TEST_MARKERS = ("o", "s", "^", "D", "v", "P")


def run_labels(paths: Sequence[str | os.PathLike]) -> list[str]:
    """File names, with as many parent folders as it takes to tell the runs apart."""
    parts = [Path(p).parts or (str(p),) for p in paths]
    longest = max((len(p) for p in parts), default=1)
    labels = [p[-1] for p in parts]
    for depth in range(1, longest + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            break
    counts: dict[str, int] = {}
    unique = []
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
        unique.append(label if counts[label] == 1 else f"{label} ({counts[label]})")
    return unique


def _finite(values: Sequence[float]) -> list[float]:
    return [v if math.isfinite(v) else math.nan for v in values]


def _series(rows, column: str) -> tuple[list[int], list[float]]:
    picked = [(r.iter, r.values[column]) for r in rows if column in r.values]
    return [i for i, _ in picked], [v for _, v in picked]


def _columns(rows) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for name in row.values:
            seen.setdefault(name, None)
    return list(seen)


def plot_logs(logs: Sequence[TrainingLog], labels: Sequence[str] | None = None,
              output: str | os.PathLike | None = None, title: str | None = None,
              log_loss: bool = False):
    """Draw the runs; returns the matplotlib Figure (and writes a PNG when ``output`` is
    given)."""
    labels = list(labels) if labels is not None else run_labels([g.source for g in logs])
    has_metrics = any(
        [c for c in _columns(g.test) if c not in g.test_losses]
        or [c for c in _columns(g.train) if c not in g.train_losses] for g in logs)
    has_lr = any(g.lr for g in logs)
    panels = ["loss"] + (["metrics"] if has_metrics else []) + (["lr"] if has_lr else [])
    figure = new_figure("pyforge plot", figsize=(9, 1.2 + 3.0 * len(panels)),
                        layout="constrained")
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    ax_of = dict(zip(panels, axes))
    metric_names: set[str] = set()
    for i, (log, label) in enumerate(zip(logs, labels)):
        color = f"C{i % 10}"
        # Earlier runs are drawn wider, so that runs which agree (Caffe's and pyforge's log
        # of the same run) still show both lines instead of hiding one under the other.
        width = 1.2 + 1.6 * (len(logs) - 1 - i) / max(len(logs) - 1, 1)
        _draw_loss(ax_of["loss"], log, label, color, width)
        if "metrics" in ax_of:
            metric_names |= _draw_metrics(ax_of["metrics"], log, label, color, width)
        if "lr" in ax_of and log.lr:
            iters = [it for it, _ in log.lr]
            ax_of["lr"].plot(iters, _finite([r for _, r in log.lr]), color=color, lw=width,
                             drawstyle="steps-post", label=f"{label}: lr")
    loss_ax = ax_of["loss"]
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("Loss (train: smoothed as displayed; test: mean over test_iter batches)",
                      fontsize="medium")
    if log_loss and _all_positive(loss_ax):
        loss_ax.set_yscale("log")
        loss_ax.set_ylabel("loss (log scale)")
    if "metrics" in ax_of:
        names = sorted(metric_names)
        ax_of["metrics"].set_ylabel(", ".join(names) if len(names) <= 2 else "value")
        ax_of["metrics"].set_title("Other outputs (test: mean over test_iter batches)",
                                   fontsize="medium")
    if "lr" in ax_of:
        lr_ax = ax_of["lr"]
        lr_ax.set_ylabel("learning rate")
        lr_ax.set_title("Learning rate (as logged)", fontsize="medium")
        rates = [v for g in logs for _, v in g.lr if math.isfinite(v)]
        if rates and min(rates) > 0 and max(rates) / min(rates) > 10:
            lr_ax.set_yscale("log")
            lr_ax.set_ylabel("learning rate (log scale)")
        elif rates and min(rates) >= 0 and max(rates) > 0:
            # From 0, so that a 1% decay does not look like a collapse.
            lr_ax.set_ylim(0, max(rates) * 1.08)
    axes[-1].set_xlabel("iteration")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize="small", loc="best", framealpha=0.8)
    figure.suptitle(title or "Training curves: " + ", ".join(labels))
    if output is not None:
        save_png(figure, output)
    return figure


def _all_positive(ax) -> bool:
    values = [v for line in ax.get_lines() for v in line.get_ydata() if math.isfinite(v)]
    return bool(values) and min(values) > 0


def _draw_loss(ax, log: TrainingLog, label: str, color: str, width: float) -> None:
    if log.loss:
        iters = [it for it, _ in log.loss]
        values = [v for _, v in log.loss]
        ax.plot(iters, _finite(values), color=color, lw=width,
                label=f"{label}: train loss (smoothed)")
        bad = next((it for it, v in log.loss if not math.isfinite(v)), None)
        if bad is not None:
            ax.axvline(bad, color=color, ls=":", lw=width,
                       label=f"{label}: loss not finite from iteration {bad}")
    test_losses = [c for c in _columns(log.test) if c in log.test_losses]
    for k, name in enumerate(test_losses):
        iters, values = _series(log.test, name)
        ax.plot(iters, _finite(values), color=color, ls="--", lw=width * 0.8,
                marker=TEST_MARKERS[k % len(TEST_MARKERS)], ms=2 + 1.5 * width,
                label=f"{label}: test {name}")


def _draw_metrics(ax, log: TrainingLog, label: str, color: str, width: float) -> set[str]:
    test_metrics = [c for c in _columns(log.test) if c not in log.test_losses]
    for k, name in enumerate(test_metrics):
        iters, values = _series(log.test, name)
        ax.plot(iters, _finite(values), color=color, ls="--", lw=width * 0.8,
                marker=TEST_MARKERS[k % len(TEST_MARKERS)], ms=2 + 1.5 * width,
                label=f"{label}: test {name}")
    for name in [c for c in _columns(log.train) if c not in log.train_losses]:
        iters, values = _series(log.train, name)
        ax.plot(iters, _finite(values), color=color, lw=width * 0.7, alpha=0.7,
                label=f"{label}: train {name}")
    return set(test_metrics) | {c for c in _columns(log.train) if c not in log.train_losses}


def plot_files(paths: Sequence[str | os.PathLike], output: str | os.PathLike | None = None,
               title: str | None = None, log_loss: bool = False):
    """Read each log or JSONL file and draw them together; returns the Figure."""
    logs = [load_log(p) for p in paths]
    return plot_logs(logs, run_labels(paths), output=output, title=title, log_loss=log_loss)
