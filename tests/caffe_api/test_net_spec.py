"""NetSpec: nets written in Python give prototxt that Caffe's parser reads and that builds the
same net as the hand-written file."""

from __future__ import annotations

import numpy as np
import pytest

import caffe
from caffe import layers as L
from caffe import params as P
from pyforge.proto import caffe_pb2, parse_text_proto
from tests.caffe_api.conftest import INIT_WEIGHTS, LENET


def lenet(source: str, batch_size: int, phase: int | None = None) -> caffe_pb2.NetParameter:
    """Caffe's LeNet (examples/mnist/lenet_train_test.prototxt) for one phase."""
    n = caffe.NetSpec()
    n.data, n.label = L.Data(source=source, backend=P.Data.LMDB, batch_size=batch_size,
                             transform_param=dict(scale=0.00390625), ntop=2)
    lr = [dict(lr_mult=1), dict(lr_mult=2)]
    n.conv1 = L.Convolution(n.data, param=lr, kernel_size=5, stride=1, num_output=20,
                            weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"))
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, param=lr, kernel_size=5, stride=1, num_output=50,
                            weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"))
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip1 = L.InnerProduct(n.pool2, param=lr, num_output=500,
                           weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, param=lr, num_output=10,
                           weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"))
    if phase == caffe.TEST:
        n.accuracy = L.Accuracy(n.ip2, n.label, include=dict(phase=caffe.TEST))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n.to_proto()


def test_netspec_lenet_builds_the_hand_written_net(in_caffe_ref, tmp_path):
    proto = lenet("mnist/mnist_test_lmdb", 100, caffe.TEST)
    assert [layer.name for layer in proto.layer] == [
        "data", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "accuracy", "loss"]
    text = str(proto)
    path = tmp_path / "lenet_test.prototxt"
    path.write_text(text)
    # Caffe's text parser reads it back to the same message.
    assert parse_text_proto(text, caffe_pb2.NetParameter(), str(path)) == proto
    generated = caffe.Net(str(path), caffe.TEST, weights=INIT_WEIGHTS)
    written = caffe.Net(LENET, caffe.TEST, weights=INIT_WEIGHTS)
    assert list(generated.params) == list(written.params)
    for name in written.params:
        assert [b.data.shape for b in generated.params[name]] == [
            b.data.shape for b in written.params[name]]
    for name in ("data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "loss", "accuracy"):
        assert generated.blobs[name].data.shape == written.blobs[name].data.shape
    out = generated.forward()
    assert float(out["loss"]) == pytest.approx(2.41096, abs=5e-6)
    assert float(out["accuracy"]) == pytest.approx(0.04)


def test_generated_text_uses_caffes_fields(in_caffe_ref):
    text = str(lenet("mnist/mnist_test_lmdb", 100, caffe.TEST))
    assert 'type: "Pooling"' in text and "pool: MAX" in text
    assert "backend: LMDB" in text and "scale: 0.00390625" in text
    assert "include {\n    phase: TEST\n  }" in text
    relu = str(lenet("x", 1).layer[6])
    assert 'bottom: "ip1"\ntop: "ip1"' in relu  # in_place: the top is the bottom


def test_automatic_names_and_to_proto_of_tops():
    data = L.Input(shape=dict(dim=[2, 3]))
    score = L.InnerProduct(L.ReLU(data), num_output=4)
    proto = score.to_proto()
    assert [(layer.name, layer.type) for layer in proto.layer] == [
        ("Input1", "Input"), ("ReLU1", "ReLU"), ("InnerProduct1", "InnerProduct")]
    assert list(proto.layer[2].bottom) == ["ReLU1"]
    assert list(proto.layer[2].top) == ["InnerProduct1"]
    assert caffe.to_proto(score) == proto
    assert list(proto.layer[0].input_param.shape[0].dim) == [2, 3]


def test_parameter_routing_and_special_arguments():
    n = caffe.NetSpec()
    n.data = L.Input(shape=[dict(dim=[1, 3, 8, 8])])
    n.conv = L.Convolution(n.data, kernel_size=3, num_output=2, name="named_conv",
                           loss_weight=0.5, propagate_down=[True],
                           param=[dict(name="w", lr_mult=1), dict(decay_mult=0)])
    n.a, n.b = L.Slice(n.conv, slice_point=1, ntop=2)
    n.silence = L.Silence(n.b, ntop=0)
    n.py = L.Python(n.a, module="my_layers", layer="Scale", param_str="2")
    proto = n.to_proto()
    conv = proto.layer[1]
    assert conv.name == "named_conv"  # an explicit name wins
    assert list(conv.convolution_param.kernel_size) == [3]  # a repeated field from a scalar
    assert list(conv.loss_weight) == [0.5] and list(conv.propagate_down) == [True]
    assert [p.name for p in conv.param] == ["w", ""] and conv.param[1].decay_mult == 0
    slice_layer = proto.layer[2]
    assert list(slice_layer.top) == ["a", "b"] and list(slice_layer.slice_param.slice_point) == [1]
    silence = proto.layer[3]
    assert silence.name == "silence" and list(silence.top) == [] and list(silence.bottom) == ["b"]
    python = proto.layer[4]
    assert python.python_param.module == "my_layers" and python.python_param.param_str == "2"
    assert n.keys() == ["data", "conv", "a", "b", "silence", "py"]
    with pytest.raises(AttributeError, match="no top named 'missing'"):
        _ = n.missing
    with pytest.raises(KeyError):  # pycaffe's NetSpec raises KeyError
        _ = n["missing"]
    assert getattr(n, "missing", None) is None


def test_a_non_top_input_is_pycaffes_type_error():
    pair = L.DummyData(ntop=2)
    with pytest.raises(TypeError) as info:
        L.Silence(pair, ntop=0)
    assert str(info.value) == "Silence input 0 is not a Top (type is <class 'tuple'>)"
    with pytest.raises(TypeError, match=r"^ReLU input 1 is not a Top \(type is <class 'str'>\)$"):
        L.ReLU(pair[0], "data")
    assert isinstance(L.Silence(*pair, ntop=0), caffe.net_spec.Function)


def test_layers_sharing_a_parameter_message_and_unknown_arguments():
    data = L.Input(shape=dict(dim=[1, 2, 4, 4]))
    up = L.Deconvolution(data, num_output=3, kernel_size=4, stride=2, bias_term=False)
    layer = up.to_proto().layer[-1]
    assert (layer.convolution_param.num_output, list(layer.convolution_param.stride)) == (3, [2])
    assert not layer.convolution_param.bias_term
    with pytest.raises(AttributeError, match=r"ReLU layer 'ReLU1': slope=0.1 is not a field of "
                                             r"relu_param nor of LayerParameter"):
        L.ReLU(data, slope=0.1).to_proto()


def test_params_constants():
    assert P.Pooling.AVE == caffe_pb2.PoolingParameter.AVE
    assert P.Data.LMDB == caffe_pb2.DataParameter.LMDB
    assert P.Eltwise.SUM == caffe_pb2.EltwiseParameter.SUM
    with pytest.raises(AttributeError):
        _ = P.NoSuchLayer


def test_netspec_net_trains(in_caffe_ref, tmp_path):
    net_file = tmp_path / "lenet_train.prototxt"
    net_file.write_text(str(lenet("mnist/mnist_train_lmdb", 64)))
    net = caffe.Net(str(net_file), caffe.TRAIN, weights=INIT_WEIGHTS)
    loss = float(net.forward()["loss"])
    assert np.isfinite(loss) and loss == pytest.approx(2.35731, abs=5e-5)  # Caffe's iteration 0
