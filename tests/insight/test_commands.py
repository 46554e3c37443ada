"""The parse-log and plot commands: thin wrappers, user errors as one line."""

from __future__ import annotations

import pytest

from pyforge.cli import main
from tests.insight.test_parse_log import CAFFE_LOG, STEP_LOG
from tests.logcapture import capture_log


def test_parse_log_command_writes_both_tables(tmp_path):
    out = tmp_path / "tables"
    with capture_log() as log:
        assert main(["parse-log", str(CAFFE_LOG), str(out)]) == 0
    assert (out / "caffe.log.train").read_text().startswith("NumIters,Seconds,LearningRate,loss")
    assert (out / "caffe.log.test").exists()
    assert any(m.startswith("Wrote ") and "(60 rows)" in m and "(4 rows)" in m
               for m in log.messages)
    assert main(["parse-log", str(CAFFE_LOG), str(out), "--delimiter", ";"]) == 0
    assert (out / "caffe.log.test").read_text().startswith("NumIters;Seconds;LearningRate;")


def test_parse_log_command_reports_a_missing_log(tmp_path, capsys):
    # A file named on the command line that does not exist: a bad command line (2).
    assert main(["parse-log", str(tmp_path / "nope.log"), str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"pyforge: error: Invalid value for 'LOG': Path "
                                       f"'{tmp_path / 'nope.log'}' does not exist (see "
                                       "'pyforge parse-log --help')\n")


def test_plot_command_writes_the_png(tmp_path):
    pytest.importorskip("matplotlib")
    from tests.insight.test_plot import assert_png

    out = tmp_path / "curves.png"
    assert main(["plot", str(CAFFE_LOG), str(STEP_LOG), "-o", str(out), "--log-loss"]) == 0
    assert_png(out)


def test_plot_command_needs_a_log(capsys):
    assert main(["plot"]) == 2
    assert "Missing argument" in capsys.readouterr().err
