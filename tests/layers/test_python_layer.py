"""The Python layer: a user module next to the net prototxt, used as pycaffe uses it."""

from __future__ import annotations

import re
import sys
import textwrap
import uuid

import numpy as np
import pytest

from pyforge.errors import NetError, user_code_error_line
from pyforge.layers.python_layer import PythonLayerBase
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, read_net_param
from tests.logcapture import capture_log

# pycaffe's examples/pycaffe/layers/pyloss.py, written against pyforge's base class.
PYLOSS = '''
import numpy as np

from pyforge.layers.python_layer import PythonLayerBase as Layer


class EuclideanLossLayer(Layer):
    """Euclidean loss, as in pycaffe's example; param_str scales it."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")
        self.factor = float(self.param_str) if self.param_str else 1.0
        self.seen_phase = self.phase

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = self.factor * np.sum(self.diff ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if not propagate_down[i]:
                continue
            sign = 1 if i == 0 else -1
            bottom[i].diff[...] = self.factor * sign * self.diff / bottom[i].num


class BiasLayer(Layer):
    """y = x + b with a learnable bias b (one per channel)."""

    def setup(self, bottom, top):
        self.blobs.add_blob(bottom[0].channels)
        self.blobs[0].data[...] = 0.5

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data + self.blobs[0].data[None, :]

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff += top[0].diff.sum(axis=0)
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff


class Broken(Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        raise ValueError("boom: bad input\\nsecond line")

    def backward(self, top, propagate_down, bottom):
        pass


NOT_A_CLASS = 3
'''

NET = '''
name: "pynet"
layer {{ name: "in" type: "Input" top: "x" top: "y"
        input_param {{ shape {{ dim: 4 dim: 3 }} shape {{ dim: 4 dim: 3 }} }} }}
layer {{ name: "bias" type: "Python" bottom: "x" top: "xb"
        param {{ lr_mult: 2 }}
        python_param {{ module: "{module}" layer: "BiasLayer" }} }}
layer {{ name: "loss" type: "Python" bottom: "xb" bottom: "y" top: "loss" loss_weight: 1
        python_param {{ module: "{module}" layer: "{loss}" param_str: "{param_str}" }} }}
'''


@pytest.fixture
def module_dir(tmp_path):
    """A uniquely named layer module beside where the net prototxt goes; unloaded afterwards."""
    name = f"pyforge_test_layers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PYLOSS))
    yield tmp_path, name
    sys.modules.pop(name, None)


def _net(folder, module, loss="EuclideanLossLayer", param_str="2", phase=caffe_pb2.TRAIN):
    path = folder / "net.prototxt"
    path.write_text(NET.format(module=module, loss=loss, param_str=param_str))
    param = read_net_param(path)
    param.state.phase = phase
    return Net(param, rng=np.random.default_rng(0), source_file=str(path))


def _feed(net):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = rng.standard_normal((4, 3)).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = y
    return x, y


def test_python_loss_layer_from_the_nets_folder(module_dir):
    folder, module = module_dir
    assert str(folder) not in sys.path
    with capture_log() as log:
        net = _net(folder, module)
    assert f"Python layer module '{module}' imported from {folder} (the net's folder)" in (
        log.messages)
    assert str(folder) not in sys.path
    x, y = _feed(net)
    loss = net.forward_backward()
    xb = x + 0.5
    expected = 2.0 * np.sum((xb - y) ** 2) / 4 / 2
    assert loss == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(net.blobs["loss"].data, expected, rtol=1e-6)
    # The Python bias layer's blob is a learnable parameter of the net, with its lr_mult.
    bias = net.layer_by_name("bias")
    assert [b.shape for b in bias.blobs] == [(3,)]
    assert [(p.layer, p.lr_mult) for p in net.learnable] == [("bias", 2.0)]
    np.testing.assert_allclose(bias.blobs[0].diff, (2.0 * (xb - y) / 4).sum(axis=0), rtol=1e-5)
    # Backward accumulates into the param diff, as Caffe's do.
    net.backward_all()
    np.testing.assert_allclose(bias.blobs[0].diff, 2 * (2.0 * (xb - y) / 4).sum(axis=0),
                               rtol=1e-5)


def test_param_str_and_phase_reach_the_user_object(module_dir):
    folder, module = module_dir
    for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        net = _net(folder, module, param_str="0.25", phase=phase)
        impl = net.layer_by_name("loss").impl
        assert impl.param_str == "0.25" and impl.factor == 0.25
        assert impl.seen_phase == phase
        assert isinstance(impl, PythonLayerBase)
        assert impl.layer_param.python_param.layer == "EuclideanLossLayer"


def test_python_weights_save_and_load(module_dir):
    folder, module = module_dir
    net = _net(folder, module)
    net.layer_by_name("bias").blobs[0].data[...] = [1, 2, 3]
    other = _net(folder, module)
    other.copy_trained_layers_from(net.to_proto(), "w.caffemodel")
    np.testing.assert_array_equal(other.layer_by_name("bias").blobs[0].data, [1, 2, 3])


def test_module_on_sys_path():
    param = caffe_pb2.NetParameter()
    param.layer.add(name="in", type="Input", top=["x"]).input_param.shape.add(dim=[2, 3, 2])
    py = param.layer.add(name="py", type="Python", bottom=["x"], top=["y", "z"])
    py.python_param.module = "tests.layers.grad_cases_python_layer"
    py.python_param.layer = "ScaledProductLayer"
    py.python_param.param_str = "3"
    net = Net(param, rng=np.random.default_rng(0))
    net.blobs["x"].data[...] = 1
    net.forward_loss()
    np.testing.assert_allclose(net.blobs["y"].data[0, :, 0], 3 * np.linspace(-1.5, 1.5, 3))
    np.testing.assert_array_equal(net.blobs["z"].data, 1)


# --- errors ---------------------------------------------------------------------------------------
def test_missing_module_is_one_clear_line(tmp_path):
    with pytest.raises(NetError) as info:
        _net(tmp_path, "no_such_module_xyz")
    message = str(info.value)
    assert message.startswith("layer 'bias' (Python no_such_module_xyz.BiasLayer): cannot "
                              "import module 'no_such_module_xyz' for class 'BiasLayer'")
    assert f"nor in the net's folder {tmp_path}" in message
    assert "\n" not in message
    # pycaffe raises the ImportError; so does pyforge (with where it looked).
    assert isinstance(info.value, ModuleNotFoundError)


def test_missing_class_is_an_error(module_dir):
    folder, module = module_dir
    with pytest.raises(NetError, match=rf"layer 'loss' \(Python {module}.Nope\): class 'Nope' "
                                       rf"not found in module '{module}'"):
        _net(folder, module, loss="Nope")
    with pytest.raises(NetError, match="class 'NOT_A_CLASS' is not a class"):
        _net(folder, module, loss="NOT_A_CLASS")


def test_exception_in_user_code_keeps_its_type_and_message(module_dir):
    """As in pycaffe, the user's exception reaches the caller as itself; a PEP 678 note names
    the layer, and the CLI's one line says where it came from."""
    folder, module = module_dir
    net = _net(folder, module, loss="Broken")
    with pytest.raises(ValueError) as info:
        net.forward_loss()
    assert type(info.value) is ValueError
    assert str(info.value) == "boom: bad input\nsecond line"
    assert info.value.__notes__ == [f"raised in forward of layer 'loss' (Python {module}.Broken)"]
    line = user_code_error_line(info.value)
    assert line.startswith(f"layer 'loss' (Python {module}.Broken): forward raised "
                           "ValueError: boom: bad input at ")
    assert f"{module}.py:" in line and "\n" not in line
    assert user_code_error_line(ValueError("not from a layer")) is None


def test_the_cli_prints_a_python_layers_exception_as_one_line(module_dir, capsys):
    from pyforge.cli import main

    folder, module = module_dir
    path = folder / "net.prototxt"
    path.write_text(NET.format(module=module, loss="Broken", param_str=""))
    assert main(["time", f"--model={path}", "--iterations=1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    lines = [line for line in err.splitlines() if line.startswith("pyforge:")]
    assert len(lines) == 1
    assert lines[0].startswith(f"pyforge: error: layer 'loss' (Python {module}.Broken): forward "
                               "raised ValueError: boom: bad input at ")


def test_exception_in_setup_and_import(tmp_path):
    name = f"pyforge_test_bad_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import numpy\nraise RuntimeError('no luck')\n")
    try:
        with pytest.raises(RuntimeError) as info:
            _net(tmp_path, name)
        assert str(info.value) == "no luck"
        assert rf"(Python {name}.BiasLayer): import raised RuntimeError: no luck" in (
            user_code_error_line(info.value))
    finally:
        sys.modules.pop(name, None)


def test_setup_error_from_the_users_check(module_dir):
    folder, module = module_dir
    path = folder / "one_bottom.prototxt"
    path.write_text(f'''
        layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ dim: 2 }} }} }}
        layer {{ name: "loss" type: "Python" bottom: "x" top: "l"
                python_param {{ module: "{module}" layer: "EuclideanLossLayer" }} }}''')
    with pytest.raises(Exception) as info:
        Net(read_net_param(path), rng=np.random.default_rng(0), source_file=str(path))
    assert type(info.value) is Exception
    assert str(info.value) == "Need two inputs to compute distance."
    assert info.value.__notes__ == [f"raised in setup of layer 'loss' (Python {module}."
                                    "EuclideanLossLayer)"]


def test_python_param_needs_module_and_layer():
    param = caffe_pb2.NetParameter()
    param.layer.add(name="py", type="Python")
    with pytest.raises(NetError, match="python_param needs both 'module' and 'layer'"):
        Net(param, rng=np.random.default_rng(0))


def test_base_class_add_blob():
    layer = PythonLayerBase()
    blob = layer.blobs.add_blob(2, 3)
    layer.blobs.add_blob((4,))
    assert [b.shape for b in layer.blobs] == [(2, 3), (4,)]
    assert blob is layer.blobs[0] and layer.type == "Python"
    with pytest.raises(NotImplementedError, match="must define forward"):
        layer.forward([], [])


# --- modules of published nets -------------------------------------------------------------------
def _python_net(tmp_path, module: str, layer: str):
    path = tmp_path / "net.prototxt"
    path.write_text(f'''
        layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ dim: 1 dim: 2 }} }} }}
        layer {{ name: "proposal" type: "Python" bottom: "x" top: "rois"
                python_param {{ module: "{module}" layer: "{layer}" }} }}''')
    return Net(read_net_param(path), rng=np.random.default_rng(0), source_file=str(path))


def test_missing_rpn_proposal_layer_points_to_the_native_proposal_layer(tmp_path):
    with pytest.raises(NetError) as info:
        _python_net(tmp_path, "rpn.proposal_layer", "ProposalLayer")
    message = info.value.message
    assert "\n" not in message
    assert message.startswith("layer 'proposal' (Python rpn.proposal_layer.ProposalLayer): "
                              "cannot import module 'rpn.proposal_layer' for class "
                              "'ProposalLayer': No module named 'rpn'")
    assert message.endswith('use the native layer instead: type: "Proposal" with proposal_param '
                            "{ feat_stride ratio scale } (OpenCV's, for py-faster-rcnn nets), or "
                            "py-faster-rcnn's lib folder (rbgirshick/py-faster-rcnn) must be on "
                            "PYTHONPATH")


def test_missing_fcn_data_layer_names_the_module_and_where_it_comes_from(tmp_path):
    with pytest.raises(NetError, match=r"cannot import module 'voc_layers' for class "
                                       r"'SBDDSegDataLayer': .*; FCN's data layers "
                                       r"\(shelhamer/fcn.berkeleyvision.org\) must be on "
                                       "PYTHONPATH$"):
        _python_net(tmp_path, "voc_layers", "SBDDSegDataLayer")


def test_an_unknown_missing_module_gets_no_hint(tmp_path):
    with pytest.raises(NetError, match=r"cannot import module 'nowhere_layers' for class 'L': "
                                       r"No module named 'nowhere_layers' \(not on sys.path nor "
                                       r"in the net's folder [^;]*\)$"):
        _python_net(tmp_path, "nowhere_layers", "L")


def test_a_proposal_layer_module_whose_own_imports_fail_gets_the_hint(tmp_path):
    package = tmp_path / "rpn"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "proposal_layer.py").write_text("from fast_rcnn.config import cfg\n")
    try:
        with pytest.raises(ModuleNotFoundError, match="No module named 'fast_rcnn'") as info:
            _python_net(tmp_path, "rpn.proposal_layer", "ProposalLayer")
        assert re.search(r"import raised ModuleNotFoundError: No module named 'fast_rcnn' at "
                         r'proposal_layer.py:1; use the native layer instead: type: "Proposal"',
                         user_code_error_line(info.value))
    finally:
        sys.modules.pop("rpn", None)
        sys.modules.pop("rpn.proposal_layer", None)
