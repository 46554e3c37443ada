"""pyforge's own snapshots resume exactly: N straight iterations equal N/2 + snapshot + resume
+ N/2, bitwise, for every solver type, with data cursors, Dropout and crop/mirror draws."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge import api
from pyforge.cli import main
from pyforge.io.snapshot import read_solver_state
from pyforge.proto import caffe_pb2, read_binary_proto
from tests.conformance.traces import parse_messages
from tests.logcapture import capture_log

NET = """name: "ResumeNet"
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 crop_size: 24 mirror: true }}
  data_param {{ source: "{root}/mnist/mnist_train_lmdb" batch_size: 16 backend: LMDB }} }}
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 crop_size: 24 mirror: true }}
  data_param {{ source: "{root}/mnist/mnist_test_lmdb" batch_size: 20 backend: LMDB }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 5 stride: 2
    weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  param {{ lr_mult: 1 }} param {{ lr_mult: 2 }}
  inner_product_param {{ num_output: 20 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1"
  dropout_param {{ dropout_ratio: 0.3 }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""

SOLVERS = {
    "SGD": 'base_lr: 0.05 momentum: 0.9 weight_decay: 0.0005 lr_policy: "multistep" '
           "gamma: 0.5 stepvalue: 3 stepvalue: 7",
    "Nesterov": 'base_lr: 0.05 momentum: 0.9 lr_policy: "inv" gamma: 0.01 power: 0.75',
    "AdaGrad": 'base_lr: 0.05 lr_policy: "fixed" weight_decay: 0.001',
    "RMSProp": 'base_lr: 0.005 lr_policy: "step" gamma: 0.5 stepsize: 4 rms_decay: 0.95',
    "AdaDelta": 'base_lr: 1.0 momentum: 0.95 delta: 1e-6 lr_policy: "fixed"',
    "Adam": 'base_lr: 0.002 momentum: 0.9 momentum2: 0.999 lr_policy: "fixed"',
}


def write_solver(tmp_path, root, solver_type, prefix, max_iter=10, snapshot=5, fmt="BINARYPROTO",
                 extra=""):
    net = tmp_path / "net.prototxt"
    net.write_text(NET.format(root=root))
    settings = SOLVERS[solver_type]
    path = tmp_path / f"solver_{prefix}.prototxt"
    path.write_text(f'''net: "{net}"
type: "{solver_type}"
{settings}
test_iter: 2
test_interval: 4
display: 1
average_loss: 3
max_iter: {max_iter}
snapshot: {snapshot}
snapshot_format: {fmt}
snapshot_prefix: "{tmp_path / prefix}"
random_seed: 7
{extra}
''')
    return str(path)


def final_state(tmp_path, prefix, iteration, ext=""):
    model = read_binary_proto(tmp_path / f"{prefix}_iter_{iteration}.caffemodel",
                              caffe_pb2.NetParameter()) if not ext else None
    state = read_solver_state(str(tmp_path / f"{prefix}_iter_{iteration}.solverstate{ext}"))
    weights = ([np.array(b.data, dtype=np.float32) for layer in model.layer for b in layer.blobs]
               if model is not None else None)
    return weights, state


@pytest.mark.parametrize("solver_type", list(SOLVERS))
def test_straight_equals_snapshot_and_resume_bitwise(solver_type, caffe_ref, tmp_path):
    straight = write_solver(tmp_path, caffe_ref, solver_type, "a")
    with capture_log() as log_a:
        api.train(straight)
    resumed = write_solver(tmp_path, caffe_ref, solver_type, "b")
    with capture_log() as log_b:
        api.train(resumed, snapshot=str(tmp_path / "a_iter_5.solverstate"))
    weights_a, state_a = final_state(tmp_path, "a", 10)
    weights_b, state_b = final_state(tmp_path, "b", 10)
    assert len(weights_a) == 6
    for wa, wb in zip(weights_a, weights_b):
        assert np.array_equal(wa, wb)
    expected_history = 12 if solver_type in ("AdaDelta", "Adam") else 6
    assert len(state_a.history) == len(state_b.history) == expected_history
    for ha, hb in zip(state_a.history, state_b.history):
        assert np.array_equal(ha, hb)
    assert state_a.current_step == state_b.current_step
    # The displayed (smoothed) losses, lr and tests of iterations 5..10 are the same lines.
    trace_a, trace_b = parse_messages(log_a.messages), parse_messages(log_b.messages)
    assert {i: v for i, v in trace_a.loss.items() if i >= 5} == trace_b.loss
    assert {i: v for i, v in trace_a.lr.items() if i >= 5} == trace_b.lr
    assert [t for t in trace_a.tests if t[0] >= 5] == trace_b.tests


def test_hdf5_snapshots_resume_exactly_and_are_caffes_layout(caffe_ref, tmp_path):
    import h5py

    straight = write_solver(tmp_path, caffe_ref, "Adam", "a", fmt="HDF5")
    api.train(straight)
    resumed = write_solver(tmp_path, caffe_ref, "Adam", "b", fmt="HDF5")
    api.train(resumed, snapshot=str(tmp_path / "a_iter_5.solverstate.h5"))
    with h5py.File(tmp_path / "a_iter_10.caffemodel.h5") as fa, \
            h5py.File(tmp_path / "b_iter_10.caffemodel.h5") as fb:
        assert set(fa["data"]) == {"mnist", "conv1", "pool1", "ip1", "relu1", "drop1", "ip2",
                                   "loss"}
        assert list(fa["data/conv1"]) == ["0", "1"] and fa["data/conv1/0"].shape == (4, 1, 5, 5)
        for layer in ("conv1", "ip1", "ip2"):
            for i in ("0", "1"):
                assert np.array_equal(fa[f"data/{layer}/{i}"][()], fb[f"data/{layer}/{i}"][()])
    with h5py.File(tmp_path / "a_iter_10.solverstate.h5") as f:
        assert int(f["iter"][0]) == 10 and int(f["current_step"][0]) == 0
        assert f["learned_net"][()].decode().endswith("a_iter_10.caffemodel.h5")
        assert len(f["history"]) == 12
    _, state_a = final_state(tmp_path, "a", 10, ".h5")
    _, state_b = final_state(tmp_path, "b", 10, ".h5")
    for ha, hb in zip(state_a.history, state_b.history):
        assert np.array_equal(ha, hb)


def test_caffe_state_restarts_data_but_pyforge_state_continues(caffe_ref, tmp_path):
    """A state without pyforge's field (as Caffe writes it) restores what Caffe restores."""
    write_solver(tmp_path, caffe_ref, "SGD", "a")
    api.train(str(tmp_path / "solver_a.prototxt"))
    state = read_binary_proto(tmp_path / "a_iter_5.solverstate", caffe_pb2.SolverState())
    assert state.HasField("pyforge_state")
    state.ClearField("pyforge_state")
    (tmp_path / "caffe_iter_5.solverstate").write_bytes(state.SerializeToString())
    resumed = write_solver(tmp_path, caffe_ref, "SGD", "c")
    api.train(resumed, snapshot=str(tmp_path / "caffe_iter_5.solverstate"))
    weights_a, _ = final_state(tmp_path, "a", 10)
    weights_c, _ = final_state(tmp_path, "c", 10)
    # The data cursor restarted, so the run differs from the uninterrupted one.
    assert not all(np.array_equal(a, c) for a, c in zip(weights_a, weights_c))


def run_cli(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def test_resume_into_another_solver_type_is_refused(caffe_ref, tmp_path, capsys):
    api.train(write_solver(tmp_path, caffe_ref, "Nesterov", "a"))
    other = write_solver(tmp_path, caffe_ref, "SGD", "b")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = run_cli(["train", other, "--snapshot", str(tmp_path / "a_iter_5.solverstate")],
                        capsys)
    assert code == 1 and "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("pyforge: error:")][0]
    assert "written by solver type Nesterov" in line and "this solver's type is SGD" in line
    assert "--force" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_force_resumes_a_compatible_history_anyway(caffe_ref, tmp_path, capsys):
    api.train(write_solver(tmp_path, caffe_ref, "Nesterov", "a"))
    other = write_solver(tmp_path, caffe_ref, "SGD", "b")
    code, err = run_cli(["train", other, "--snapshot", str(tmp_path / "a_iter_5.solverstate"),
                         "--force"], capsys)
    assert code == 0
    assert (tmp_path / "b_iter_10.caffemodel").exists()


def test_resume_into_another_net_is_refused_naming_the_layer(caffe_ref, tmp_path, capsys):
    api.train(write_solver(tmp_path, caffe_ref, "SGD", "a"))
    other = write_solver(tmp_path, caffe_ref, "SGD", "b")
    net = tmp_path / "net.prototxt"
    net.write_text(net.read_text().replace("num_output: 20", "num_output: 30"))
    code, err = run_cli(["train", other, "--snapshot", str(tmp_path / "a_iter_5.solverstate")],
                        capsys)
    assert code == 1
    line = [x for x in err.splitlines() if x.startswith("pyforge: error:")][0]
    assert "another net" in line and "layer 'ip1'" in line
    assert "InnerProduct (20, 100), (20,) in the snapshot" in line
    assert "InnerProduct (30, 100), (30,) here" in line
    assert not (tmp_path / "b_iter_10.caffemodel").exists()


def test_resume_from_caffemodel_finds_its_solverstate(caffe_ref, tmp_path):
    api.train(write_solver(tmp_path, caffe_ref, "SGD", "a"))
    with capture_log() as log:
        api.train(write_solver(tmp_path, caffe_ref, "SGD", "b"),
                  snapshot=str(tmp_path / "a_iter_5.caffemodel"))
    assert any("resuming from its partner" in m for m in log.messages)
    weights_a, _ = final_state(tmp_path, "a", 10)
    weights_b, _ = final_state(tmp_path, "b", 10)
    assert all(np.array_equal(a, b) for a, b in zip(weights_a, weights_b))


def test_changed_settings_are_logged_at_resume(caffe_ref, tmp_path):
    api.train(write_solver(tmp_path, caffe_ref, "SGD", "a"))
    resumed = write_solver(tmp_path, caffe_ref, "SGD", "b")
    path = tmp_path / "solver_b.prototxt"
    path.write_text(path.read_text().replace("base_lr: 0.05", "base_lr: 0.01"))
    with capture_log() as log:
        api.train(resumed, snapshot=str(tmp_path / "a_iter_5.solverstate"))
    assert "Solver setting changed since the snapshot: base_lr: 0.05 -> 0.01" in log.messages
