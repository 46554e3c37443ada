"""plot: the curves drawn are the parsed data, each run is in the legends, the axes are
labelled and the PNG is a real image."""

from __future__ import annotations

import math
import shutil
import sys

import numpy as np
import pytest

from pyforge.errors import PyforgeError
from pyforge.insight.parse_log import load_log, parse_lines
from pyforge.insight.plot import plot_files, plot_logs, run_labels
from tests.insight.test_parse_log import CAFFE_LOG, STEP_LOG, write_metrics

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_width=400, min_height=300) -> None:
    """A valid PNG of a sensible size (matplotlib reads it back)."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert 10_000 < len(data) < 5_000_000
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height


def _lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()}


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def _assert_xy(line, xs, ys) -> None:
    np.testing.assert_array_equal(np.asarray(line.get_xdata(), dtype=float), np.asarray(xs, float))
    np.testing.assert_array_equal(np.asarray(line.get_ydata(), dtype=float), np.asarray(ys, float))


def test_caffe_pyforge_and_jsonl_runs_are_drawn_as_parsed(pyforge_sgd_inv_log, tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    write_metrics(metrics)
    paths = [CAFFE_LOG, pyforge_sgd_inv_log, metrics]
    out = tmp_path / "curves.png"
    figure = plot_files(paths, out)
    assert_png(out)
    loss_ax, metric_ax, lr_ax = figure.axes
    assert loss_ax.get_ylabel() == "loss"
    assert metric_ax.get_ylabel() == "accuracy, net1/accuracy"
    assert lr_ax.get_ylabel().startswith("learning rate")
    assert lr_ax.get_xlabel() == "iteration"
    assert all(ax.get_title() for ax in figure.axes)
    labels = run_labels(paths)
    assert labels == ["caffe.log.gz", "pyforge_sgd_inv.log", "metrics.jsonl"]
    for path, label in zip(paths, labels):
        log = load_log(path)
        lines = _lines(loss_ax)
        _assert_xy(lines[f"{label}: train loss (smoothed)"], [i for i, _ in log.loss],
                   [v for _, v in log.loss])
        _assert_xy(lines[f"{label}: test loss"], [r.iter for r in log.test],
                   [r.values["loss"] for r in log.test])
        _assert_xy(_lines(metric_ax)[f"{label}: test accuracy"], [r.iter for r in log.test],
                   [r.values["accuracy"] for r in log.test])
        _assert_xy(_lines(lr_ax)[f"{label}: lr"], [i for i, _ in log.lr],
                   [v for _, v in log.lr])
        # Every run has its entries in every panel's legend.
        for ax in figure.axes:
            assert any(text.startswith(f"{label}: ") for text in _legend_texts(ax))
    # One colour per run, the same in every panel.
    colors = {label: {line.get_color() for ax in figure.axes for line in ax.get_lines()
                      if line.get_label().startswith(label + ":")} for label in labels}
    assert all(len(c) == 1 for c in colors.values())
    assert len({c.pop() for c in colors.values()}) == len(labels)


def test_runs_with_the_same_file_name_are_told_apart_by_their_folder(tmp_path):
    for run, log in (("sgd_inv", CAFFE_LOG), ("sgd_step", STEP_LOG)):
        (tmp_path / run).mkdir()
        shutil.copy(log, tmp_path / run / "caffe.log.gz")
    paths = [tmp_path / "sgd_inv" / "caffe.log.gz", tmp_path / "sgd_step" / "caffe.log.gz"]
    assert run_labels(paths) == ["sgd_inv/caffe.log.gz", "sgd_step/caffe.log.gz"]
    assert run_labels(["a.log", "a.log"]) == ["a.log", "a.log (2)"]
    figure = plot_files(paths, tmp_path / "two.png", title="inv vs step")
    assert figure._suptitle.get_text() == "inv vs step"  # (get_suptitle() needs 3.8)
    assert any(t.startswith("sgd_step/caffe.log.gz: ") for t in _legend_texts(figure.axes[0]))
    # The rates (0.02 down to 0.005) span less than a decade: a linear axis, from 0.
    lr_ax = figure.axes[-1]
    assert lr_ax.get_yscale() == "linear" and lr_ax.get_ylim()[0] == 0


def test_a_diverging_run_is_marked_where_its_loss_stops_being_finite(tmp_path):
    lines = []
    for it, loss in enumerate(["2.3", "5.1", "nan", "nan"]):
        lines += [f"Iteration {it} (1 iter/s, 1s/1 iters), loss = {loss}",
                  f"    Train net output #0: loss = {loss} (* 1 = {loss} loss)",
                  f"Iteration {it}, lr = 10"]
    log = parse_lines(lines, source="diverged.log")
    figure = plot_logs([log], output=tmp_path / "d.png")
    lines_by_label = _lines(figure.axes[0])
    marker = lines_by_label["diverged.log: loss not finite from iteration 2"]
    assert list(marker.get_xdata()) == [2, 2]
    train = lines_by_label["diverged.log: train loss (smoothed)"]
    assert [v for v in train.get_ydata() if not math.isnan(v)] == [2.3, 5.1]
    # Only a loss panel and an lr panel: there are no other outputs.
    assert len(figure.axes) == 2


def test_log_loss_uses_a_log_scale(tmp_path):
    figure = plot_files([CAFFE_LOG], tmp_path / "log.png", log_loss=True)
    assert figure.axes[0].get_yscale() == "log"
    assert figure.axes[0].get_ylabel() == "loss (log scale)"


def test_without_matplotlib_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(PyforgeError, match=r"pip install 'pyforge\[plot\]'"):
        plot_files([CAFFE_LOG], tmp_path / "x.png")
