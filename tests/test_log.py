"""glog's flags as Caffe users set them: GLOG_minloglevel, GLOG_log_year_in_prefix,
GLOG_logtostderr and GLOG_log_dir (glog's log files, named as glog names them)."""

from __future__ import annotations

import os
import re
import sys

import pytest

from pyforge import config
from pyforge.cli import main
from pyforge.log import configure

PREFIX_WITH_YEAR = re.compile(r"^([IWEF])\d{8} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] ")
PREFIX_WITHOUT_YEAR = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] ")


@pytest.fixture(autouse=True)
def plain_logging_afterwards():
    """Each test sets glog flags through the environment; leave the logger as it was."""
    yield
    configure(flags=config.GlogFlags(), stream=sys.stderr)


def _run(capsys, monkeypatch, **env) -> list[str]:
    """``pyforge device_query --gpu=0`` (INFO lines and one WARNING) under ``env``; its
    stderr lines."""
    for name in ("GLOG_minloglevel", "GLOG_log_year_in_prefix", "GLOG_logtostderr",
                 "GLOG_log_dir"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["device_query", "--gpu=0"]) == 0
    return capsys.readouterr().err.splitlines()


def test_default_prefix_has_the_year_and_glogs_thread_column(capsys, monkeypatch):
    lines = _run(capsys, monkeypatch)
    assert lines and all(PREFIX_WITH_YEAR.match(line) for line in lines)
    assert {PREFIX_WITH_YEAR.match(line).group(1) for line in lines} == {"I", "W"}


def test_minloglevel_drops_the_lower_severities(capsys, monkeypatch):
    letters = [line[0] for line in _run(capsys, monkeypatch, GLOG_minloglevel="1")]
    assert letters == ["W"]  # no INFO line left
    assert _run(capsys, monkeypatch, GLOG_minloglevel="2") == []


def test_year_off_gives_caffe_eras_prefix(capsys, monkeypatch):
    lines = _run(capsys, monkeypatch, GLOG_log_year_in_prefix="false")
    assert lines and all(PREFIX_WITHOUT_YEAR.match(line) for line in lines)
    assert not any(PREFIX_WITH_YEAR.match(line) for line in lines)


def test_log_dir_gets_glogs_files_and_symlinks(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("USER", "tester")
    stderr = _run(capsys, monkeypatch, GLOG_log_dir=str(tmp_path))
    host = os.uname().nodename
    name = re.compile(rf"^pyforge\.{re.escape(host)}\.tester\.log\.(INFO|WARNING)\."
                      rf"\d{{8}}-\d{{6}}\.{os.getpid()}$")
    files = sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink())
    assert len(files) == 2 and all(name.match(f) for f in files), files
    links = {p.name: os.readlink(p) for p in tmp_path.iterdir() if p.is_symlink()}
    assert set(links) == {"pyforge.INFO", "pyforge.WARNING"}
    assert all(not os.path.isabs(target) and target in files for target in links.values())
    info = (tmp_path / "pyforge.INFO").read_text().splitlines()
    warning = (tmp_path / "pyforge.WARNING").read_text().splitlines()
    for text in (info, warning):
        assert re.match(r"Log file created at: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d$", text[0])
        assert text[1] == f"Running on machine: {host}"
        assert re.match(r"Running duration \(h:mm:ss\): \d+:\d\d:\d\d$", text[2])
        assert text[3] == ("Log line format: [IWEF]yyyymmdd hh:mm:ss.uuuuuu threadid "
                           "file:line] msg")
    # The INFO file holds every line (the WARNING too), the WARNING file only the warning;
    # stderr keeps them all (Caffe's tools log to stderr as well).
    assert info[4:] == stderr
    assert warning[4:] == [line for line in stderr if line.startswith("W")]
    assert len(warning[4:]) == 1


def test_a_second_run_moves_the_symlink(capsys, monkeypatch, tmp_path):
    _run(capsys, monkeypatch, GLOG_log_dir=str(tmp_path), GLOG_log_year_in_prefix="0")
    header = (tmp_path / "pyforge.INFO").read_text().splitlines()[3]
    assert header == "Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg"
    (tmp_path / os.readlink(tmp_path / "pyforge.INFO")).rename(tmp_path / "old.INFO")
    _run(capsys, monkeypatch, GLOG_log_dir=str(tmp_path))
    assert (tmp_path / "pyforge.INFO").exists()  # points at the new file


def test_logtostderr_writes_no_files(capsys, monkeypatch, tmp_path):
    lines = _run(capsys, monkeypatch, GLOG_log_dir=str(tmp_path), GLOG_logtostderr="1")
    assert lines and list(tmp_path.iterdir()) == []


def test_a_log_dir_that_does_not_exist_is_one_line_and_the_run_goes_on(capsys, monkeypatch,
                                                                       tmp_path):
    missing = tmp_path / "nope"
    lines = _run(capsys, monkeypatch, GLOG_log_dir=str(missing))
    complaints = [line for line in lines if line.startswith("pyforge:")]
    assert len(complaints) == 1
    assert complaints[0].startswith(f"pyforge: cannot create the log file {missing}/pyforge.")
    assert complaints[0].endswith("(GLOG_log_dir): No such file or directory; logging to "
                                  "stderr only")
    assert sum(1 for line in lines if PREFIX_WITH_YEAR.match(line)) > 5


@pytest.mark.parametrize("value, expected", [
    ("false", False), ("0", False), ("no", False), ("true", True), ("1", True), ("yes", True),
    ("", True), ("Y", True)])
def test_booleans_read_as_glog_reads_them(monkeypatch, value, expected):
    monkeypatch.setenv("GLOG_logtostderr", value)
    assert config.load_glog().logtostderr is expected


@pytest.mark.parametrize("value, expected", [("1", 1), ("2x", 2), ("x", 0), (" 3", 3),
                                             ("-1", -1)])
def test_minloglevel_reads_as_strtol(monkeypatch, value, expected):
    monkeypatch.setenv("GLOG_minloglevel", value)
    assert config.load_glog().minloglevel == expected
