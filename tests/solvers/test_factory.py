"""Nets are built before the solver gets them: the factory checks the settings, reads and
builds the nets; the solver's constructor takes built nets and reads no file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pyforge.errors import SolverError
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, read_net_param
from pyforge.rng import make_rng
from pyforge.solvers import AdaGradSolver, SGDSolver, build_nets, create_solver
from tests.logcapture import capture_log
from tests.solvers.test_loop import Run


def test_a_solver_trains_nets_built_anywhere(tmp_path, monkeypatch):
    """A solver over nets built by hand, from a SolverParameter that names no net at all,
    trains exactly as the one create_solver builds from the files."""
    run = Run(tmp_path)
    param = run.param(momentum=0.9, max_iter=3, test_iter=[1], test_interval=2)
    from_files = create_solver(param, solver_file=str(tmp_path / "solver.prototxt"))
    from_files.step(3)

    nets = []
    for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        net_param = read_net_param(param.net)
        net_param.state.phase = phase
        nets.append(Net(net_param, rng=make_rng(1701)))
    bare = caffe_pb2.SolverParameter()
    bare.CopyFrom(param)
    bare.ClearField("net")

    def no_files(*args, **kwargs):
        raise AssertionError("the solver read a file")

    monkeypatch.setattr("pyforge.proto.io.read_text_proto", no_files)
    by_hand = SGDSolver(bare, nets[0], nets[1:])
    by_hand.step(3)
    for a, b in zip(by_hand.net.params["ip"], from_files.net.params["ip"]):
        np.testing.assert_array_equal(a.data, b.data)
    for a, b in zip(by_hand.history, from_files.history):
        np.testing.assert_array_equal(a.data, b.data)
    assert by_hand.test(0)[0] == from_files.test(0)[0]


def test_settings_are_checked_before_any_net_is_read(tmp_path):
    param = caffe_pb2.SolverParameter(net=str(tmp_path / "missing.prototxt"), base_lr=0.1,
                                      lr_policy="bogus")
    with pytest.raises(SolverError, match="lr_policy 'bogus'"):
        create_solver(param)
    # The solver type's own checks too (AdaGrad refuses momentum).
    param.lr_policy, param.type, param.momentum = "fixed", "AdaGrad", 0.9
    with pytest.raises(SolverError, match="momentum cannot be used with AdaGrad"):
        build_nets(AdaGradSolver, param, str(tmp_path / "solver.prototxt"))


def test_the_constructor_checks_the_settings_too(tmp_path):
    run = Run(tmp_path)
    param = run.param()
    net, test_nets = build_nets(SGDSolver, param)
    param.iter_size = 0
    with pytest.raises(SolverError, match="iter_size must be >= 1"):
        SGDSolver(param, net, test_nets)


def test_an_unseeded_solver_fills_from_the_generator_given(tmp_path):
    """pycaffe's caffe.set_random_seed: the nets of a solver without random_seed fill from
    the generator passed; a solver's own random_seed wins."""
    run = Run(tmp_path)
    param = run.param(net_options={"weight_filler": 'type: "gaussian" std: 1.0'})
    param.ClearField("random_seed")
    first, _ = build_nets(SGDSolver, param, unseeded_rng=np.random.default_rng(5))
    second, _ = build_nets(SGDSolver, param, unseeded_rng=np.random.default_rng(5))
    np.testing.assert_array_equal(first.params["ip"][0].data, second.params["ip"][0].data)
    param.random_seed = 1701
    seeded, _ = build_nets(SGDSolver, param, unseeded_rng=np.random.default_rng(5))
    assert not np.array_equal(seeded.params["ip"][0].data, first.params["ip"][0].data)


@pytest.mark.parametrize("test_iter, batch, note", [
    (2, 4, "8 items per test pass, but its data holds 10; each pass sees a different part"),
    (3, 4, "12 items per test pass, but its data holds 10; some items are scored twice"),
    (5, 2, None),
])
def test_hdf5_test_nets_get_the_coverage_warning_too(tmp_path, test_iter, batch, note):
    """HDF5Data knows its rows (the sum over its listed files), as a database its records."""
    for name, rows in (("a", 6), ("b", 4)):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["data"] = np.zeros((rows, 3), np.float32)
            f["label"] = np.zeros((rows, 1), np.float32)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'}\n{tmp_path / 'b.h5'}\n")
    (tmp_path / "net.prototxt").write_text(f"""
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{tmp_path / 'list.txt'}" batch_size: {batch} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param {{ num_output: 1 }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "label" top: "loss" }}""")
    param = caffe_pb2.SolverParameter(net=str(tmp_path / "net.prototxt"), base_lr=0.01,
                                      lr_policy="fixed", max_iter=1, test_iter=[test_iter],
                                      test_interval=10)
    with capture_log() as log:
        create_solver(param, solver_file=str(tmp_path / "solver.prototxt")).close()
    warnings = [m for level, m in log.levels() if level == "WARNING" and "Test net #0" in m]
    if note is None:
        assert warnings == []
    else:
        assert warnings == [f"Test net #0 scores test_iter {test_iter} x batch {batch} = {note}"]
