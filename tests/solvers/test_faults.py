"""Killed runs, full disks and mismatched nets: temporaries of killed runs are cleaned up, a
metrics or log write that fails is reported once and training goes on, readers use every
complete metrics line, and the train/test sharing error names its cause."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from pyforge import api
from pyforge.cli import main
from pyforge.errors import NetError
from pyforge.insight.parse_log import load_log
from pyforge.io.db_lmdb import LMDBWriter
from pyforge.log import GlogHandler, get_logger
from pyforge.proto import caffe_pb2, read_solver_param
from pyforge.solvers import create_solver, monitor
from pyforge.solvers.monitor import MetricsFile
from tests.cli.test_errors import make_solver, write
from tests.logcapture import capture_log


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def snapshot_solver(tmp_path, max_iter: int = 2, extra: str = "") -> str:
    solver = make_solver(tmp_path, extra=f'snapshot: 1\nsnapshot_prefix: "{tmp_path}/snap"\n'
                                         + extra)
    path = tmp_path / "solver.prototxt"
    path.write_text(path.read_text().replace("max_iter: 1\n", f"max_iter: {max_iter}\n"))
    return solver


# --- temporaries of killed runs ---------------------------------------------------------------
def test_a_run_removes_the_snapshot_temporaries_of_killed_runs_and_nothing_else(tmp_path):
    dead = dead_pid()
    abandoned = [f".snap_iter_47.solverstate.tmp{dead}", f".snap_iter_3.caffemodel.tmp{dead}",
                 f".snap_best.caffemodel.h5.tmp{dead}"]
    kept = [f".other_iter_3.caffemodel.tmp{dead}",  # another prefix
            f".snap_iter_3.caffemodel.tmp{os.getpid()}",  # a live process's
            f".snap.metrics.jsonl.tmp{dead}",  # not a snapshot file
            "notes.txt"]
    for name in abandoned + kept:
        (tmp_path / name).write_bytes(b"\0" * 1000)
    with capture_log() as log:
        api.train(snapshot_solver(tmp_path))
    names = {p.name for p in tmp_path.iterdir()}
    assert not names & set(abandoned)
    assert set(kept) <= names
    assert "Removed 3 temporary snapshot file(s) left by a run that was killed" in log.text


def test_a_snapshot_removes_temporaries_left_since_the_run_started(tmp_path):
    solver = create_solver(read_solver_param(snapshot_solver(tmp_path, max_iter=3)))
    try:
        leftover = tmp_path / f".snap_iter_1.caffemodel.tmp{dead_pid()}"
        leftover.write_bytes(b"\0")
        solver.step(1)
        solver.snapshot()
        assert not leftover.exists()
    finally:
        solver.close()


# --- metrics and log writes that fail ---------------------------------------------------------
def test_a_full_disk_under_the_metrics_file_warns_once_and_training_goes_on(tmp_path, capsys):
    solver = snapshot_solver(tmp_path, max_iter=3)  # display: 1, a record per iteration
    code = main(["train", solver, "--metrics=/dev/full"])
    err = capsys.readouterr().err
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "cannot write the metrics file" in line]
    assert len(warnings) == 1 and "/dev/full: cannot write the metrics file: No space left on " \
                                  "device; training goes on" in warnings[0]
    assert {p.name for p in tmp_path.glob("snap_iter_*")} == {
        f"snap_iter_{i}.{ext}" for i in (1, 2, 3) for ext in ("caffemodel", "solverstate")}


def test_a_record_cut_short_leaves_the_next_on_a_line_of_its_own(tmp_path, monkeypatch):
    path = tmp_path / "m.jsonl"
    metrics = MetricsFile(str(path), append=False)
    real_write = monitor.os.write
    calls = []

    def flaky_write(fd, data):
        calls.append(len(data))
        if len(calls) == 2:  # the disk fills part way through the second record
            return real_write(fd, data[: len(data) // 2])
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(monitor.os, "write", flaky_write)
    records = [{"kind": "train", "iter": i, "lr": 0.1, "loss": 1.0, "outputs": {"loss": 1.0},
                "wall_time": float(i)} for i in range(5)]
    with capture_log() as log:
        for record in records:
            metrics.write(record)
    metrics.close()
    assert log.text.count("cannot write the metrics file") == 1
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["iter"] == 0 and lines[1].startswith('{"kind":"train","iter":1')
    assert [json.loads(x)["iter"] for x in lines[2:]] == [3, 4]
    # The readers use every complete line and say how many they skipped.
    with capture_log() as log:
        parsed = load_log(path)
    assert [row.iter for row in parsed.train] == [0, 3, 4] and parsed.skipped == 1
    assert "skipped 1 line(s) that are not complete metrics records and used the other 3" \
        in log.text


def test_parse_log_and_plot_use_a_metrics_file_cut_mid_line(tmp_path, capsys):
    path = tmp_path / "run.metrics.jsonl"
    records = [{"kind": "train", "iter": i, "lr": 0.1, "loss": 2.0 - i / 10,
                "outputs": {"loss": 2.0 - i / 10}, "wall_time": float(i)} for i in range(4)]
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(text[: len(text) - 20])  # a run killed while writing its last record
    assert main(["parse-log", str(path), str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 line(s)" in err and "used the other 3" in err
    assert len((tmp_path / "run.metrics.jsonl.train").read_text().splitlines()) == 4
    pytest.importorskip("matplotlib")
    assert main(["plot", str(path), "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").exists()


class _FullDisk(io.TextIOBase):
    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_log_stream_that_fails_is_reported_once(capfd):
    handler = GlogHandler(_FullDisk())
    logger = logging.getLogger("pyforge.test_full_disk")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(5):
            logger.warning("line %d", i)
    finally:
        logger.removeHandler(handler)
    err = capfd.readouterr().err
    assert err.count("pyforge: warning: cannot write the log to") == 1
    assert "No space left on device" in err and "Logging error" not in err


def test_no_thread_writes_to_a_replaced_and_closed_stderr(monkeypatch, capfd):
    """A handler follows sys.stderr: a stream a harness swapped in and closed is never used
    again, from any thread (the prefetch threads of nets log from theirs)."""
    from pyforge.log import configure

    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    configure()
    get_logger().info("to the swapped stream")
    monkeypatch.undo()
    swapped.close()
    thread = threading.Thread(target=lambda: get_logger().info("from a thread, later"))
    thread.start()
    thread.join()
    err = capfd.readouterr().err
    assert "from a thread, later" in err
    assert "Logging error" not in err and "closed file" not in err


# --- sharing between the train and test nets --------------------------------------------------
def lmdb(path, channels: int, size: int) -> str:
    writer = LMDBWriter(str(path))
    for i in range(4):
        image = np.full((channels, size, size), i, dtype=np.uint8)
        writer.put(b"%08d" % i, caffe_pb2.Datum(channels=channels, height=size, width=size,
                                                data=image.tobytes(), label=i).SerializeToString())
    writer.close()
    return str(path)


DATA_NET = """name: "n"
layer {{ name: "train_data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ {train_transform} }}
  data_param {{ source: "{train}" batch_size: 2 backend: LMDB }} }}
layer {{ name: "test_data" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  data_param {{ source: "{test}" batch_size: 4 backend: LMDB }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""


def sharing_error(tmp_path, net_text: str, test_net_text: str | None = None) -> str:
    net = write(tmp_path, "net.prototxt", net_text)
    lines = [f'train_net: "{net}"' if test_net_text else f'net: "{net}"', "test_iter: 1",
             "test_interval: 1", "base_lr: 0.01", 'lr_policy: "fixed"', "max_iter: 1"]
    if test_net_text:
        lines.append(f'test_net: "{write(tmp_path, "test.prototxt", test_net_text)}"')
    solver = write(tmp_path, "solver.prototxt", "\n".join(lines) + "\n")
    with pytest.raises(NetError) as info:
        create_solver(read_solver_param(solver), solver_file=solver)
    message = info.value.message
    assert message.startswith(f"{solver}: ")
    return message


def test_sharing_names_data_of_another_size_with_both_sources(tmp_path):
    train, test = lmdb(tmp_path / "train_db", 3, 8), lmdb(tmp_path / "test_db", 1, 8)
    message = sharing_error(tmp_path, DATA_NET.format(train=train, test=test,
                                                      train_transform=""))
    assert message.endswith(f"layer 'ip' cannot share weights with test net #0: data 'data' "
                            f"is 3x8x8 in training ({train}) but 1x8x8 in testing ({test})")


def test_sharing_names_a_crop_that_only_one_net_makes(tmp_path):
    train, test = lmdb(tmp_path / "train_db", 1, 8), lmdb(tmp_path / "test_db", 1, 8)
    message = sharing_error(tmp_path, DATA_NET.format(train=train, test=test,
                                                      train_transform="crop_size: 6"))
    assert f"data 'data' is 1x6x6 in training ({train}, crop_size 6) but 1x8x8" in message


TWO_IP = """name: "two"
layer { name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "h"
  inner_product_param { num_output: 4 %s } }
layer { name: "%s" type: "InnerProduct" bottom: "h" top: "z"
  inner_product_param { num_output: 1 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }
"""


def test_sharing_names_two_layers_with_one_name(tmp_path):
    message = sharing_error(tmp_path, TWO_IP % ("", "ip"))
    assert message.endswith("the train net has 2 layers named 'ip' (#1 and #2); weights are "
                            "shared with the test nets (and copied from files) by layer name, "
                            "so give each its own name")


def test_sharing_names_a_layer_defined_differently(tmp_path):
    net = TWO_IP % ("", "ip2")
    message = sharing_error(tmp_path, net, test_net_text=net.replace("num_output: 4",
                                                                     "num_output: 5"))
    assert message.endswith("layer 'ip' cannot share weights with test net #0: its param 0 "
                            "is 4x3 in the train net and 5x3 in the test net while its inputs "
                            "match: the layer is defined differently in the two nets")
    message = sharing_error(tmp_path, net, test_net_text=TWO_IP % ("bias_term: false", "ip2"))
    assert message.endswith("layer 'ip' has 2 parameter blobs in the train net and 1 in test "
                            "net #0; define it alike in both")
