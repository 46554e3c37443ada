"""Caffe's own binary files (.caffemodel, .solverstate) read, round-tripped and written safely."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pyforge.blob import Blob, proto_shape, proto_values, shapes_equal
from pyforge.errors import ParseError, PyforgeError, WeightsError
from pyforge.io.snapshot import read_weights, snapshot_filename
from pyforge.proto import caffe_pb2, read_binary_proto, write_binary_proto

LENET_PARAMS = {
    "conv1": [(20, 1, 5, 5), (20,)],
    "conv2": [(50, 20, 5, 5), (50,)],
    "ip1": [(500, 800), (500,)],
    "ip2": [(10, 500), (10,)],
}
LENET_LAYERS = ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"]
HISTORY_SHAPES = [shape for shapes in LENET_PARAMS.values() for shape in shapes]


@pytest.fixture(scope="module")
def init_model(caffe_ref):
    return caffe_ref / "init" / "snap_iter_0.caffemodel"


@pytest.fixture(scope="module")
def solverstate(caffe_ref):
    return caffe_ref / "runs" / "sgd_inv" / "snap_iter_30.solverstate"


def _blob_shapes(layer) -> list[tuple[int, ...]]:
    return [tuple(b.shape.dim) for b in layer.blobs]


# --- reading Caffe's files --------------------------------------------------------------------


def test_caffemodel_lenet_layers_and_shapes(init_model):
    param = read_binary_proto(init_model, caffe_pb2.NetParameter())
    assert param.name == "LeNet"
    assert [layer.name for layer in param.layer] == LENET_LAYERS
    assert not param.layers  # the current format (field 100), not V1
    for layer in param.layer:
        assert layer.phase == caffe_pb2.TRAIN
        assert _blob_shapes(layer) == LENET_PARAMS.get(layer.name, [])
        for blob in layer.blobs:
            assert len(blob.data) == int(np.prod(blob.shape.dim))
            assert not blob.diff and not blob.double_data  # snapshot_diff is off
    conv1 = next(layer for layer in param.layer if layer.name == "conv1")
    assert conv1.type == "Convolution"
    assert conv1.convolution_param.num_output == 20
    weights = proto_values(conv1.blobs[0], "data")
    assert weights is not None and weights.dtype == np.float32
    assert np.all(np.isfinite(weights)) and weights.std() > 0


def test_read_weights_on_caffes_model(init_model):
    param = read_weights(str(init_model))
    named = {layer.name: _blob_shapes(layer) for layer in param.layer if layer.blobs}
    assert named == LENET_PARAMS


def test_solverstate(solverstate, caffe_ref):
    state = read_binary_proto(solverstate, caffe_pb2.SolverState())
    assert state.iter == 30
    assert state.learned_net == "runs/sgd_inv/snap_iter_30.caffemodel"
    assert state.learned_net == snapshot_filename("runs/sgd_inv/snap", 30, ".caffemodel")
    assert (caffe_ref / state.learned_net).is_file()  # relative to Caffe's working directory
    assert state.current_step == 0
    assert len(state.history) == 8
    assert [tuple(b.shape.dim) for b in state.history] == HISTORY_SHAPES
    for blob in state.history:
        assert len(blob.data) == int(np.prod(blob.shape.dim))
        assert not blob.diff
    # SGD with momentum after 30 iterations: the history is non-zero.
    assert all(np.abs(proto_values(b, "data")).max() > 0 for b in state.history)


@pytest.mark.parametrize(
    "relative,message",
    [
        ("init/snap_iter_0.caffemodel", caffe_pb2.NetParameter),
        ("runs/sgd_inv/snap_iter_30.caffemodel", caffe_pb2.NetParameter),
        ("runs/sgd_inv/snap_iter_30.solverstate", caffe_pb2.SolverState),
    ],
)
def test_byte_round_trip(caffe_ref, relative, message):
    raw = (caffe_ref / relative).read_bytes()
    parsed = message.FromString(raw)
    assert parsed.SerializeToString() == raw


def test_write_binary_proto_round_trip(caffe_ref, tmp_path):
    raw = (caffe_ref / "runs" / "sgd_inv" / "snap_iter_30.caffemodel").read_bytes()
    out = tmp_path / "copy.caffemodel"
    write_binary_proto(out, caffe_pb2.NetParameter.FromString(raw))
    assert out.read_bytes() == raw


# --- Blob <-> BlobProto -----------------------------------------------------------------------


def test_blob_proto_round_trip(init_model, solverstate):
    param = read_binary_proto(init_model, caffe_pb2.NetParameter())
    state = read_binary_proto(solverstate, caffe_pb2.SolverState())
    protos = [b for layer in param.layer for b in layer.blobs] + list(state.history)
    assert len(protos) == 16
    for proto in protos:
        blob = Blob()
        blob.from_proto(proto)
        assert blob.shape == tuple(proto.shape.dim)
        assert blob.data.dtype == np.float32
        np.testing.assert_array_equal(blob.data.ravel(), np.array(proto.data, dtype=np.float32))
        back = blob.to_proto()
        assert back == proto
        assert back.SerializeToString() == proto.SerializeToString()


def test_blob_proto_diff_round_trip():
    blob = Blob((2, 3))
    blob.data[...] = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    blob.diff[...] = -blob.data
    proto = blob.to_proto(write_diff=True)
    assert len(proto.diff) == 6
    other = Blob()
    other.from_proto(caffe_pb2.BlobProto.FromString(proto.SerializeToString()))
    np.testing.assert_array_equal(other.data, blob.data)
    np.testing.assert_array_equal(other.diff, blob.diff)
    assert not blob.to_proto().diff


def test_blob_from_double_data():
    proto = caffe_pb2.BlobProto()
    proto.shape.dim.extend([3])
    proto.double_data.extend([0.1, 0.2, 1e30])
    blob = Blob()
    blob.from_proto(proto)
    np.testing.assert_array_equal(blob.data, np.array([0.1, 0.2, 1e30]).astype(np.float32))


def test_legacy_shapes_compare_right_aligned():
    # An InnerProduct weight as old Caffe wrote it: 1 x 1 x N x K.
    legacy = caffe_pb2.BlobProto(num=1, channels=1, height=10, width=500)
    assert proto_shape(legacy) == (1, 1, 10, 500)
    assert shapes_equal(legacy, (10, 500))
    assert shapes_equal(legacy, (1, 10, 500))
    assert shapes_equal(legacy, (1, 1, 10, 500))
    assert not shapes_equal(legacy, (500, 10))
    assert not shapes_equal(legacy, (2, 10, 500))
    assert not shapes_equal(legacy, (1, 1, 1, 10, 500))
    bias = caffe_pb2.BlobProto(num=1, channels=1, height=1, width=10)
    assert shapes_equal(bias, (10,))
    conv = caffe_pb2.BlobProto(num=20, channels=1, height=5, width=5)
    assert shapes_equal(conv, (20, 1, 5, 5))
    assert not shapes_equal(conv, (1, 5, 5))
    # The N-d ``shape`` field compares exactly.
    modern = caffe_pb2.BlobProto()
    modern.shape.dim.extend([10, 500])
    assert shapes_equal(modern, (10, 500))
    assert not shapes_equal(modern, (1, 1, 10, 500))


def test_legacy_blob_loads_into_a_shaped_blob():
    legacy = caffe_pb2.BlobProto(num=1, channels=1, height=2, width=3)
    legacy.data.extend(range(6))
    blob = Blob((2, 3))
    blob.from_proto(legacy, reshape=False)
    assert blob.shape == (2, 3)
    np.testing.assert_array_equal(blob.data, np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(ValueError, match="shape mismatch"):
        Blob((3, 2)).from_proto(legacy, reshape=False)


# --- read_weights errors ----------------------------------------------------------------------


def test_read_weights_missing_file(tmp_path):
    path = str(tmp_path / "absent.caffemodel")
    with pytest.raises(WeightsError, match="absent.caffemodel"):
        read_weights(path)


def test_read_weights_refuses_a_solverstate(solverstate):
    with pytest.raises(WeightsError) as info:
        read_weights(str(solverstate))
    assert str(solverstate) in str(info.value)
    assert "solver state" in str(info.value)


def test_read_weights_renamed_solverstate_is_a_parse_error(solverstate, tmp_path):
    renamed = tmp_path / "state.bin"
    renamed.write_bytes(solverstate.read_bytes())
    with pytest.raises(PyforgeError) as info:
        read_weights(str(renamed))
    assert str(renamed) in str(info.value)


def test_read_weights_garbage(tmp_path):
    path = tmp_path / "garbage.caffemodel"
    path.write_bytes(b"\x0a\xff\x01not a protobuf")  # field 1, length 255: truncated
    with pytest.raises(ParseError) as info:
        read_weights(str(path))
    assert str(path) in str(info.value)
    assert "NetParameter" in str(info.value)


def test_read_weights_empty_file(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="no layers"):
        read_weights(str(path))


def test_read_weights_directory(tmp_path):
    with pytest.raises(PyforgeError) as info:
        read_weights(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_read_binary_proto_missing_and_directory(tmp_path):
    with pytest.raises(PyforgeError, match="no such file"):
        read_binary_proto(tmp_path / "absent", caffe_pb2.SolverState())
    with pytest.raises(PyforgeError, match="directory"):
        read_binary_proto(tmp_path, caffe_pb2.SolverState())


# --- atomic writes ----------------------------------------------------------------------------


def _state(iteration: int) -> caffe_pb2.SolverState:
    state = caffe_pb2.SolverState(iter=iteration, learned_net=f"snap_iter_{iteration}.caffemodel")
    state.history.add().shape.dim.extend([2])
    state.history[0].data.extend([1.0, -2.0])
    return state


def test_write_binary_proto_leaves_no_temp_file(tmp_path):
    path = tmp_path / "snap_iter_1.solverstate"
    write_binary_proto(path, _state(1))
    assert os.listdir(tmp_path) == [path.name]
    write_binary_proto(str(path), _state(2))  # overwrite, str path
    assert os.listdir(tmp_path) == [path.name]
    assert read_binary_proto(path, caffe_pb2.SolverState()) == _state(2)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "snap.solverstate"
    write_binary_proto(path, _state(1))
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(PyforgeError) as info:
        write_binary_proto(path, _state(2))
    assert str(path) in str(info.value)
    assert "No space left" in str(info.value)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


def test_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "snap.caffemodel"
    write_binary_proto(path, _state(1))
    before = path.read_bytes()

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PyforgeError, match="cannot write"):
        write_binary_proto(path, _state(2))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


def test_write_into_missing_folder(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "snap.caffemodel"
    with pytest.raises(PyforgeError) as info:
        write_binary_proto(path, _state(1))
    assert str(path) in str(info.value)
    assert not (tmp_path / "no").exists()


def test_hdf5_weights_of_layers_named_with_a_slash_round_trip(tmp_path):
    """GoogLeNet's layers are named ``inception_3a/1x1``: in HDF5 the '/' makes nested groups
    (``/data/inception_3a/1x1/0``), which the reader walks back into those names."""
    import logging

    from pyforge.io.snapshot import load_weights, write_model
    from pyforge.net.net import Net
    from pyforge.proto import parse_text_proto

    text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
    layer { name: "a/ip" type: "InnerProduct" bottom: "data" top: "a/ip"
            inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
    layer { name: "a/out" type: "ReLU" bottom: "a/ip" top: "a/out" }
    layer { name: "a/out/ip" type: "InnerProduct" bottom: "a/out" top: "b"
            inner_product_param { num_output: 2 bias_term: false
                                  weight_filler { type: "gaussian" } } }
    """
    quiet = logging.getLogger("pyforge.tests.quiet")

    def build(seed):
        return Net(parse_text_proto(text, caffe_pb2.NetParameter(), "slash.prototxt"),
                   rng=np.random.default_rng(seed), logger=quiet)

    source, target = build(1), build(2)
    source.layers[1].blobs[1].data[...] = [0.5, -1, 2]
    path = str(tmp_path / "slash.caffemodel.h5")
    write_model(path, source, hdf5=True)
    load_weights(target, path)
    for mine, theirs in zip(target.layers, source.layers):
        for a, b in zip(mine.blobs, theirs.blobs):
            np.testing.assert_array_equal(a.data, b.data)
