"""pycaffe's documented Net and Solver behaviour on small self-contained nets (DummyData, no
files but the prototxt): what pycaffe's own unit tests exercise, checked with ``import caffe``.
"""

from __future__ import annotations

import gc
from collections import OrderedDict

import numpy as np
import pytest

import caffe

CLASSES = 7

SMALL_NET = """name: "small" force_backward: true
layer {{ name: "source" type: "DummyData" top: "image" top: "target"
  dummy_data_param {{ shape {{ dim: 4 dim: 3 dim: 5 dim: 5 }} shape {{ dim: 4 }}
    data_filler {{ type: "uniform" min: -1 max: 1 }} data_filler {{ type: "constant" }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "image" top: "conv"
  param {{ decay_mult: 1 }} param {{ decay_mult: 0 }}
  convolution_param {{ num_output: 6 kernel_size: 3 pad: 2
    weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "constant" value: 1 }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "conv" top: "scores"
  inner_product_param {{ num_output: {classes}
    weight_filler {{ type: "gaussian" std: 0.1 }} bias_filler {{ type: "constant" value: -2 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "scores" bottom: "target" top: "loss" }}
"""

SOLVER = """net: "{net}"
test_iter: 3 test_interval: 4 base_lr: 0.05 momentum: 0.9 weight_decay: 0.001
lr_policy: "step" gamma: 0.5 stepsize: 3 max_iter: {max_iter}
snapshot_after_train: false snapshot_prefix: "{prefix}" {extra}
"""


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "small.prototxt"
    path.write_text(SMALL_NET.format(classes=CLASSES))
    return str(path)


@pytest.fixture
def net(net_file):
    caffe.set_random_seed(11)
    built = caffe.Net(net_file, caffe.TRAIN)
    built.blobs["target"].data[...] = np.arange(4) % CLASSES
    return built


def _solver_file(tmp_path, net_file, max_iter=12, extra="", prefix="snaps/small"):
    path = tmp_path / "solver.prototxt"
    path.write_text(SOLVER.format(net=net_file, max_iter=max_iter, extra=extra, prefix=prefix))
    return str(path)


# --- Net --------------------------------------------------------------------------------------
def test_arrays_outlive_the_net(net):
    params = [blob for blobs in net.params.values() for blob in blobs]
    blobs = list(net.blobs.values())
    net.forward()
    expected = sum(float(b.data.sum()) for b in params + blobs)
    del net
    gc.collect()
    assert sum(float(b.data.sum()) for b in params + blobs) == pytest.approx(expected)


def test_names_views_and_layer_dict(net):
    assert net._layer_names == ["source", "conv", "fc", "loss"]
    assert list(net.layer_dict) == net._layer_names
    assert [net.layer_dict[n].type for n in net._layer_names] == [
        "DummyData", "Convolution", "InnerProduct", "SoftmaxWithLoss"]
    assert net._blob_names == ["image", "target", "conv", "scores", "loss"]
    assert list(net.blobs) == net._blob_names
    assert (net.inputs, net.outputs) == ([], ["loss"])
    assert net.top_names == OrderedDict([("source", ["image", "target"]), ("conv", ["conv"]),
                                         ("fc", ["scores"]), ("loss", ["loss"])])
    assert net.bottom_names == OrderedDict([("source", []), ("conv", ["image"]),
                                            ("fc", ["conv"]), ("loss", ["scores", "target"])])
    assert list(net.params) == ["conv", "fc"]
    assert [b.data.shape for b in net.params["conv"]] == [(6, 3, 3, 3), (6,)]
    assert net.params["conv"] is net.layers[1].blobs or net.params["conv"] == net.layers[1].blobs
    assert net.blob_loss_weights == OrderedDict(
        [("image", 0.0), ("target", 0.0), ("conv", 0.0), ("scores", 0.0), ("loss", 1.0)])
    assert net._blob_loss_weights == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert net._top_ids(2) == [3] and net._bottom_ids(3) == [3, 1]
    assert [net._blobs[i] for i in net._outputs] == [net.blobs["loss"]]


def test_forward_backward_and_clear_param_diffs(net):
    out = net.forward()
    assert set(out) == {"loss"} and out["loss"].shape == ()
    # Caffe's softmax loss of the scores the arrays hold.
    scores = net.blobs["scores"].data.astype(np.float64)
    log_p = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    expected = -log_p[np.arange(4), np.arange(4) % CLASSES].mean()
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    assert net.backward() == {}  # no net inputs: nothing to return
    weights_diff = net.params["conv"][0].diff
    assert np.abs(weights_diff).max() > 0
    net.clear_param_diffs()
    assert not weights_diff.any() and not net.params["fc"][1].diff.any()


def test_forward_and_backward_of_one_layer_by_name(net):
    rng = np.random.default_rng(3)
    conv = net.blobs["conv"]
    conv.data[...] = rng.uniform(size=conv.data.shape)
    out = net.forward(start="fc", end="fc")
    assert set(out) == {"scores"}
    w, b = (p.data for p in net.params["fc"])
    np.testing.assert_allclose(out["scores"], conv.data.reshape(4, -1) @ w.T + b, rtol=1e-4,
                               atol=1e-5)
    top_diff = rng.uniform(size=net.blobs["scores"].diff.shape).astype(np.float32)
    net.blobs["scores"].diff[...] = top_diff
    back = net.backward(start="fc", end="fc")
    assert set(back) == {"conv"}
    np.testing.assert_allclose(back["conv"], (top_diff @ w).reshape(conv.data.shape), rtol=1e-4,
                               atol=1e-6)
    with pytest.raises(ValueError):  # pycaffe's list.index of an unknown layer name
        net.forward(start="nowhere")


def test_forward_and_backward_by_index(net):
    """pycaffe's bindings under forward()/backward(): Net::ForwardFromTo and BackwardFromTo."""
    net.forward()
    before = net.blobs["scores"].data.copy()
    net.params["fc"][1].data[...] += 1
    loss = net._forward(2, 3)
    np.testing.assert_allclose(net.blobs["scores"].data, before + 1, rtol=1e-6, atol=1e-6)
    assert loss == pytest.approx(float(net.blobs["loss"].data))
    net.clear_param_diffs()
    net._backward(3, 2)
    assert np.abs(net.params["fc"][0].diff).max() > 0
    assert not net.params["conv"][0].diff.any()  # layer 1 was not run backward


def test_save_and_both_constructor_forms(net, net_file, tmp_path):
    path = str(tmp_path / "small.caffemodel")
    net.save(path)
    legacy = caffe.Net(net_file, path, caffe.TRAIN)  # pycaffe's older form (deprecated)
    named = caffe.Net(net_file, caffe.TRAIN, weights=path)
    for other in (legacy, named):
        for name, blobs in net.params.items():
            for mine, theirs in zip(blobs, other.params[name]):
                np.testing.assert_array_equal(mine.data, theirs.data)


def test_save_hdf5_and_load_hdf5(net, net_file, tmp_path):
    path = str(tmp_path / "small.caffemodel.h5")
    net.save_hdf5(path)
    other = caffe.Net(net_file, caffe.TRAIN)
    assert not np.array_equal(other.params["fc"][0].data, net.params["fc"][0].data)
    other.load_hdf5(path)
    for name, blobs in net.params.items():
        for mine, theirs in zip(blobs, other.params[name]):
            np.testing.assert_array_equal(mine.data, theirs.data)


LEVELS_AND_STAGES = """
layer { name: "data" type: "DummyData" top: "data"
  dummy_data_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "always" type: "InnerProduct" bottom: "data" top: "always"
  inner_product_param { num_output: 1 } }
layer { name: "level0" type: "InnerProduct" bottom: "data" top: "level0"
  include { min_level: 0 max_level: 0 } inner_product_param { num_output: 1 } }
layer { name: "level1+" type: "InnerProduct" bottom: "data" top: "level1+"
  include { min_level: 1 } inner_product_param { num_output: 1 } }
layer { name: "stageA" type: "InnerProduct" bottom: "data" top: "stageA"
  include { stage: "A" } inner_product_param { num_output: 1 } }
layer { name: "AorB" type: "InnerProduct" bottom: "data" top: "AorB"
  include { stage: "A" } include { stage: "B" } inner_product_param { num_output: 1 } }
layer { name: "AandB" type: "InnerProduct" bottom: "data" top: "AandB"
  include { stage: "A" stage: "B" } inner_product_param { num_output: 1 } }
layer { name: "train" type: "InnerProduct" bottom: "data" top: "train"
  include { phase: TRAIN } inner_product_param { num_output: 1 } }
"""


@pytest.mark.parametrize("phase, level, stages, expected", [
    (caffe.TEST, 0, None, ["always", "level0"]),
    (caffe.TEST, 1, None, ["always", "level1+"]),
    (caffe.TEST, 0, ["A"], ["always", "level0", "stageA", "AorB"]),
    (caffe.TEST, 0, ["B"], ["always", "level0", "AorB"]),
    (caffe.TEST, 0, ["A", "B"], ["always", "level0", "stageA", "AorB", "AandB"]),
    (caffe.TRAIN, 2, ["B"], ["always", "level1+", "AorB", "train"]),
])
def test_phase_level_and_stages_select_layers(tmp_path, phase, level, stages, expected):
    path = tmp_path / "levels.prototxt"
    path.write_text(LEVELS_AND_STAGES)
    net = caffe.Net(str(path), phase, level=level, stages=stages)
    # (Caffe's blobs include the Split layers' tops: data_data_0_split_<i>.)
    assert [b for b in net.blobs if "data" not in b] == expected
    assert net._layer_names[1] == "data_data_0_split"
    assert list(net.blobs["data"].shape) == [1, 1, 4, 4]


def test_set_input_arrays_checks_as_pycaffe_does(tmp_path):
    path = tmp_path / "memory.prototxt"
    path.write_text('layer { name: "m" type: "MemoryData" top: "x" top: "y" memory_data_param '
                    "{ batch_size: 2 channels: 1 height: 2 width: 2 } }")
    net = caffe.Net(str(path), caffe.TEST)
    data = np.arange(16, dtype=np.float32).reshape(4, 1, 2, 2)
    net.set_input_arrays(data, np.array([1, 2, 3, 4], dtype=np.float32))
    net.forward()
    np.testing.assert_array_equal(net.blobs["x"].data, data[:2])
    np.testing.assert_array_equal(net.blobs["y"].data.ravel(), [1, 2])
    with pytest.raises(RuntimeError, match="multiple of batch_size"):
        net._set_input_arrays(data[:3], np.zeros((3, 1, 1, 1), np.float32))
    with pytest.raises(RuntimeError, match="float32"):
        net.set_input_arrays(data.astype(np.float64), np.zeros(4, np.float32))
    small = caffe.Net(str(tmp_path / "memory.prototxt"), caffe.TEST)
    other = tmp_path / "input.prototxt"
    other.write_text('layer { name: "i" type: "Input" top: "x" input_param { shape { dim: 1 } } }')
    with pytest.raises(RuntimeError, match="first layer is a MemoryData layer"):
        caffe.Net(str(other), caffe.TEST).set_input_arrays(data, np.zeros(4, np.float32))
    assert small.blobs["x"].data.shape == (2, 1, 2, 2)


# --- Solver -----------------------------------------------------------------------------------
def test_solve_runs_to_max_iter_and_writes_only_caffes_files(tmp_path, net_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snaps").mkdir()
    solver = caffe.SGDSolver(_solver_file(tmp_path, net_file, extra="display: 100"))
    assert solver.iter == 0 and len(solver.test_nets) == 1
    solver.solve()
    assert solver.iter == 12
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == []
    assert not list(tmp_path.rglob("*.jsonl"))  # pycaffe writes no metrics file
    solver.snapshot()
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [
        "small_iter_12.caffemodel", "small_iter_12.solverstate"]


def test_the_metrics_file_when_asked_for(tmp_path, net_file):
    wanted = tmp_path / "asked.jsonl"
    solver = caffe.SGDSolver(_solver_file(tmp_path, net_file, max_iter=4,
                                          extra=f'metrics_file: "{wanted}" display: 1'))
    assert solver.metrics_file == str(wanted)
    solver.solve()
    assert len(wanted.read_text().splitlines()) >= 4
    other = caffe.get_solver(_solver_file(tmp_path, net_file, max_iter=2, extra="display: 1"))
    assert other.metrics_file is None
    other.metrics_file = tmp_path / "set.jsonl"
    other.solve()
    assert (tmp_path / "set.jsonl").read_text().count('"kind":"train"') == 2


def test_apply_update_is_one_sgd_step(tmp_path, net_file):
    solver = caffe.SGDSolver(_solver_file(tmp_path, net_file))
    weights = solver.net.layers[1].blobs[0]
    data = weights.data[...]  # a view: the update happens in place
    data[...] = 0
    weights.diff[...] = 1
    assert solver.lr == pytest.approx(0.05)
    solver.apply_update()
    np.testing.assert_allclose(data, -0.05, rtol=1e-6)
    assert solver.net.layers[1].blobs[0].data is data or np.shares_memory(
        solver.net.layers[1].blobs[0].data, data)


def test_lr_follows_the_policy(tmp_path, net_file):
    solver = caffe.SGDSolver(_solver_file(tmp_path, net_file))
    rates = []
    for _ in range(7):
        rates.append(solver.lr)
        solver.step(1)
    # step policy: base_lr * gamma ^ floor(iter / stepsize)
    assert rates == pytest.approx([0.05] * 3 + [0.025] * 3 + [0.0125])
    assert caffe.AdamSolver(_solver_file(tmp_path, net_file)).lr == pytest.approx(0.05)


def test_nets_outlive_the_solver(tmp_path, net_file):
    solver = caffe.SGDSolver(_solver_file(tmp_path, net_file))
    nets = [solver.net, *solver.test_nets]
    solver.step(2)
    expected = [float(b.data.sum()) for n in nets for b in n.blobs.values()]
    del solver
    gc.collect()
    assert [float(b.data.sum()) for n in nets for b in n.blobs.values()] == expected
    assert nets[1].forward()["loss"].shape == ()


def test_solver_param_and_restore(tmp_path, net_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snaps").mkdir()
    solver = caffe.get_solver(_solver_file(tmp_path, net_file))
    assert (solver.param.max_iter, solver.param.base_lr) == (12, pytest.approx(0.05))
    solver.step(3)
    solver.snapshot()
    solver.step(2)
    after_five = solver.net.params["fc"][0].data.copy()
    again = caffe.SGDSolver(_solver_file(tmp_path, net_file))
    again.restore("snaps/small_iter_3.solverstate")
    assert again.iter == 3
    again.step(2)
    np.testing.assert_array_equal(again.net.params["fc"][0].data, after_five)
