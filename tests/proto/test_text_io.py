"""Reading prototxt files: located parse errors, file errors, and Caffe's on-load upgrades."""

from __future__ import annotations

import logging
import os
import re

import pytest

from pyforge.errors import NetError, ParseError, PyforgeError, SolverError
from pyforge.log import get_logger
from pyforge.proto import (
    caffe_pb2,
    parse_text_proto,
    read_net_param,
    read_solver_param,
    read_text_proto,
    resolve_path,
)
from pyforge.proto.upgrade import upgrade_net_param, upgrade_solver_param

LOCATED = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<what>.+)$", re.S)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _located(exc: ParseError, path, text: str, token: str):
    """Check ``file:line:col: message`` and a detail of the source line with a caret under col.

    ``token`` is the text the caret must point at. Returns the message part.
    """
    match = LOCATED.match(exc.message)
    assert match, exc.message
    assert match["file"] == str(path)
    line, col = int(match["line"]), int(match["col"])
    source = text.splitlines()[line - 1]
    assert source[col - 1 :].startswith(token), (source, col, token)
    assert exc.detail is not None, exc.message
    shown, caret = exc.detail.split("\n")
    assert shown.strip() == source.strip()
    # The caret sits under the offending token in the shown line.
    assert caret.strip() == "^"
    assert shown[caret.index("^") :].startswith(token), exc.detail
    return match["what"]


# --- located parse errors -------------------------------------------------------------------


def test_unknown_field_suggests_the_right_name(tmp_path):
    text = 'name: "x"\nlayer {\n  name: "a"\n  tpye: "ReLU"\n}\n'
    path = _write(tmp_path / "net.prototxt", text)
    with pytest.raises(ParseError) as info:
        read_net_param(path)
    what = _located(info.value, path, text, "tpye")
    assert info.value.message.startswith(f"{path}:4:3: ")
    assert 'no field named "tpye"' in what
    assert "did you mean 'type'?" in what


def test_unknown_field_from_a_fork_is_named(tmp_path):
    text = 'layer {\n  name: "d"\n  annotated_data_param { batch_size: 8 }\n}\n'
    path = _write(tmp_path / "net.prototxt", text)
    with pytest.raises(ParseError) as info:
        read_net_param(path)
    what = _located(info.value, path, text, "annotated_data_param")
    assert "'annotated_data_param' is defined by SSD (weiliu89/caffe" in what
    assert "AnnotatedData training layer, which pyforge does not implement" in what
    assert "did you mean" not in what


def test_bad_enum_value(tmp_path):
    text = "base_lr: 0.01\nsolver_mode: CPUU\n"
    path = _write(tmp_path / "solver.prototxt", text)
    with pytest.raises(ParseError) as info:
        read_solver_param(path)
    what = _located(info.value, path, text, "CPUU")
    assert info.value.message.startswith(f"{path}:2:14: ")
    assert "SolverMode" in what and "CPUU" in what


def test_wrong_value_type(tmp_path):
    text = 'net: "n.prototxt"\nbase_lr: "fast"\n'
    path = _write(tmp_path / "solver.prototxt", text)
    with pytest.raises(ParseError) as info:
        read_solver_param(path)
    what = _located(info.value, path, text, '"fast"')
    assert "float" in what

    text = "max_iter: 1.5\n"
    path = _write(tmp_path / "solver2.prototxt", text)
    with pytest.raises(ParseError) as info:
        read_solver_param(path)
    assert "integer" in _located(info.value, path, text, "1.5")


def test_missing_closing_brace(tmp_path):
    text = 'name: "x"\nlayer {\n  name: "a"\n  type: "ReLU"\n'
    path = _write(tmp_path / "net.prototxt", text)
    with pytest.raises(ParseError) as info:
        read_net_param(path)
    match = LOCATED.match(info.value.message)
    assert match and match["file"] == str(path)
    assert '"}"' in match["what"]
    assert int(match["line"]) >= 4
    assert info.value.detail and info.value.detail.rstrip().endswith("^")


def test_extra_closing_brace(tmp_path):
    text = 'name: "x"\nlayer {\n  name: "a"\n}\n}\n'
    path = _write(tmp_path / "net.prototxt", text)
    with pytest.raises(ParseError) as info:
        read_net_param(path)
    _located(info.value, path, text, "}")
    assert info.value.message.startswith(f"{path}:5:1: ")


def test_tabs_keep_the_caret_aligned(tmp_path):
    text = "layer {\n\tname: 'a'\n\tbogus: 1\n}\n"
    path = _write(tmp_path / "net.prototxt", text)
    with pytest.raises(ParseError) as info:
        read_text_proto(path, caffe_pb2.NetParameter())
    shown, caret = info.value.detail.split("\n")
    assert shown[caret.index("^") :].startswith("bogus")


def test_parse_text_proto_names_the_given_file():
    with pytest.raises(ParseError, match=r"^<cli>:1:1: "):
        parse_text_proto("nope: 1", caffe_pb2.SolverParameter(), "<cli>")
    param = parse_text_proto('type: "Adam"', caffe_pb2.SolverParameter(), "<cli>")
    assert param.type == "Adam"


# --- file errors ----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "absent.prototxt"
    for reader in (read_net_param, read_solver_param):
        with pytest.raises(PyforgeError) as info:
            reader(path)
        assert str(path) in str(info.value)
        assert "no such file" in str(info.value)


def test_directory(tmp_path):
    with pytest.raises(PyforgeError) as info:
        read_solver_param(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "directory" in str(info.value)


def test_binary_file(tmp_path):
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2])
    blob.data.extend([-1.5e38, 3.25])
    path = tmp_path / "weights.caffemodel"
    path.write_bytes(b"\xff\xfe" + blob.SerializeToString())
    with pytest.raises(ParseError) as info:
        read_net_param(path)
    assert str(path) in str(info.value)
    assert "not a text prototxt" in str(info.value)


def test_binary_caffemodel_as_net(caffe_ref):
    path = caffe_ref / "init" / "snap_iter_0.caffemodel"
    with pytest.raises(PyforgeError) as info:
        read_net_param(path)
    assert str(path) in str(info.value)


# --- solver upgrades ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old,new",
    [
        ("SGD", "SGD"),
        ("NESTEROV", "Nesterov"),
        ("ADAGRAD", "AdaGrad"),
        ("RMSPROP", "RMSProp"),
        ("ADADELTA", "AdaDelta"),
        ("ADAM", "Adam"),
    ],
)
def test_solver_type_upgrade(tmp_path, old, new):
    path = _write(tmp_path / "solver.prototxt", f"base_lr: 0.1\nsolver_type: {old}\n")
    param = read_solver_param(path)
    assert param.type == new
    assert not param.HasField("solver_type")


def test_solver_type_and_type_both_set():
    param = caffe_pb2.SolverParameter(type="SGD", solver_type=caffe_pb2.SolverParameter.NESTEROV)
    with pytest.raises(SolverError, match="solver_type.*type"):
        upgrade_solver_param(param, "s.prototxt")


def test_solver_without_solver_type_is_untouched():
    param = caffe_pb2.SolverParameter(type="Adam", snapshot_prefix="p")
    copy = caffe_pb2.SolverParameter()
    copy.CopyFrom(param)
    assert upgrade_solver_param(copy) == param
    assert upgrade_solver_param(caffe_pb2.SolverParameter()).type == "SGD"


def test_snapshot_prefix_defaults_to_solver_path_without_extension(tmp_path):
    path = _write(tmp_path / "runs" / "lenet_solver.prototxt", "base_lr: 0.1\n")
    assert read_solver_param(path).snapshot_prefix == str(tmp_path / "runs" / "lenet_solver")
    bare = _write(tmp_path / "runs.d" / "solver", "base_lr: 0.1\n")
    assert read_solver_param(bare).snapshot_prefix == str(tmp_path / "runs.d" / "solver")


def test_snapshot_prefix_directory_gets_the_stem(tmp_path, monkeypatch):
    (tmp_path / "snaps").mkdir()
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "cfg" / "my_solver.prototxt", 'snapshot_prefix: "snaps"\n')
    assert read_solver_param(path).snapshot_prefix == os.path.join("snaps", "my_solver")
    path = _write(tmp_path / "cfg" / "other.prototxt", 'snapshot_prefix: "snaps/run"\n')
    assert read_solver_param(path).snapshot_prefix == "snaps/run"


def test_snapshot_prefix_not_defaulted_without_a_file():
    param = upgrade_solver_param(caffe_pb2.SolverParameter())
    assert not param.HasField("snapshot_prefix")


# --- net upgrades ---------------------------------------------------------------------------

NET_TAIL = 'layer {\n  name: "relu"\n  type: "ReLU"\n  bottom: "data"\n  top: "out"\n}\n'


def _input_layer(param):
    layer = param.layer[0]
    assert (layer.name, layer.type) == ("input", "Input")
    return list(layer.top), [list(s.dim) for s in layer.input_param.shape]


def test_legacy_input_dim(tmp_path):
    text = (
        'name: "n"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
        'input: "extra"\ninput_dim: 2\ninput_dim: 1\ninput_dim: 1\ninput_dim: 4\n' + NET_TAIL
    )
    param = read_net_param(_write(tmp_path / "deploy.prototxt", text))
    assert _input_layer(param) == (["data", "extra"], [[1, 3, 8, 8], [2, 1, 1, 4]])
    assert [layer.name for layer in param.layer] == ["input", "relu"]
    assert not param.input and not param.input_dim and not param.input_shape


def test_legacy_input_shape(tmp_path):
    text = 'input: "data"\ninput_shape { dim: 10 dim: 3 dim: 227 dim: 227 }\n' + NET_TAIL
    param = read_net_param(_write(tmp_path / "deploy.prototxt", text))
    assert _input_layer(param) == (["data"], [[10, 3, 227, 227]])
    assert [layer.name for layer in param.layer] == ["input", "relu"]
    assert not param.input and not param.input_shape


def test_legacy_input_without_shape_is_dropped():
    """Caffe's UpgradeNetInput: an ``input`` without shape or dim (old .caffemodels) is cleared."""
    param = caffe_pb2.NetParameter(input=["data"])
    param.layer.add(name="relu", type="ReLU", bottom=["data"], top=["out"])
    upgraded = upgrade_net_param(param)
    assert [layer.name for layer in upgraded.layer] == ["relu"]
    assert not upgraded.input


def test_legacy_input_dim_count_must_be_four_per_input():
    param = caffe_pb2.NetParameter(input=["data"], input_dim=[1, 3, 8])
    with pytest.raises(NetError, match="4 values per input"):
        upgrade_net_param(param, "deploy.prototxt")


def test_layer_and_layers_both_present():
    param = caffe_pb2.NetParameter()
    param.layer.add(name="a", type="ReLU")
    param.layers.add(name="b")
    with pytest.raises(NetError, match="both 'layer' and"):
        upgrade_net_param(param, "net.prototxt")


def test_batchnorm_three_params_are_frozen():
    param = caffe_pb2.NetParameter()
    bn = param.layer.add(name="bn", type="BatchNorm")
    for _ in range(3):
        bn.param.add(lr_mult=1, decay_mult=1)
    upgrade_net_param(param)
    assert [(p.lr_mult, p.decay_mult) for p in bn.param] == [(0, 0)] * 3


# --- path resolution ------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log_records():
    logger = get_logger()
    handler = _Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_resolve_path_falls_back_to_referrer_folder(tmp_path, monkeypatch, log_records):
    project = tmp_path / "project"
    _write(project / "net.prototxt", "")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    solver = project / "solver.prototxt"
    resolved = resolve_path("net.prototxt", solver, "net")
    assert resolved == os.path.join(str(project), "net.prototxt")
    assert len(log_records) == 1
    assert "net.prototxt" in log_records[0] and str(solver) in log_records[0]


def test_resolve_path_prefers_the_current_directory(tmp_path, monkeypatch, log_records):
    _write(tmp_path / "project" / "net.prototxt", "")
    _write(tmp_path / "net.prototxt", "")
    monkeypatch.chdir(tmp_path)
    assert resolve_path("net.prototxt", tmp_path / "project" / "s.prototxt") == "net.prototxt"
    # Absolute paths, paths found nowhere and paths without a referrer are returned unchanged.
    absent = str(tmp_path / "absent")
    assert resolve_path(absent, tmp_path / "project" / "s.prototxt") == absent
    assert resolve_path("nowhere.txt", tmp_path / "project" / "s.prototxt") == "nowhere.txt"
    assert resolve_path("nowhere.txt", None) == "nowhere.txt"
    assert resolve_path("", tmp_path / "project" / "s.prototxt") == ""
    assert log_records == []
