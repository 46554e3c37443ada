"""The metrics file, early stopping, keep_best and the plateau lr policy."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from pyforge import api
from pyforge.cli import main
from pyforge.errors import SolverError
from pyforge.io.snapshot import read_solver_state
from tests.conformance.traces import parse_messages
from tests.logcapture import capture_log


def lenet_solver(tmp_path, caffe_ref, extra="", base_lr="0.01", max_iter=40):
    text = (caffe_ref / "runs" / "sgd_inv" / "solver.prototxt").read_text()
    text = text.replace("base_lr: 0.01", f"base_lr: {base_lr}")
    text = re.sub(r"max_iter: \d+", f"max_iter: {max_iter}", text)
    text = re.sub(r"snapshot: \d+", "snapshot: 0", text)
    text = re.sub(r'snapshot_prefix: ".*"', f'snapshot_prefix: "{tmp_path}/lenet"', text)
    text = text.replace('net: "', f'net: "{caffe_ref}/')
    path = tmp_path / "solver.prototxt"
    path.write_text(text + extra)
    return str(path)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_metrics_file_has_a_record_per_display_and_test(in_caffe_ref, tmp_path):
    with capture_log() as log:
        api.train(lenet_solver(tmp_path, in_caffe_ref, max_iter=20),
                  weights="init/snap_iter_0.caffemodel")
    records = read_jsonl(tmp_path / "lenet.metrics.jsonl")
    trace = parse_messages(log.messages)
    train = [r for r in records if r["kind"] == "train"]
    tests = [r for r in records if r["kind"] == "test"]
    assert [r["iter"] for r in train] == list(range(20))
    for r in train:
        assert r["smoothed_loss"] == pytest.approx(trace.loss[r["iter"]], rel=1e-5)
        assert r["lr"] == pytest.approx(trace.lr[r["iter"]], rel=1e-5)
        assert set(r["outputs"]) == {"loss"} and r["wall_time"] >= 0 and "iter_per_s" in r
    assert [r["iter"] for r in tests] == [0, 20]
    for r, (it, outputs) in zip(tests, trace.tests):
        assert r["iter"] == it and r["test_net"] == 0
        assert r["outputs"]["accuracy"] == pytest.approx(outputs["accuracy"], abs=1e-6)


def test_early_stopping_after_patience_passes_and_keep_best(in_caffe_ref, tmp_path, capsys):
    # lr 0: the weights never change, so accuracy never improves after the first pass.
    solver = lenet_solver(tmp_path, in_caffe_ref, base_lr="0", max_iter=200)
    code = main(["train", solver, "--weights=init/snap_iter_0.caffemodel",
                 "--early_stop_metric=accuracy", "--early_stop_patience=2", "--keep_best"])
    assert code == 0
    err = capsys.readouterr().err
    assert "Early stopping at iteration 40: accuracy has not improved for 2 test passes " \
           "(best 0.074 at iteration 0)" in err
    assert "Optimization stopped early." in err
    assert (tmp_path / "lenet_best.caffemodel").exists()
    assert (tmp_path / "lenet_iter_40.caffemodel").exists()  # the stop snapshots


def test_keep_best_rewrites_on_improvement(in_caffe_ref, tmp_path):
    with capture_log() as log:
        api.train(lenet_solver(tmp_path, in_caffe_ref, max_iter=40,
                               extra="keep_best: true\n"),
                  weights="init/snap_iter_0.caffemodel")
    best = [m for m in log.messages if m.startswith("Best accuracy so far")]
    assert len(best) == 3  # 0.074 at 0, then better at 20 and 40
    assert (tmp_path / "lenet_best.caffemodel").exists()


def test_unknown_watched_output_is_refused(in_caffe_ref, tmp_path):
    with pytest.raises(SolverError, match="no output 'top5'.*accuracy, loss"):
        api.train(lenet_solver(tmp_path, in_caffe_ref), weights="init/snap_iter_0.caffemodel",
                  overrides=lambda p: (setattr(p, "early_stop_metric", "top5"),
                                       setattr(p, "early_stop_patience", 3)))


PLATEAU = """lr_policy: "plateau"
gamma: 0.5
plateau_patience: 1
plateau_cooldown: 1
plateau_min_lr: 0.0001
plateau_metric: "loss"
"""


def plateau_solver(tmp_path, caffe_ref, prefix, max_iter=60):
    text = (caffe_ref / "runs" / "sgd_fixed_nomom" / "solver.prototxt").read_text()
    text = re.sub(r'lr_policy: ".*"\n', "", text)
    text = text.replace("base_lr: 0.01", "base_lr: 0.001")
    text = re.sub(r"max_iter: \d+", f"max_iter: {max_iter}", text)
    text = re.sub(r"snapshot: \d+", "snapshot: 30", text)
    text = re.sub(r"test_interval: \d+", "test_interval: 5", text)
    text = re.sub(r"test_iter: \d+", "test_iter: 1", text)
    text = re.sub(r'snapshot_prefix: ".*"', f'snapshot_prefix: "{tmp_path}/{prefix}"', text)
    text = text.replace('net: "', f'net: "{caffe_ref}/')
    path = tmp_path / f"{prefix}.prototxt"
    path.write_text(text + PLATEAU)
    return str(path)


def test_plateau_cuts_the_lr_and_resumes_exactly(in_caffe_ref, tmp_path):
    with capture_log() as straight_log:
        api.train(plateau_solver(tmp_path, in_caffe_ref, "a"),
                  weights="init/snap_iter_0.caffemodel")
    cuts = [m for m in straight_log.messages if m.startswith("Plateau: loss")]
    assert cuts, "the test loss never stalled"
    trace = parse_messages(straight_log.messages)
    assert min(trace.lr.values()) >= 0.0001 - 1e-12
    assert len(set(trace.lr.values())) > 1
    state = read_solver_state(str(tmp_path / "a_iter_30.solverstate"))
    with capture_log() as resumed_log:
        api.train(plateau_solver(tmp_path, in_caffe_ref, "b"),
                  snapshot=str(tmp_path / "a_iter_30.solverstate"))
    resumed = parse_messages(resumed_log.messages)
    assert {i: v for i, v in trace.lr.items() if i >= 30} == resumed.lr
    # The cuts are counted in Caffe's current_step field; the snapshot at 30 is taken before
    # the test pass at 30.
    assert state.current_step == sum(1 for m in cuts if _cut_iter(m, straight_log) < 30)
    a = read_solver_state(str(tmp_path / "a_iter_60.solverstate"))
    b = read_solver_state(str(tmp_path / "b_iter_60.solverstate"))
    assert all(np.array_equal(x, y) for x, y in zip(a.history, b.history))


def _cut_iter(message, log) -> int:
    index = log.messages.index(message)
    for previous in reversed(log.messages[:index]):
        if m := re.match(r"Iteration (\d+), Testing net", previous):
            return int(m.group(1))
    return -1


def test_eta_is_shown_only_when_asked(in_caffe_ref, tmp_path):
    """On a terminal the CLI sets show_eta; logs written elsewhere keep Caffe's exact line."""
    from pyforge.proto import read_solver_param
    from pyforge.solvers import create_solver

    path = lenet_solver(tmp_path, in_caffe_ref, max_iter=3)
    for show in (False, True):
        param = read_solver_param(path)
        param.weights.append("init/snap_iter_0.caffemodel")
        solver = create_solver(param, solver_file=path)
        solver.show_eta = show
        with capture_log() as log:
            solver.step(3)
        solver.close()
        lines = [m for m in log.messages if re.match(r"Iteration [12] \(", m)]
        assert lines and all((", ETA " in m) == show for m in lines)
        if show:
            assert re.search(r", ETA \d+:\d\d:\d\d$", lines[-1])
