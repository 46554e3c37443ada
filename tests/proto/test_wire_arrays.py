"""pyforge.proto.wire: parameters and solver history written from and read into arrays as raw
bytes, byte for byte what protobuf writes and reads, in every layout Caffe's files come in."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from pyforge.blob import BlobValues
from pyforge.errors import ParseError
from pyforge.io.snapshot import (
    SolverStateData,
    read_solver_state,
    read_weight_values,
    read_weights,
    write_model,
    write_solver_state,
)
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, read_net_param, read_text_proto, wire, write_binary_proto

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "prototxt_examples" / "zoo"
UPGRADE = ROOT / "tests" / "data" / "upgrade"
QUIET = logging.getLogger("pyforge.tests.quiet")


def _net(path: Path, seed: int = 0) -> Net:
    net = Net(read_net_param(path), rng=np.random.default_rng(seed), logger=QUIET)
    rng = np.random.default_rng(seed + 1)
    for layer in net.layers:
        for blob in layer.blobs:
            blob.data[...] = rng.standard_normal(blob.shape)
            blob.diff[...] = rng.standard_normal(blob.shape)
    return net


def _joined(chunks) -> bytes:
    return b"".join(bytes(c) for c in chunks)


@pytest.mark.parametrize("name", ["squeezenet1_1", "mobilenet_v2"])
@pytest.mark.parametrize("write_diff", [False, True])
def test_net_chunks_are_protobufs_own_bytes(name, write_diff):
    net = _net(ZOO / f"{name}_deploy.prototxt")
    expected = net.to_proto(write_diff).SerializeToString()
    assert _joined(net.to_chunks(write_diff)) == expected


def test_chunks_keep_unknown_fields_last_as_protobuf_does():
    layer = caffe_pb2.LayerParameter(name="ip", type="InnerProduct", bottom=["x"], top=["y"])
    layer.inner_product_param.num_output = 3
    layer.include.add(phase=caffe_pb2.TEST)  # field 8: after the blobs (7)
    # An unknown field 123456 (varint 5), as a file from a fork carries.
    layer.MergeFromString(wire.varint(123456 << 3) + wire.varint(5))
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    full = caffe_pb2.LayerParameter()
    full.CopyFrom(layer)
    full.blobs.add().CopyFrom(_blob_proto(data))
    chunks = wire.message_chunks(layer, wire.LAYER_BLOBS, [wire.blob_chunks(data.shape, data)])
    assert _joined(chunks) == full.SerializeToString()


def _blob_proto(data: np.ndarray, diff: np.ndarray | None = None) -> caffe_pb2.BlobProto:
    proto = caffe_pb2.BlobProto()
    proto.shape.dim.extend(data.shape)
    proto.data.extend(data.ravel())
    if diff is not None:
        proto.diff.extend(diff.ravel())
    return proto


def test_solver_state_chunks_are_protobufs_own_bytes(tmp_path):
    history = [np.arange(12, dtype=np.float32).reshape(3, 4), np.full(5, -0.5, np.float32)]
    state = SolverStateData(7, "net_iter_7.caffemodel", 2, history, {"solver": "SGD"})
    path = tmp_path / "s.solverstate"
    write_solver_state(str(path), state)
    proto = caffe_pb2.SolverState(iter=7, learned_net="net_iter_7.caffemodel", current_step=2,
                                  pyforge_state=b'{"solver":"SGD"}')
    for array in history:
        proto.history.add().CopyFrom(_blob_proto(array))
    assert path.read_bytes() == proto.SerializeToString()
    back = read_solver_state(str(path))
    assert (back.iteration, back.learned_net, back.current_step, back.extra) == (
        7, "net_iter_7.caffemodel", 2, {"solver": "SGD"})
    for got, want in zip(back.history, history):
        np.testing.assert_array_equal(got, want)
        assert got.shape == want.shape


def test_weights_read_from_the_bytes_equal_protobufs_reading(tmp_path):
    net = _net(ZOO / "squeezenet1_1_deploy.prototxt")
    path = tmp_path / "sq.caffemodel"
    write_model(str(path), net, write_diff=True)
    slow = read_weights(str(path))
    fast = read_weight_values(str(path))
    assert [name for name, _ in fast] == [layer.name for layer in slow.layer]
    for (_, values), layer in zip(fast, slow.layer):
        assert sorted(values) == list(range(len(layer.blobs)))
        for i, proto in enumerate(layer.blobs):
            np.testing.assert_array_equal(values[i].data, np.array(proto.data, np.float32))
            np.testing.assert_array_equal(values[i].diff, np.array(proto.diff, np.float32))
            assert list(values[i].header.shape.dim) == list(proto.shape.dim)
            assert not len(values[i].header.data)


def test_double_and_unpacked_values_legacy_shapes_and_a_v1_net(tmp_path):
    """A V1 net (``layers``, blobs field 6) with legacy 4-D shapes, one blob in double_data,
    one written unpacked (as a writer that ignores ``packed`` would): every value arrives."""
    model = caffe_pb2.NetParameter(name="v1")
    conv = model.layers.add(name="conv", type=caffe_pb2.V1LayerParameter.CONVOLUTION)
    weight = np.linspace(-1, 1, 2 * 3 * 2 * 2).astype(np.float32)
    blob = conv.blobs.add(num=2, channels=3, height=2, width=2)
    blob.double_data.extend(weight.astype(np.float64))
    unpacked = conv.blobs.add(num=1, channels=1, height=1, width=2)
    bias = np.array([0.25, -4.0], np.float32)
    # data (field 5) as two separate fixed32 fields instead of one packed run.
    unpacked.MergeFromString(b"".join(wire.varint(5 << 3 | wire.FIXED32) + v.tobytes()
                                      for v in bias))
    path = tmp_path / "v1.caffemodel"
    write_binary_proto(path, model)
    (name, values), = read_weight_values(str(path))
    assert name == "conv"
    np.testing.assert_array_equal(values[0].data, weight)
    assert (values[0].header.num, values[0].header.width) == (2, 2)
    np.testing.assert_array_equal(values[1].data, bias)


def test_a_v0_caffemodel_loads_through_the_upgrade(tmp_path):
    """V0 nets keep their blobs in the inner V0 layer (field 50); the upgrade removes the
    padding layers, and the values still reach the right layers."""
    model = read_text_proto(UPGRADE / "v0_net.prototxt", caffe_pb2.NetParameter())
    rng = np.random.default_rng(5)
    expected = {}
    for wrapper in model.layers:
        v0 = wrapper.layer
        if v0.type in ("conv", "innerproduct"):
            expected[v0.name] = [rng.standard_normal(7).astype(np.float32) for _ in range(2)]
            for values in expected[v0.name]:
                v0.blobs.add(num=1, channels=1, height=1, width=7).data.extend(values)
    assert expected, "the V0 fixture has a convolution or inner product"
    path = tmp_path / "v0.caffemodel"
    write_binary_proto(path, model)
    got = dict(read_weight_values(str(path)))
    slow = {layer.name: layer.blobs for layer in read_weights(str(path)).layer}
    for name, arrays in expected.items():
        for i, array in enumerate(arrays):
            np.testing.assert_array_equal(got[name][i].data, array)
            np.testing.assert_array_equal(BlobValues.from_proto(slow[name][i]).data, array)
    assert "pad1" not in got


def test_weights_file_cut_inside_its_values_is_one_clear_error(tmp_path):
    net = _net(ZOO / "squeezenet1_1_deploy.prototxt")
    path = tmp_path / "sq.caffemodel"
    write_model(str(path), net)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ParseError, match=r"not a valid binary NetParameter \(\d+ bytes\)"):
        read_weight_values(str(path))
    packed = wire.length_header(5, 6) + b"\0" * 6  # 6 bytes: not whole floats
    blob = wire.length_header(7, len(packed)) + packed
    path.write_bytes(wire.length_header(100, len(blob)) + blob)
    with pytest.raises(ParseError, match="packed data of 6 bytes is not a whole number"):
        read_weight_values(str(path))


def test_loaded_values_are_the_saved_ones_in_a_fresh_net(tmp_path):
    source = _net(ZOO / "squeezenet1_1_deploy.prototxt", seed=3)
    path = tmp_path / "sq.caffemodel"
    write_model(str(path), source)
    from pyforge.io.snapshot import load_weights

    target = Net(read_net_param(ZOO / "squeezenet1_1_deploy.prototxt"),
                 rng=np.random.default_rng(9), logger=QUIET)
    load_weights(target, str(path))
    for mine, theirs in zip(target.layers, source.layers):
        for a, b in zip(mine.blobs, theirs.blobs):
            np.testing.assert_array_equal(a.data, b.data)
