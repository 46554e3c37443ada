"""Caffe's ``tools/extra/parse_log.py`` reads pyforge's log (written with
GLOG_log_year_in_prefix=false) into the same rows and columns as Caffe's log of the same run,
and ``pyforge parse-log`` writes exactly its tables.

The script is not part of the repository; :func:`caffe_parse_log` applies its documented rules:
its four patterns (``Iteration (\\d+)``, ``Train net output #(\\d+): (\\S+) =
([\\.\\deE+-]+)``, the same for ``Test``, and ``lr = ...``), its timestamps (month and day from
the first field of a yearless glog prefix, the year from the file, seconds from the first
"Solving" line), a row per iteration holding the rate last seen, finished when the next one
starts or when it has as many columns as the first row, and the first row's rate replaced by
the second's.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import math
import re

import pytest

from pyforge.insight.parse_log import write_tables
from tests.conformance.traces import accuracy_tolerance, loss_tolerance, reference_traces
from tests.conftest import REFERENCE

RUN = REFERENCE / "runs" / "sgd_inv"
ITERATION = re.compile(r"Iteration (\d+)")
TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)")
TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)")
LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def caffe_timestamp(line: str, year: int) -> dt.datetime:
    """Caffe's extract_datetime_from_line: ``I1205 21:03:35.315536 ...`` in ``year``. A prefix
    with the year (``I20261205``) reads as month 20 and fails, as the script does."""
    fields = line.strip().split()
    month, day = int(fields[0][1:3]), int(fields[0][3:])
    clock, micros = fields[1].rsplit(".", 1)
    hour, minute, second = (int(x) for x in clock.split(":"))
    return dt.datetime(year, month, day, hour, minute, second, int(micros))


def caffe_parse_log(lines: list[str], year: int = 2026) -> tuple[list[dict], list[dict]]:
    """The train and test tables of Caffe's parse_log.py, as lists of rows (dicts in column
    order)."""
    lines = iter(lines)
    start = next(caffe_timestamp(line, year) for line in lines if "Solving" in line)
    last = start
    iteration, rate = -1.0, math.nan
    tables = {"train": [], "test": []}
    open_rows: dict[str, dict | None] = {"train": None, "test": None}
    for line in lines:
        if m := ITERATION.search(line):
            iteration = float(m.group(1))
        if iteration == -1:
            continue
        try:
            when = caffe_timestamp(line, year)
        except ValueError:
            continue
        if when.month < last.month:
            year += 1
            when = caffe_timestamp(line, year)
        last = when
        seconds = (when - start).total_seconds()
        if m := LEARNING_RATE.search(line):
            rate = float(m.group(1))
        for kind, pattern in (("train", TRAIN_OUTPUT), ("test", TEST_OUTPUT)):
            rows, row = tables[kind], open_rows[kind]
            if m := pattern.search(line):
                if row is None or row["NumIters"] != iteration:
                    if row is not None:
                        rows.append(row)
                    row = {"NumIters": iteration, "Seconds": seconds, "LearningRate": rate}
                row[m.group(2)] = float(m.group(3))
            if row is not None and rows and len(row) == len(rows[0]):
                rows.append(row)
                row = None
            open_rows[kind] = row
    for rows in tables.values():
        if len(rows) > 1:
            rows[0]["LearningRate"] = rows[1]["LearningRate"]
    return tables["train"], tables["test"]


def as_csv_rows(rows: list[dict]) -> list[list[str]]:
    """The rows as the script's csv writer prints them: a header, then repr of each float."""
    return [list(rows[0])] + [[repr(v) for v in row.values()] for row in rows]


def read_csv(path: str) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def yearless_caffe_log(tmp_path):
    """Caffe's log of sgd_inv as a glog without the year writes it."""
    text = gzip.decompress((RUN / "caffe.log.gz").read_bytes()).decode()
    path = tmp_path / "caffe_sgd_inv.log"
    path.write_text(re.sub(r"^([IWEF])\d{4}(\d{4}) ", r"\1\2 ", text, flags=re.MULTILINE))
    return path


def test_the_year_in_the_prefix_is_what_breaks_caffes_script(pyforge_sgd_inv_log):
    solving = next(line for line in pyforge_sgd_inv_log.read_text().splitlines()
                   if "Solving" in line)
    with pytest.raises(ValueError, match="month must be in 1..12"):
        caffe_timestamp(solving, 2026)


def test_caffes_rules_read_pyforges_yearless_log_like_caffes_log(pyforge_sgd_inv_yearless,
                                                                 tmp_path):
    log_file, _ = pyforge_sgd_inv_yearless
    lines = log_file.read_text().splitlines()
    assert lines and all(re.match(r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] ", line)
                         for line in lines if line[:1] in "IWEF" and line[1:2].isdigit())
    ours = caffe_parse_log(lines)
    theirs = caffe_parse_log(yearless_caffe_log(tmp_path).read_text().splitlines())
    _, _, envelope = reference_traces(RUN)
    for mine, caffe in zip(ours, theirs):  # the train table, then the test table
        assert len(mine) == len(caffe) > 1
        assert [list(r) for r in mine] == [list(r) for r in caffe]  # the same columns
        assert [r["NumIters"] for r in mine] == [r["NumIters"] for r in caffe]
        assert [r["LearningRate"] for r in mine] == [r["LearningRate"] for r in caffe]
        for a, b in zip(mine, caffe):
            tolerance = loss_tolerance(envelope, int(a["NumIters"]))
            assert a["loss"] == pytest.approx(b["loss"], rel=tolerance)
            assert a["Seconds"] >= 0
    for a, b in zip(ours[1], theirs[1]):
        assert abs(a["accuracy"] - b["accuracy"]) <= accuracy_tolerance(envelope,
                                                                       int(a["NumIters"]))
    assert len(ours[0]) == 60 and len(ours[1]) == 4


@pytest.mark.parametrize("which", ["pyforge", "caffe"])
def test_pyforge_parse_log_writes_caffes_tables_cell_for_cell(pyforge_sgd_inv_yearless,
                                                              tmp_path, which):
    log_file = (pyforge_sgd_inv_yearless[0] if which == "pyforge"
                else yearless_caffe_log(tmp_path))
    expected = caffe_parse_log(log_file.read_text().splitlines())
    train_path, test_path, _ = write_tables(str(log_file), str(tmp_path / "tables"))
    assert read_csv(train_path) == as_csv_rows(expected[0])
    assert read_csv(test_path) == as_csv_rows(expected[1])
    assert read_csv(train_path)[1][0] == "0.0"  # NumIters is a float, as the script writes


def test_metrics_jsonl_gives_the_logs_seconds_column(pyforge_sgd_inv_yearless, tmp_path):
    log_file, metrics = pyforge_sgd_inv_yearless
    from_log = write_tables(str(log_file), str(tmp_path / "log"))
    from_metrics = write_tables(str(metrics), str(tmp_path / "metrics"))
    for log_table, metrics_table in zip(from_log[:2], from_metrics[:2]):
        log_rows, metrics_rows = read_csv(log_table)[1:], read_csv(metrics_table)[1:]
        assert len(log_rows) == len(metrics_rows) > 1
        # NumIters and Seconds cell for cell; the rates and outputs agree to the 6 digits the
        # log prints (the metrics file holds them in full).
        assert [r[:2] for r in log_rows] == [r[:2] for r in metrics_rows]
        for a, b in zip(log_rows, metrics_rows):
            for x, y in zip(a[2:], b[2:]):
                assert float(x) == pytest.approx(float(y), rel=5e-6)
