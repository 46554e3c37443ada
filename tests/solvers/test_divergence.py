"""Divergence stops training at the first non-finite value and names where it began; checks
Caffe does not make are logged up front."""

from __future__ import annotations

import re

import numpy as np

from pyforge.cli import main
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto
from pyforge.solvers.divergence import first_nonfinite
from tests.logcapture import capture_log


def lenet_solver(tmp_path, caffe_ref, base_lr="100000", extra=""):
    text = (caffe_ref / "runs" / "sgd_inv" / "solver.prototxt").read_text()
    text = text.replace("base_lr: 0.01", f"base_lr: {base_lr}")
    text = re.sub(r"max_iter: \d+", "max_iter: 6", text)
    text = re.sub(r"snapshot: \d+", "snapshot: 1", text)
    text = re.sub(r'snapshot_prefix: ".*"', f'snapshot_prefix: "{tmp_path}/snap"', text)
    path = tmp_path / "solver.prototxt"
    path.write_text(text + extra)
    return str(path)


def test_huge_learning_rate_stops_and_names_the_first_layer(in_caffe_ref, tmp_path, capsys):
    code = main(["train", lenet_solver(tmp_path, in_caffe_ref),
                 "--weights=init/snap_iter_0.caffemodel"])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("pyforge: error:")][0]
    assert "training diverged at iteration 2" in line
    assert "first non-finite value: layer 'conv2' top blob 'conv2' data (forward)" in line
    assert "lower base_lr (now 100000)" in line
    assert "the last good snapshot is" in line and "snap_iter_2.solverstate" in line
    # Nothing was snapshotted after the divergence.
    assert not (tmp_path / "snap_iter_3.caffemodel").exists()


def test_allow_nonfinite_keeps_going(in_caffe_ref, tmp_path, capsys):
    code = main(["train", lenet_solver(tmp_path, in_caffe_ref), "--allow_nonfinite",
                 "--weights=init/snap_iter_0.caffemodel"])
    assert code == 0
    assert (tmp_path / "snap_iter_6.caffemodel").exists()


def test_debug_info_adds_per_layer_statistics(in_caffe_ref, tmp_path, capsys):
    solver = lenet_solver(tmp_path, in_caffe_ref, extra="debug_info: true\n")
    with capture_log() as log:
        code = main(["train", solver, "--weights=init/snap_iter_0.caffemodel"])
    assert code == 3
    levels = log.levels()
    start = levels.index(("ERROR", "Per-layer statistics of iteration 2:"))
    stats = [m for _, m in levels[start + 1:] if m.startswith("    [")]
    assert any(re.match(r"    \[conv2\] top conv2: mean\|data\| (nan|inf)", m) for m in stats)
    assert any(m.startswith("    [conv1] param 0: mean|data|") for m in stats)


def test_first_nonfinite_orders_forward_then_backward():
    param = parse_text_proto("""name: "n" state { phase: TRAIN }
layer { name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 }
    data_filler { type: "constant" value: 1 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "h"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 1 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "z"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }
""", caffe_pb2.NetParameter(), "net")
    net = Net(param)
    net.params["ip2"][0].data[0, 0] = np.inf
    with np.errstate(invalid="ignore"):
        net.forward_backward()
    assert first_nonfinite(net) == "layer 'ip2' parameter blob 0 data"
    net.params["ip2"][0].data[0, 0] = 1
    net.clear_param_diffs()
    net.forward_backward()
    net.blob_list[net.blob_names.index("h")].diff[0, 1] = np.nan
    assert first_nonfinite(net) == "layer 'ip2' bottom blob 'h' diff (backward)"


def test_unused_policy_parameters_effective_batch_and_test_coverage(in_caffe_ref, tmp_path):
    solver = lenet_solver(tmp_path, in_caffe_ref, base_lr="0.01", extra="stepsize: 100\n")
    with capture_log() as log:
        main(["train", solver, "--weights=init/snap_iter_0.caffemodel"])
    levels = log.levels()
    assert ("WARNING", "stepsize is set but lr_policy 'inv' does not use it (it uses base_lr, "
            "gamma, power)") in levels
    assert ("INFO", "Effective batch size: 64 (batch 64 x iter_size 1)") in levels
    assert ("WARNING", "Test net #0 scores test_iter 5 x batch 100 = 500 items per test pass, "
            "but its data holds 1000; each pass sees a different part") in levels
