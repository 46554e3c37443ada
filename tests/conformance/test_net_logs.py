"""pyforge builds nets as Caffe does: the same construction log lines, shapes and memory, and
the same per-blob debug_info lines."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pyforge import api
from tests.logcapture import capture_log

NET_LINE = re.compile(r"^(?:.*net\.cpp:\d+\] )(.*)$")
CONSTRUCTION = ("Creating Layer", "Setting up", "Top shape:", "    with loss weight",
                "Memory required for data", "This network produces output",
                "Network initialization done.")


def _is_construction(message: str) -> bool:
    return (message.startswith(CONSTRUCTION) or " <- " in message or " -> " in message
            or message.endswith("backward computation."))


@pytest.mark.parametrize("name", ["examples_mnist_lenet", "examples_cifar10_cifar10_quick"])
def test_net_construction_lines_equal_caffes(name, caffe_ref):
    folder = caffe_ref / "shapes"
    caffe_lines = []
    for line in (folder / f"{name}.caffe.log").read_text().splitlines():
        m = NET_LINE.match(line)
        if m and _is_construction(m.group(1)):
            caffe_lines.append(m.group(1))
    with capture_log() as log:
        api.time_net(str(folder / f"{name}.prototxt"), iterations=1)
    ours = [m for m in log.messages if _is_construction(m)]
    assert ours == caffe_lines
    assert sum(1 for m in ours if m.startswith("Top shape:")) > 5


FLOAT = r"([-+]?\d[\d.e+-]*)"
DEBUG_LINE = re.compile(rf"^    \[(Forward|Backward)\] (.*?)(?:: {FLOAT}|\(.*\))$")


def _debug_lines(messages):
    out = []
    for message in messages:
        if message.startswith("    [Forward]") or message.startswith("    [Backward]"):
            numbers = [float(x) for x in re.findall(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?",
                                                      message.split(":", 1)[1])]
            label = message.split(":", 1)[0]
            out.append((label, numbers))
    return out


def test_debug_info_lines_match_caffe(in_caffe_ref, tmp_path):
    caffe_log = (in_caffe_ref / "runs" / "debug_info" / "caffe.log").read_text().splitlines()
    caffe_messages = [line.split("] ", 1)[1] for line in caffe_log if "] " in line]
    with capture_log() as log:
        api.train("runs/debug_info/solver.prototxt", weights="init/snap_iter_0.caffemodel",
                  overrides=lambda p: setattr(p, "snapshot_prefix", str(tmp_path / "s")))
    theirs = _debug_lines(caffe_messages)
    ours = _debug_lines(log.messages)
    assert [label for label, _ in ours] == [label for label, _ in theirs]
    assert len(ours) > 100
    # Before the first update both runs compute on identical weights and data: the values agree
    # to float32 summation order (Caffe sums |x| in float). Later lines inherit the training
    # noise that the pack's envelope describes, so they get a looser tolerance.
    first_update = next(i for i, (label, _) in enumerate(theirs) if "All net params" in label)
    for i, ((label, a), (_, b)) in enumerate(zip(ours, theirs)):
        rtol = 2e-5 if i <= first_update else 2e-3
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7, err_msg=f"line {i}: {label}")
    all_params = [m for m in log.levels() if "All net params" in m[1]]
    assert all_params and all(level == "ERROR" for level, _ in all_params)
