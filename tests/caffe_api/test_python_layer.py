"""A Python loss layer written against ``caffe.Layer``, in a net and in a solver."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import caffe
from pyforge.layers.python_layer import PythonLayerBase

# pycaffe's examples/pycaffe/layers/pyloss.py, as a pycaffe user writes it.
PYLOSS = (Path(__file__).resolve().parents[1] / "data" / "pycaffe" / "pyloss.py").read_text()

NET = """name: "regression" {force}
layer {{ name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param {{ shape {{ dim: 8 dim: 5 }} shape {{ dim: 8 dim: 2 }}
    data_filler {{ type: "gaussian" std: 1 }} data_filler {{ type: "gaussian" std: 1 }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "x" top: "pred"
  inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.5 }} }} }}
layer {{ name: "loss" type: "{loss_type}" bottom: "pred" bottom: "y" top: "loss" {loss_extra} }}
"""

PYTHON_LOSS = 'python_param {{ module: "{module}" layer: "EuclideanLossLayer" }} loss_weight: 1'


@pytest.fixture
def pyloss_nets(tmp_path, monkeypatch):
    """(python-loss net file, built-in EuclideanLoss net file), the module on sys.path."""
    module = f"pyloss_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(PYLOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    python_net = tmp_path / "python_loss.prototxt"
    python_net.write_text(NET.format(force="force_backward: true", loss_type="Python",
                                     loss_extra=PYTHON_LOSS.format(module=module)))
    builtin_net = tmp_path / "builtin_loss.prototxt"
    builtin_net.write_text(NET.format(force="force_backward: true", loss_type="EuclideanLoss",
                                      loss_extra=""))
    yield str(python_net), str(builtin_net)
    sys.modules.pop(module, None)


def test_caffe_layer_is_the_python_layer_base():
    assert caffe.Layer is PythonLayerBase


def test_python_loss_layer_matches_the_builtin_loss(pyloss_nets):
    python_file, builtin_file = pyloss_nets
    caffe.set_random_seed(3)
    python_net = caffe.Net(python_file, caffe.TRAIN)
    caffe.set_random_seed(3)
    builtin_net = caffe.Net(builtin_file, caffe.TRAIN)
    assert python_net.layers[-1].type == "Python"
    np.testing.assert_array_equal(python_net.params["fc"][0].data,
                                  builtin_net.params["fc"][0].data)
    assert python_net.blob_loss_weights["loss"] == 1.0
    # The Python layer's loss is (1,), the built-in one a scalar, as in Caffe.
    ours = python_net.forward()["loss"].item()
    theirs = builtin_net.forward()["loss"].item()
    np.testing.assert_array_equal(python_net.blobs["x"].data, builtin_net.blobs["x"].data)
    assert ours == pytest.approx(theirs, rel=1e-6)
    python_net.backward()
    builtin_net.backward()
    for blob in ("pred", "x"):
        np.testing.assert_allclose(python_net.blobs[blob].diff, builtin_net.blobs[blob].diff,
                                   rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(python_net.params["fc"][0].diff,
                               builtin_net.params["fc"][0].diff, rtol=1e-5, atol=1e-7)


def test_a_solver_trains_through_the_python_loss(pyloss_nets, tmp_path):
    python_file, builtin_file = pyloss_nets
    losses = {}
    for name, net_file in (("python", python_file), ("builtin", builtin_file)):
        solver_file = tmp_path / f"{name}_solver.prototxt"
        solver_file.write_text(f'net: "{net_file}"\nbase_lr: 0.1\nlr_policy: "fixed"\n'
                               f'momentum: 0.9\nmax_iter: 10\nrandom_seed: 7\n'
                               f'snapshot_after_train: false\n'
                               f'snapshot_prefix: "{tmp_path / name}"\n')
        solver = caffe.SGDSolver(str(solver_file))
        seen = []
        solver.add_callback(lambda: None,
                            lambda s=solver, out=seen: out.append(s.net.blobs["loss"].data.item()))
        solver.step(10)
        losses[name] = seen
    np.testing.assert_allclose(losses["python"], losses["builtin"], rtol=1e-5)
    assert losses["python"][-1] < losses["python"][0]


# --- Python layers as pycaffe's tests use them ------------------------------------------------
LAYERS = textwrap.dedent('''
    import caffe


    class TimesTen(caffe.Layer):
        def setup(self, bottom, top):
            pass

        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].data.shape)

        def forward(self, bottom, top):
            top[0].data[...] = 10 * bottom[0].data

        def backward(self, top, propagate_down, bottom):
            bottom[0].diff[...] = 10 * top[0].diff


    class TimesParam(caffe.Layer):
        def setup(self, bottom, top):
            try:
                self.factor = float(self.param_str)
            except ValueError:
                raise ValueError("param_str must be a number")

        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].data.shape)

        def forward(self, bottom, top):
            top[0].data[...] = self.factor * bottom[0].data

        def backward(self, top, propagate_down, bottom):
            bottom[0].diff[...] = self.factor * top[0].diff


    class FailsInSetup(caffe.Layer):
        def setup(self, bottom, top):
            raise RuntimeError


    class FailsInForward(TimesTen):
        def forward(self, bottom, top):
            raise KeyError("no such thing")


    class OneParameter(caffe.Layer):
        def setup(self, bottom, top):
            self.blobs.add_blob(1)
            self.blobs[0].data[0] = 0

        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].data.shape)

        def forward(self, bottom, top):
            pass

        def backward(self, top, propagate_down, bottom):
            self.blobs[0].diff[0] = 1


    class Phase(caffe.Layer):
        def setup(self, bottom, top):
            pass

        def reshape(self, bottom, top):
            top[0].reshape()

        def forward(self, bottom, top):
            top[0].data[()] = self.phase
''')


@pytest.fixture
def layer_module(tmp_path, monkeypatch):
    """A module of pycaffe-style layers on sys.path, and a helper writing nets that use it."""
    module = f"layers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))

    def net_file(*classes, params=(), with_input=True) -> str:
        text = "name: 'pythonnet' force_backward: true\n"
        if with_input:
            text += "input: 'data' input_shape { dim: 10 dim: 9 dim: 8 }\n"
        bottom = "data"
        for i, cls in enumerate(classes):
            param_str = f" param_str: '{params[i]}'" if i < len(params) else ""
            bottoms = f"bottom: '{bottom}'" if with_input else ""
            text += (f"layer {{ type: 'Python' name: 'l{i}' {bottoms} top: 't{i}' python_param "
                     f"{{ module: '{module}' layer: '{cls}'{param_str} }} }}\n")
            bottom = f"t{i}"
        path = tmp_path / f"net_{'_'.join(classes)}.prototxt"
        path.write_text(text)
        return str(path)

    yield net_file
    sys.modules.pop(module, None)


def test_chained_layers_forward_backward_and_reshape(layer_module):
    net = caffe.Net(layer_module("TimesTen", "TimesTen", "TimesTen"), caffe.TRAIN)
    net.blobs["data"].data[...] = 8
    net.forward()
    assert (net.blobs["t2"].data == 8000).all()
    net.blobs["t2"].diff[...] = 7
    net.backward()
    assert (net.blobs["data"].diff == 7000).all()
    net.blobs["data"].reshape(4, 4, 4, 4)
    net.forward()
    assert all(blob.data.shape == (4, 4, 4, 4) for blob in net.blobs.values())


def test_param_str_reaches_the_layer(layer_module):
    net = caffe.Net(layer_module("TimesParam", "TimesParam", params=("10", "2")), caffe.TRAIN)
    net.blobs["data"].data[...] = 8
    net.forward()
    assert (net.blobs["t1"].data == 160).all()
    net.blobs["t1"].diff[...] = 7
    net.backward()
    assert (net.blobs["data"].diff == 140).all()


def test_the_users_exceptions_reach_the_caller_as_themselves(layer_module):
    with pytest.raises(RuntimeError) as info:
        caffe.Net(layer_module("FailsInSetup"), caffe.TEST)
    assert type(info.value) is RuntimeError
    (note,) = info.value.__notes__
    assert note.startswith("raised in setup of layer 'l0' (Python layers_")
    assert note.endswith(".FailsInSetup)")
    with pytest.raises(ValueError, match="param_str must be a number"):
        caffe.Net(layer_module("TimesParam", params=("ten",)), caffe.TEST)
    net = caffe.Net(layer_module("FailsInForward"), caffe.TEST)
    try:
        net.forward()
    except KeyError as exc:  # what a pycaffe script writes
        assert exc.args == ("no such thing",)
        assert "raised in forward of layer 'l0'" in exc.__notes__[0]
    else:
        pytest.fail("the layer's KeyError did not reach the caller")


def test_a_layer_with_a_parameter_trains_saves_and_shares(layer_module, tmp_path):
    net_file = layer_module("OneParameter")
    net = caffe.Net(net_file, caffe.TRAIN)
    net.forward()
    net.backward()
    layer = net.layers[net._layer_names.index("l0")]
    assert (layer.blobs[0].data[0], layer.blobs[0].diff[0]) == (0, 1)
    layer.blobs[0].data[0] += layer.blobs[0].diff[0]
    path = str(tmp_path / "one.caffemodel")
    net.save(path)
    layer.blobs[0].data[0] = -1
    net.copy_from(path)
    assert layer.blobs[0].data[0] == 1
    other = caffe.Net(net_file, caffe.TRAIN)
    other.share_with(net)
    assert other.layers[other._layer_names.index("l0")].blobs[0].data[0] == 1
    assert list(net.params) == ["l0"]


def test_a_layer_sees_the_nets_phase(layer_module):
    net_file = layer_module("Phase", with_input=False)
    for phase in (caffe.TRAIN, caffe.TEST):
        assert caffe.Net(net_file, phase).forward()["t0"] == phase
