"""Diagnose a net in training: per-layer activation, gradient and update statistics.

``pyforge diagnose`` trains for a few iterations (a solver prototxt: with its solver; a bare net
prototxt: with plain SGD steps, ``w -= lr * lr_mult * grad``), looking at every layer on the way
through, and writes

- ``layers.csv``: for every iteration, layer and top blob, the statistics of the layer's output
  (``kind = activation``, right after its forward) and of the gradient arriving at that output
  (``kind = gradient``, right before its backward): count, mean, std, rms, min, max, fraction
  of exact zeros, saturated fraction (Sigmoid/TanH) and dead-unit fraction (ReLU);
- ``params.csv``: for every iteration and learnable parameter blob, the norms of the weights,
  of their gradient and of the update the solver applied, and update norm / weight norm;
- ``histograms.png``: per layer, the histogram of its outputs and of log10 |gradient| at the
  last iteration;
- ``findings.txt``: what looks wrong, one finding a line, with the thresholds used.

The statistics are taken by driving the layers one by one, as ``Net.forward_loss`` and
``Net.backward_all`` do, so that in-place layers (ReLU on a convolution's output) are seen
before and after they overwrite their blob. Nothing in the net or the solver is patched.

What is flagged (the :class:`Thresholds`):

- **non-finite**: a NaN or inf in the loss, an output, a gradient or an update. The first
  place it appears is named.
- **dead ReLU**: on average over the iterations, more than 90% of a ReLU's outputs are 0 (not
  positive, for a leaky ReLU; this is its ``zero_frac`` in layers.csv), or more than half of
  its units (channels, or neurons after an InnerProduct) never fire for any sample of any
  diagnosed batch.
- **saturated**: on average, more than half of a Sigmoid's outputs are below 0.01 or above
  0.99, or of a TanH's beyond +-0.99, where the local gradient is under 2% of its maximum.
- **vanishing gradient**: a learning weight blob (``lr_mult`` not 0) whose gradient was 0 in
  every iteration, or whose gradient relative to its weights (``|grad| / |w|``, averaged) is
  below 1e-4 times the largest in the net: it learns at a tiny fraction of the others' speed.
- **exploding gradient**: in some iteration the gradient grows more than 1e3-fold on its way
  back (rms of the gradient reaching the first layer that gets one over that reaching the
  layer that feeds the loss), or an update moves a weight blob by more than 10% of its norm.
- **exploding activations**: in some iteration a layer's output rms exceeds 1e3 times the
  input data's. At iteration 0 the initial weights are blamed, later base_lr.
- **diverging loss**: the loss at the last iteration above 10 times the first.

On the healthy nets of the tests (LeNet with Caffe's weights, a small ReLU LeNet, deep TanH and
ReLU stacks with xavier/msra fillers) the updates are about 1e-3 of the weights (50x under
the threshold) and |grad| / |w| varies 3-fold across layers; the closest call is the first
ReLU of the small LeNet, at 71% zeros, because 80% of an MNIST image is black background.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from dataclasses import asdict

import numpy as np

from ..errors import PyforgeError
from ..net.net import Net
from ..proto import caffe_pb2, read_net_param, read_solver_param
from ..rng import make_rng
from .findings import (
    SATURATING,
    BlobStats,
    Finding,
    ParamStats,
    Report,
    Thresholds,
    find_problems,
    findings_text,
    log_findings,
)

__all__ = ["Thresholds", "Report", "Finding", "diagnose", "find_problems", "findings_text",
           "is_net_prototxt", "log_findings", "plot_histograms", "write_report"]

DEFAULT_SEED = 1701  # Caffe's test seed; a bare net is diagnosed reproducibly.


HISTOGRAM_SAMPLE = 200_000  # values kept per blob for the histograms


MAX_HISTOGRAM_ROWS = 40


# --- statistics -------------------------------------------------------------------------------
def _summary(values: np.ndarray) -> dict:
    flat = values.reshape(-1)
    finite_mask = np.isfinite(flat)
    nonfinite = int(flat.size - np.count_nonzero(finite_mask))
    finite = flat[finite_mask] if nonfinite else flat
    if finite.size == 0:
        nan = math.nan
        return dict(count=int(flat.size), mean=nan, std=nan, rms=nan, min=nan, max=nan,
                    zero_frac=nan, nonfinite=nonfinite)
    x = finite.astype(np.float64)
    return dict(count=int(flat.size), mean=float(x.mean()), std=float(x.std()),
                rms=float(np.sqrt(np.mean(x * x))), min=float(x.min()), max=float(x.max()),
                zero_frac=float(np.count_nonzero(x == 0) / flat.size), nonfinite=nonfinite)


def _units_active(values: np.ndarray) -> np.ndarray:
    """Per unit (axis 1: channels or neurons), whether any sample and position is positive."""
    if values.ndim < 2:
        return np.array([bool(np.any(values > 0))])
    n, c = values.shape[0], values.shape[1]
    return (values.reshape(n, c, -1) > 0).any(axis=(0, 2))


def _sample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flat = values.reshape(-1)
    if flat.size > HISTOGRAM_SAMPLE:
        flat = flat[rng.choice(flat.size, HISTOGRAM_SAMPLE, replace=False)]
    return np.array(flat, dtype=np.float32)


class _Probe:
    """Collects the statistics of one net while :func:`_forward` and :func:`_backward` run."""

    def __init__(self, net: Net, report: Report, thresholds: Thresholds) -> None:
        self.net = net
        self.report = report
        self.thresholds = thresholds
        self.iteration = 0
        self.keep_samples = False
        self.rng = np.random.default_rng(0)

    def _watched_tops(self, layer_id: int) -> list[tuple[int, int]]:
        """(top index, blob id) of the outputs worth describing: not Split copies, not losses."""
        layer = self.net.layers[layer_id]
        if layer.type_name == "Split":
            return []
        return [(j, blob_id) for j, blob_id in enumerate(self.net.top_ids[layer_id])
                if not layer.loss_weights[j]]

    def after_forward(self, layer_id: int) -> None:
        net = self.net
        layer = net.layers[layer_id]
        name = net.layer_names[layer_id]
        is_source = not net.bottom_ids[layer_id]
        for j, blob_id in self._watched_tops(layer_id):
            blob_name = net.blob_names[blob_id]
            data = net.blob_list[blob_id].data
            if is_source and j == 0 and (name, blob_name) not in self.report.inputs:
                self.report.inputs.append((name, blob_name))
            saturated = dead = math.nan
            if layer.type_name in SATURATING:
                margin = self.thresholds.saturation_margin
                if layer.type_name == "Sigmoid":
                    flat = (data < margin) | (data > 1 - margin)
                else:
                    flat = np.abs(data) > 1 - margin
                saturated = float(np.count_nonzero(flat) / max(data.size, 1))
            stats = _summary(data)
            if layer.type_name == "ReLU":
                active = _units_active(data)
                dead = float(1 - active.mean()) if active.size else math.nan
                key = (name, blob_name)
                seen = self.report.ever_active.get(key)
                self.report.ever_active[key] = active if seen is None else (seen | active)
                # A leaky ReLU never outputs exact zeros; "not positive" is its dead state.
                stats["zero_frac"] = float(np.count_nonzero(data <= 0) / max(data.size, 1))
            self.report.blobs.append(BlobStats(
                iteration=self.iteration, layer=name, type=layer.type_name, blob=blob_name,
                kind="activation", saturated_frac=saturated, dead_unit_frac=dead, **stats))
            # Labels (later tops of a data layer) make no useful histogram.
            if self.keep_samples and not (is_source and j > 0):
                self.report.samples[(name, blob_name, "activation")] = _sample(data, self.rng)

    def before_backward(self, layer_id: int) -> None:
        net = self.net
        layer = net.layers[layer_id]
        name = net.layer_names[layer_id]
        for _, blob_id in self._watched_tops(layer_id):
            if not net.blob_need_backward[blob_id]:
                continue
            blob_name = net.blob_names[blob_id]
            diff = net.blob_list[blob_id].diff
            self.report.blobs.append(BlobStats(
                iteration=self.iteration, layer=name, type=layer.type_name, blob=blob_name,
                kind="gradient", saturated_frac=math.nan, dead_unit_frac=math.nan,
                **_summary(diff)))
            if self.keep_samples:
                self.report.samples[(name, blob_name, "gradient")] = _sample(diff, self.rng)


def _forward(net: Net, probe: _Probe | None) -> float:
    """``Net.forward_loss``, one layer at a time, with the probe after each layer."""
    loss = 0.0
    for layer_id, layer in enumerate(net.layers):
        bottom, top = net.bottoms(layer_id), net.tops(layer_id)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        for j, weight in enumerate(layer.loss_weights):
            if weight:
                loss += float(np.dot(top[j].data.ravel(), top[j].diff.ravel()))
        if probe is not None:
            probe.after_forward(layer_id)
    return loss


def _backward(net: Net, probe: _Probe | None) -> None:
    """``Net.backward_all``, one layer at a time, with the probe before each layer."""
    for layer_id in range(len(net.layers) - 1, -1, -1):
        if not net.layer_need_backward[layer_id]:
            continue
        if probe is not None:
            probe.before_backward(layer_id)
        net.layers[layer_id].backward(net.tops(layer_id), net.bottom_need_backward[layer_id],
                                      net.bottoms(layer_id))


# --- running --------------------------------------------------------------------------------
def _quiet_logger() -> logging.Logger:
    """A child of pyforge's logger that passes on warnings only: building the nets would
    otherwise print hundreds of construction lines around the report."""
    logger = logging.getLogger("pyforge.diagnose")
    logger.setLevel(logging.WARNING)
    return logger


def is_net_prototxt(path: str) -> bool:
    """A net prototxt has top-level ``layer {`` (or V1 ``layers {``) blocks; a solver has
    none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError as exc:
        raise PyforgeError(f"{path}: cannot read: {exc.strerror}") from None
    return re.search(r"^\s*layers?\s*\{", text, re.MULTILINE) is not None


def _train_only(param: caffe_pb2.SolverParameter) -> None:
    """Drop test nets and snapshots: the diagnosis trains only, and writes only its report."""
    for name in ("test_net", "test_net_param", "test_iter", "test_state"):
        param.ClearField(name)
    param.test_interval = 0
    param.snapshot = 0
    param.snapshot_after_train = False


def _param_stats(net: Net, iteration: int, before: list[np.ndarray],
                 grads: list[np.ndarray]) -> list[ParamStats]:
    out = []
    for p, w0, g in zip(net.learnable, before, grads):
        update = p.blob.data.astype(np.float64) - w0
        w_norm = float(np.linalg.norm(w0))
        g64 = g.astype(np.float64)
        u_norm = float(np.linalg.norm(update))
        nonfinite = int(g.size - np.count_nonzero(np.isfinite(g))
                        + update.size - np.count_nonzero(np.isfinite(update)))
        out.append(ParamStats(
            iteration=iteration, layer=p.layer, param=p.index,
            shape=" ".join(str(d) for d in p.blob.shape), lr_mult=float(p.lr_mult),
            weight_norm=w_norm, grad_norm=float(np.linalg.norm(g64)),
            grad_rms=float(np.sqrt(np.mean(g64 * g64))) if g.size else math.nan,
            update_norm=u_norm, update_ratio=u_norm / w_norm if w_norm > 0 else math.nan,
            nonfinite=nonfinite))
    return out


def _train_iteration(net: Net, solver, probe: _Probe, report: Report, it: int,
                     iterations: int, lr: float) -> None:
    """One training iteration, watched: forward, backward, then the solver's update (or a
    plain SGD step for a bare net)."""
    probe.iteration = it
    probe.keep_samples = it == iterations - 1
    net.clear_param_diffs()
    passes = solver.param.iter_size if solver is not None else 1
    loss = 0.0
    for k in range(passes):
        # Statistics of the first pass only: the others see other batches of the same weights
        # and would only repeat it.
        loss += _forward(net, probe if k == 0 else None)
        _backward(net, probe if k == 0 else None)
    report.losses.append(loss / passes)
    before = [p.blob.data.astype(np.float64) for p in net.learnable]
    grads = [p.blob.diff.copy() for p in net.learnable]
    if solver is not None:
        solver.apply_update()
    else:
        for p in net.learnable:
            if p.lr_mult:
                p.blob.data -= np.float32(lr * p.lr_mult) * p.blob.diff
    report.params.extend(_param_stats(net, it, before, grads))


def diagnose(model: str, weights: str = "", iterations: int = 10, lr: float = 0.01,
             output_dir: str | None = None, thresholds: Thresholds | None = None,
             seed: int = DEFAULT_SEED) -> Report:
    """Train ``model`` (a solver or a net prototxt) for ``iterations`` iterations, collect the
    statistics, find problems and, if ``output_dir`` is given, write the report files there.

    ``lr`` is the step size for a bare net; a solver uses its own lr policy, momentum and
    decay. ``weights`` (a .caffemodel) replaces the fillers' initial values.
    """
    if iterations <= 0:
        raise PyforgeError(f"--iters must be positive, found {iterations}")
    thresholds = thresholds or Thresholds()
    report = Report(model=model, iterations=iterations, thresholds=thresholds)
    logger = _quiet_logger()
    solver = None
    if is_net_prototxt(model):
        net_param = read_net_param(model)
        net_param.state.phase = caffe_pb2.TRAIN
        net = Net(net_param, rng=make_rng(seed), logger=logger, source_file=model)
    else:
        from ..solvers import create_solver

        param = read_solver_param(model)
        _train_only(param)
        if weights:
            param.ClearField("weights")
            param.weights.append(weights)
        solver = create_solver(param, solver_file=model, logger=logger)
        net = solver.net
    probe = _Probe(net, report, thresholds)
    # Overflow and NaN are what the diagnosis looks for and reports itself, layer by layer;
    # NumPy's floating-point warnings would only repeat them without saying where.
    quiet_fp = np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")
    try:
        if weights and solver is None:
            from ..io.snapshot import load_weights

            load_weights(net, weights)
        with quiet_fp:
            for it in range(iterations):
                _train_iteration(net, solver, probe, report, it, iterations, lr)
    finally:
        if solver is not None:
            solver.close()
        else:
            net.close()
    report.findings = find_problems(report)
    if output_dir is not None:
        write_report(report, output_dir)
    return report


# --- writing --------------------------------------------------------------------------------
def _write_csv(path: str, rows: list, columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            values = asdict(row)
            writer.writerow([_csv_cell(values[c]) for c in columns])


def _csv_cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_report(report: Report, output_dir: str) -> list[str]:
    """Write layers.csv, params.csv, findings.txt and histograms.png into ``output_dir``."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        layers_csv = os.path.join(output_dir, "layers.csv")
        _write_csv(layers_csv, report.blobs, list(BlobStats.__dataclass_fields__))
        params_csv = os.path.join(output_dir, "params.csv")
        _write_csv(params_csv, report.params, list(ParamStats.__dataclass_fields__))
        findings_path = os.path.join(output_dir, "findings.txt")
        with open(findings_path, "w", encoding="utf-8") as handle:
            handle.write(findings_text(report))
    except OSError as exc:
        raise PyforgeError(f"{output_dir}: cannot write the report: {exc.strerror}") from None
    png = os.path.join(output_dir, "histograms.png")
    plot_histograms(report, png)
    report.files = [layers_csv, params_csv, findings_path, png]
    return report.files


def plot_histograms(report: Report, output: str | None = None):
    """Per layer: its outputs' histogram and the log10 |gradient| histogram at the last
    iteration; returns the Figure."""
    from ._mpl import new_figure, save_png

    every_key = list(dict.fromkeys((layer, blob) for layer, blob, _ in report.samples))
    # Past a few dozen rows the image is too tall to read; the CSV has every layer.
    keys = every_key[:MAX_HISTOGRAM_ROWS]
    types = {(s.layer, s.blob): s.type for s in report.blobs}
    flagged = {layer for f in report.findings for layer in f.layers}
    rows = max(len(keys), 1)
    row_inches, top_inches, bottom_inches = 2.0, 1.0, 0.5
    height = top_inches + bottom_inches + row_inches * rows
    figure = new_figure("pyforge diagnose", figsize=(10, height))
    # A fixed layout: matplotlib's constrained layout takes seconds on a few dozen axes.
    figure.subplots_adjust(left=0.08, right=0.98, wspace=0.25, hspace=0.85,
                           top=1 - top_inches / height, bottom=bottom_inches / height)
    axes = figure.subplots(rows, 2, squeeze=False)
    # One log10 |gradient| scale for all layers, so that a gradient shrinking layer by layer
    # shows as a shift to the left.
    for ax in axes[1:, 1]:
        ax.sharex(axes[0, 1])
    for row, (layer, blob) in enumerate(keys):
        ax_a, ax_g = axes[row]
        title = f"{layer} ({types.get((layer, blob), '?')}) -> {blob}"
        if layer in flagged:
            title += "   [flagged]"
        _histogram(ax_a, report.samples.get((layer, blob, "activation")), "output value",
                   f"{title}: outputs", log_magnitude=False)
        _histogram(ax_g, report.samples.get((layer, blob, "gradient")), "log10 |gradient|",
                   f"{title}: gradient", log_magnitude=True)
    shown = ("" if len(keys) == len(every_key)
             else f"; the first {len(keys)} of {len(every_key)} outputs, all are in layers.csv")
    figure.suptitle(f"Per-layer histograms at iteration {report.iterations - 1} "
                    f"({os.path.basename(report.model)}{shown})", y=1 - 0.3 / height)
    if output is not None:
        save_png(figure, output)
    return figure


def _histogram(ax, values: np.ndarray | None, xlabel: str, title: str,
               log_magnitude: bool) -> None:
    ax.set_title(title, fontsize="small", loc="left")
    ax.set_xlabel(xlabel, fontsize="small")
    ax.set_ylabel("count", fontsize="small")
    ax.tick_params(labelsize="x-small")
    if values is None or values.size == 0:
        ax.text(0.5, 0.5, "no gradient is computed for this output" if log_magnitude else "no data",
                ha="center", va="center", transform=ax.transAxes, fontsize="small")
        return
    finite = values[np.isfinite(values)]
    zeros = np.count_nonzero(finite == 0) / values.size
    note = ["all values are 0" if zeros == 1 else f"zeros: {zeros:.1%}"]
    if finite.size < values.size:
        note.append(f"NaN/inf: {1 - finite.size / values.size:.1%}")
    if log_magnitude:
        finite = np.log10(np.abs(finite[finite != 0]).astype(np.float64))
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        counts, edges = np.histogram(finite, bins=50, range=(lo, hi))
        ax.stairs(counts, edges, fill=True, alpha=0.7)
        if counts.max() > 0:
            # Log counts: a spike (ReLU zeros) would flatten everything else to nothing.
            ax.set_yscale("log")
            ax.set_ylim(0.8, counts.max() * 2.0)
    ax.text(0.98, 0.92, ", ".join(n for n in note if n), ha="right", va="top",
            transform=ax.transAxes, fontsize="x-small",
            bbox=dict(boxstyle="round", fc="white", alpha=0.8))
