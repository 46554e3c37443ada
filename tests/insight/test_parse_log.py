"""parse-log: Caffe's tables from Caffe's logs (1.0 and earlier, with and without the year in the
glog prefix), from pyforge's logs of the same run, and from pyforge's metrics JSONL."""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import pytest

from pyforge.errors import PyforgeError
from pyforge.insight.parse_log import (
    load_log,
    parse_lines,
    read_table,
    table_names,
    write_tables,
)
from tests.conformance.traces import accuracy_tolerance, loss_tolerance, reference_traces
from tests.conftest import REFERENCE
from tests.logcapture import capture_log

RUN = REFERENCE / "runs" / "sgd_inv"
CAFFE_LOG = RUN / "caffe.log.gz"
# Caffe 1.0's log of the reference run sgd_step (base_lr 0.02, gamma 0.5, stepsize 20).
STEP_LOG = Path(__file__).parents[1] / "data" / "insight" / "sgd_step" / "caffe.log.gz"


def _caffe_text() -> str:
    return gzip.decompress(CAFFE_LOG.read_bytes()).decode()


def test_caffe_1_0_log_gives_caffes_tables():
    log = load_log(CAFFE_LOG)
    reference, _, _ = reference_traces(RUN)
    assert log.train_columns == ["NumIters", "Seconds", "LearningRate", "loss"]
    assert log.test_columns == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss"]
    assert [r.iter for r in log.train] == list(range(60))
    assert [r.iter for r in log.test] == [0, 20, 40, 60]
    # average_loss is 1, so the "Train net output" loss is the displayed loss.
    assert {r.iter: r.values["loss"] for r in log.train} == {
        i: v for i, v in reference.loss.items() if i < 60}
    # Caffe's script's LearningRate: the rate logged before the row's outputs (the previous
    # iteration's here, display 1); the first row takes the second's.
    rates = [reference.lr[0]] + [reference.lr[i - 1] for i in range(1, 60)]
    assert [r.lr for r in log.train] == rates
    assert [(r.iter, r.values) for r in log.test] == reference.tests
    # The smoothed loss as displayed includes Solve()'s extra display after the last update.
    assert dict(log.loss) == reference.loss
    assert dict(log.lr) == reference.lr
    assert log.test_losses == {"loss"} and log.train_losses == {"loss"}


def test_seconds_count_from_the_solving_line_and_rates_are_the_previous_lines():
    log = load_log(CAFFE_LOG)
    # "Solving LeNet" at 14:26:53.994474; the first train output at 14:26:54.101766.
    assert log.train[0].seconds == pytest.approx(0.107292, abs=1e-9)
    assert log.test[0].seconds == pytest.approx(0.084369, abs=1e-9)
    seconds = [r.seconds for r in log.train]
    assert seconds == sorted(seconds)
    # Caffe prints "Iteration 1, lr = 0.00999925" after iteration 1's outputs: as in Caffe's
    # script, the row of iteration 1 gets the rate logged before it, iteration 0's.
    assert log.train[1].lr == 0.01 and log.train[2].lr == 0.00999925
    # The test at 60 comes after iteration 59's rate.
    assert log.test[-1].lr == 0.00995598


def test_written_tables_match_caffes_layout(tmp_path):
    train_path, test_path, _ = write_tables(str(CAFFE_LOG), str(tmp_path / "out"))
    assert (train_path, test_path) == table_names(str(CAFFE_LOG), str(tmp_path / "out"))
    assert train_path.endswith("caffe.log.train") and test_path.endswith("caffe.log.test")
    train_lines = Path(train_path).read_bytes().decode().split("\r\n")
    assert train_lines[0] == "NumIters,Seconds,LearningRate,loss"
    assert train_lines[1] == "0.0,0.107292,0.01,2.35731"
    test_lines = Path(test_path).read_bytes().decode().split("\r\n")
    assert test_lines[0] == "NumIters,Seconds,LearningRate,accuracy,loss"
    # The test row of iteration 0 takes the next test row's rate (iteration 19's).
    assert test_lines[1] == "0.0,0.084369,0.00998577,0.074,2.35924"
    header, rows = read_table(test_path)
    assert header == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss"]
    assert [r["NumIters"] for r in rows] == [0, 20, 40, 60]


def test_pyforge_log_of_the_same_run_gives_the_same_tables(pyforge_sgd_inv_log, tmp_path):
    caffe = load_log(CAFFE_LOG)
    ours = load_log(pyforge_sgd_inv_log)
    _, _, envelope = reference_traces(RUN)
    assert ours.train_columns == caffe.train_columns
    assert ours.test_columns == caffe.test_columns
    assert [r.iter for r in ours.train] == [r.iter for r in caffe.train]
    assert [r.iter for r in ours.test] == [r.iter for r in caffe.test]
    assert [i for i, _ in ours.loss] == [i for i, _ in caffe.loss]
    for mine, theirs in zip(ours.train + ours.test, caffe.train + caffe.test):
        assert mine.lr == pytest.approx(theirs.lr, rel=1e-5)
        assert mine.seconds >= 0
    for mine, theirs in zip(ours.train, caffe.train):
        tol = loss_tolerance(envelope, mine.iter)
        assert mine.values["loss"] == pytest.approx(theirs.values["loss"], rel=tol)
    for mine, theirs in zip(ours.test, caffe.test):
        tol = loss_tolerance(envelope, mine.iter)
        assert mine.values["loss"] == pytest.approx(theirs.values["loss"], rel=tol)
        assert abs(mine.values["accuracy"] - theirs.values["accuracy"]) <= accuracy_tolerance(
            envelope, mine.iter)
    # And through the files: the same header and the same NumIters column.
    ours_train, _, _ = write_tables(str(pyforge_sgd_inv_log), str(tmp_path / "p"))
    caffe_train, _, _ = write_tables(str(CAFFE_LOG), str(tmp_path / "c"))
    assert read_table(ours_train)[0] == read_table(caffe_train)[0]
    assert ([r["NumIters"] for r in read_table(ours_train)[1]]
            == [r["NumIters"] for r in read_table(caffe_train)[1]])


def test_step_policy_rates_show_one_row_late_as_in_caffes_script():
    log = load_log(STEP_LOG)
    reference, _, _ = reference_traces(REFERENCE / "runs" / "sgd_step")
    rates = {r.iter: r.lr for r in log.train}
    assert rates == {i: reference.lr[max(i - 1, 0)] for i in range(60)}
    assert (rates[20], rates[21], rates[40], rates[41]) == (0.02, 0.01, 0.01, 0.005)
    assert [(r.iter, r.lr) for r in log.test] == [(0, 0.02), (20, 0.02), (40, 0.01),
                                                   (60, 0.005)]


def test_debug_info_lines_do_not_disturb_the_tables():
    log = load_log(REFERENCE / "runs" / "debug_info" / "caffe.log")
    assert [r.iter for r in log.train] == [0, 1, 2]
    assert [r.iter for r in log.test] == [0, 2]
    assert log.train_columns == ["NumIters", "Seconds", "LearningRate", "loss"]


def _as_pre_1_0(text: str) -> str:
    """Caffe's log as Caffe rc3 wrote it: no year in the prefix, no speed in the loss line."""
    text = re.sub(r"^([IWEF])\d{4}(\d{4}) ", r"\1\2 ", text, flags=re.MULTILINE)
    return re.sub(r"Iteration (\d+) \([^)]*\), loss", r"Iteration \1, loss", text)


def test_pre_1_0_format_and_yearless_prefix_give_the_same_tables(tmp_path):
    old = _as_pre_1_0(_caffe_text())
    assert "I1125 14:26:54.101634 17469 solver.cpp:239] Iteration 0, loss = 2.35731" in old
    path = tmp_path / "caffe_rc3.log"
    path.write_text(old)
    assert load_log(path) == _with_source(load_log(CAFFE_LOG), str(path))


def _with_source(log, source):
    log.source = source
    return log


def test_gzip_is_read_by_content_and_the_suffix_dropped_from_table_names(tmp_path):
    plain = tmp_path / "caffe.log"
    plain.write_text(_caffe_text())
    assert load_log(plain) == _with_source(load_log(CAFFE_LOG), str(plain))
    odd = tmp_path / "compressed_without_suffix"
    odd.write_bytes(CAFFE_LOG.read_bytes())
    assert len(load_log(odd).train) == 60
    assert table_names("x/run.log.gz", "out") == ("out/run.log.train", "out/run.log.test")


def test_yearless_prefix_rolls_over_new_year_and_leap_day():
    lines = [
        "I1231 23:59:59.500000  1234 solver.cpp:289] Solving LeNet",
        "I1231 23:59:59.600000  1234 solver.cpp:239] Iteration 0, loss = 2.3",
        "I1231 23:59:59.700000  1234 solver.cpp:258]     Train net output #0: loss = 2.3",
        "I0101 00:00:00.500000  1234 solver.cpp:239] Iteration 1, loss = 2.2",
        "I0101 00:00:00.500000  1234 solver.cpp:258]     Train net output #0: loss = 2.2",
        "I0229 00:00:00.500000  1234 solver.cpp:239] Iteration 2, loss = 2.1",
        "I0229 00:00:00.500000  1234 solver.cpp:258]     Train net output #0: loss = 2.1",
    ]
    log = parse_lines(lines)
    assert [r.seconds for r in log.train] == pytest.approx([0.2, 1.0, 1.0 + 59 * 86400])


def test_learning_rate_is_the_last_logged_before_the_row():
    # display 10, test_interval 25: the test at 25 has no rate of its own.
    lines = []
    for it in (0, 10, 20, 30):
        if it == 30:
            lines += ["Iteration 25, Testing net (#0)",
                      "    Test net output #0: accuracy = 0.5"]
        lines += [f"Iteration {it} (1 iter/s, 1s/10 iters), loss = 1",
                  "    Train net output #0: loss = 1 (* 1 = 1 loss)",
                  f"Iteration {it}, lr = {0.1 if it < 20 else 0.01}"]
    log = parse_lines(lines)
    assert [(r.iter, r.lr) for r in log.train] == [(0, 0.1), (10, 0.1), (20, 0.1), (30, 0.01)]
    assert [(r.iter, r.lr) for r in log.test] == [(25, 0.01)]
    assert log.lr == [(0, 0.1), (10, 0.1), (20, 0.01), (30, 0.01)]
    assert all(math.isnan(r.seconds) for r in log.train)  # no glog prefix, no time


def test_non_finite_values_are_kept():
    lines = ["Iteration 0 (0 iter/s, 0s/1 iters), loss = -nan",
             "    Train net output #0: loss = -nan (* 1 = -nan loss)",
             "Iteration 0, lr = 10",
             "Iteration 1 (1 iter/s, 1s/1 iters), loss = inf",
             "    Train net output #0: loss = inf (* 1 = inf loss)",
             "Iteration 1, lr = 10"]
    log = parse_lines(lines)
    assert math.isnan(log.train[0].values["loss"]) and math.isnan(log.loss[0][1])
    assert log.train[1].values["loss"] == math.inf


def test_several_test_nets_and_multi_element_outputs_get_their_own_columns():
    lines = ["Iteration 0, Testing net (#0)",
             "    Test net output #0: accuracy = 0.5",
             "    Test net output #1: loss = 2 (* 1 = 2 loss)",
             "Iteration 0, Testing net (#1)",
             "    Test net output #0: accuracy = 0.25",
             "    Test net output #1: prob = 0.1",
             "    Test net output #2: prob = 0.9",
             "Iteration 0 (0 iter/s, 0s/1 iters), loss = 2.5",
             "    Train net output #0: loss = 2.5 (* 1 = 2.5 loss)",
             "Iteration 0, lr = 0.1"]
    log = parse_lines(lines)
    assert log.test_columns == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss",
                                "net1/accuracy", "net1/prob", "net1/prob[1]"]
    assert len(log.test) == 1
    assert log.test[0].values == {"accuracy": 0.5, "loss": 2, "net1/accuracy": 0.25,
                                  "net1/prob": 0.1, "net1/prob[1]": 0.9}
    assert math.isnan(log.test[0].lr)  # logged before any rate, and no second row to copy
    assert log.test_losses == {"loss"}


def test_lines_from_other_threads_between_test_outputs_are_ignored():
    text = _caffe_text()
    assert "data_layer.cpp:73] Restarting data prefetching from start." in text
    assert load_log(CAFFE_LOG).test[-1].values == {"accuracy": 0.85, "loss": 0.436694}


METRICS = [
    {"kind": "train", "iter": 0, "lr": 0.01, "loss": 2.3, "smoothed_loss": 2.3,
     "outputs": {"loss": 2.3}, "wall_time": 100.0, "iter_per_s": 0.0},
    {"kind": "test", "iter": 0, "test_net": 0, "outputs": {"accuracy": 0.1, "loss": 2.31},
     "wall_time": 100.5},
    {"kind": "test", "iter": 0, "test_net": 1, "outputs": {"accuracy": 0.2}, "wall_time": 100.6},
    {"kind": "snapshot", "iter": 1, "path": "x_iter_1.caffemodel"},
    {"kind": "train", "iter": 1, "lr": 0.005, "loss": 1.9, "smoothed_loss": 2.1,
     "outputs": {"loss": 1.9}, "wall_time": 101.0, "iter_per_s": 2.0},
    {"kind": "test", "iter": 2, "test_net": 0, "outputs": {"accuracy": 0.6, "loss": 1.2},
     "wall_time": 102.0},
]


def write_metrics(path, records=METRICS) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_metrics_jsonl_gives_the_same_tables(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_metrics(path)
    log = load_log(path)
    assert log.train_columns == ["NumIters", "Seconds", "LearningRate", "loss"]
    # Rates as a log of the run gives them: the last train record's before the row, the first
    # row the second's. Seconds from wall_time (a file written before "seconds" existed).
    assert [(r.iter, r.seconds, r.lr, r.values) for r in log.train] == [
        (0, 0.0, 0.01, {"loss": 2.3}), (1, 1.0, 0.01, {"loss": 1.9})]
    assert log.test_columns == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss",
                                "net1/accuracy"]
    assert [(r.iter, r.lr, r.values) for r in log.test] == [
        (0, 0.005, {"accuracy": 0.1, "loss": 2.31, "net1/accuracy": 0.2}),
        (2, 0.005, {"accuracy": 0.6, "loss": 1.2})]
    assert log.loss == [(0, 2.3), (1, 2.1)]  # the smoothed loss, as a glog log displays it
    assert log.lr == [(0, 0.01), (1, 0.005)]
    assert log.test_losses == {"loss"}
    train_path, _, _ = write_tables(str(path), str(tmp_path))
    assert train_path.endswith("metrics.jsonl.train")


def test_metrics_seconds_field_is_the_seconds_column(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_metrics(path, [dict(r, seconds=0.25 * i) for i, r in enumerate(METRICS)])
    log = load_log(path)
    assert [r.seconds for r in log.train] == [0.0, 1.0]
    assert [r.seconds for r in log.test] == [0.25, 1.25]


@pytest.mark.parametrize("line,expected", [
    ("{not json", r"metrics\.jsonl:2: expected one JSON object per line"),
    ('{"kind": "train"}', r'metrics\.jsonl:2: expected a JSON object with an integer "iter"'),
    ('{"kind": "train", "iter": 1, "outputs": [1]}', r'expected "outputs" to be an object'),
])
def test_bad_metrics_lines_are_skipped_naming_the_file_and_line(tmp_path, line, expected):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(METRICS[0]) + "\n" + line + "\n" + json.dumps(METRICS[4])
                    + "\n")
    with capture_log() as log:
        parsed = load_log(path)
    # Every complete line is used; the bad one is counted and named.
    assert parsed.skipped == 1 and len(parsed.train) == 2
    assert re.search(r"skipped 1 line\(s\) .* used the other 2 .*" + expected, log.text)
    # A file with no complete record at all is an error naming the first bad line.
    path.write_text(line + "\n")
    with pytest.raises(PyforgeError, match=expected.replace(":2:", ":1:")):
        load_log(path)


def test_a_file_without_training_lines_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n")
    with pytest.raises(PyforgeError, match=r"notes\.txt: expected a Caffe or pyforge training "
                                           r"log .* found no training lines"):
        load_log(path)
    with pytest.raises(PyforgeError, match=r"missing\.log: cannot read the log"):
        load_log(tmp_path / "missing.log")
