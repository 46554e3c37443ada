"""Legacy nets and weights: Caffe's V0 -> V1 -> current upgrades, and the upgrade commands.

The V0 and V1 nets in ``tests/data/upgrade`` are written with Caffe's documented V0LayerParameter
and V1LayerParameter fields; each has a hand-written twin in the current format. The upgrade
must produce the twin exactly, and both must build nets that compute the same outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyforge.cli import main
from pyforge.errors import NetError, WeightsError
from pyforge.io.snapshot import read_weights
from pyforge.net.net import Net
from pyforge.proto import (
    caffe_pb2,
    parse_text_proto,
    read_binary_proto,
    read_net_param,
    read_solver_param,
    read_text_proto,
    write_binary_proto,
)
from pyforge.proto.io import debug_string
from pyforge.proto.upgrade import (
    V1_PARAM_FIELDS,
    V1_TYPE_NAMES,
    net_needs_upgrade,
    upgrade_net,
    upgrade_net_param,
    upgrade_solver_param,
)
from tests.logcapture import capture_log

DATA = Path(__file__).resolve().parents[1] / "data" / "upgrade"
V1 = caffe_pb2.V1LayerParameter


def _text_net(text: str) -> caffe_pb2.NetParameter:
    return parse_text_proto(text, caffe_pb2.NetParameter(), "<test net>")


def _twin(name: str) -> caffe_pb2.NetParameter:
    return read_text_proto(DATA / f"{name}_net_upgraded.prototxt", caffe_pb2.NetParameter())


def _build(param: caffe_pb2.NetParameter, phase=caffe_pb2.TRAIN) -> Net:
    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(param)
    copy.state.phase = phase
    return Net(copy, rng=np.random.default_rng(7))


def _same_outputs(old: Net, new: Net) -> None:
    """Give ``new`` the weights of ``old``, feed both the same inputs, compare every blob."""
    new.copy_trained_layers_from(old.to_proto(), "<old net>")
    rng = np.random.default_rng(3)
    for name in old.inputs:
        value = rng.standard_normal(old.blobs[name].shape).astype(np.float32)
        if name == "label":
            value = rng.integers(0, 5, old.blobs[name].shape).astype(np.float32)
        old.blobs[name].data[...] = value
        new.blobs[name].data[...] = value
    loss_old, loss_new = old.forward_loss(), new.forward_loss()
    assert loss_old == loss_new
    assert old.outputs == new.outputs and old.outputs
    for name in old.blobs:
        np.testing.assert_array_equal(old.blobs[name].data, new.blobs[name].data, err_msg=name)


# --- whole nets -----------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v0", "v1"])
def test_legacy_net_upgrades_to_its_hand_written_twin(version):
    upgraded = read_net_param(DATA / f"{version}_net.prototxt")
    assert not upgraded.layers and not upgraded.input and not upgraded.input_dim
    assert debug_string(upgraded) == debug_string(_twin(version))
    assert upgraded == _twin(version)


@pytest.mark.parametrize(("version", "phase"), [
    ("v0", caffe_pb2.TEST), ("v1", caffe_pb2.TRAIN), ("v1", caffe_pb2.TEST)])
def test_legacy_net_computes_what_its_twin_computes(version, phase):
    old = _build(read_net_param(DATA / f"{version}_net.prototxt"), phase)
    new = _build(_twin(version), phase)
    assert old.layer_names == new.layer_names
    _same_outputs(old, new)


def test_v1_upgrade_logs_caffes_lines():
    path = DATA / "v1_net.prototxt"
    with capture_log() as log:
        read_net_param(path)
    assert log.messages[:2] == [
        f"Attempting to upgrade input file specified using deprecated V1LayerParameter: {path}",
        "Successfully upgraded file specified using deprecated V1LayerParameter",
    ]
    assert (f"Attempting to upgrade input file specified using deprecated input fields: {path}"
            in log.messages)


def test_v0_upgrade_logs_caffes_lines():
    path = DATA / "v0_net.prototxt"
    with capture_log() as log:
        read_net_param(path)
    assert log.messages[:2] == [
        f"Attempting to upgrade input file specified using deprecated V0LayerParameter: {path}",
        "Successfully upgraded file specified using deprecated V0LayerParameter",
    ]
    # The V1 step follows on the V0 step's output.
    assert any(m.startswith("Attempting to upgrade input file specified using deprecated "
                            "V1LayerParameter") for m in log.messages)


def test_upgrade_is_idempotent_and_current_nets_need_none():
    upgraded = read_net_param(DATA / "v1_net.prototxt")
    assert not net_needs_upgrade(upgraded)
    again = caffe_pb2.NetParameter()
    again.CopyFrom(upgraded)
    with capture_log() as log:
        upgrade_net_param(again, "again.prototxt")
    assert again == upgraded
    assert not [m for m in log.messages if "upgrade" in m]


def test_both_layer_and_layers_is_an_error():
    param = _text_net('layer { name: "a" type: "ReLU" } layers { name: "b" type: RELU }')
    with pytest.raises(NetError, match=r"net\.prototxt: both 'layer' and the deprecated V1 "
                                       r"'layers' are present"):
        upgrade_net_param(param, "net.prototxt")


# --- V0 details ---------------------------------------------------------------------------------
def test_v0_padding_layer_folds_into_the_conv_or_pool_that_reads_it():
    param = _text_net("""
        input: "data"
        layers { layer { name: "pad" type: "padding" pad: 2 } bottom: "data" top: "padded" }
        layers { layer { name: "pool" type: "pool" kernelsize: 3 stride: 2 pool: AVE }
                 bottom: "padded" top: "pool" }
        layers { layer { name: "pad2" type: "padding" pad: 1 } bottom: "pool" top: "pool_p" }
        layers { layer { name: "conv" type: "conv" num_output: 2 kernelsize: 3 }
                 bottom: "pool_p" top: "conv" }
    """)
    upgrade_net_param(param)
    assert [layer.name for layer in param.layer] == ["pool", "conv"]
    pool, conv = param.layer
    assert list(pool.bottom) == ["data"] and pool.pooling_param.pad == 2
    assert pool.pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    assert list(conv.bottom) == ["pool"] and list(conv.convolution_param.pad) == [1]
    assert list(conv.convolution_param.kernel_size) == [3]


def test_v0_padding_into_other_layer_types_is_an_error():
    param = _text_net("""
        input: "data"
        layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "p" }
        layers { layer { name: "relu" type: "relu" } bottom: "p" top: "r" }
    """)
    with pytest.raises(NetError, match="padding layer 'pad' feeds layer 'relu' of type 'relu'"):
        upgrade_net_param(param, "old.prototxt")


def test_v0_unknown_bottom_and_unknown_type_are_errors():
    unknown_bottom = _text_net('layers { layer { name: "r" type: "relu" } bottom: "nope" }')
    with pytest.raises(NetError, match="V0 layer 'r': unknown bottom blob 'nope'"):
        upgrade_net_param(unknown_bottom, "old.prototxt")
    unknown_type = _text_net('layers { layer { name: "x" type: "warp" } }')
    with pytest.raises(NetError, match="V0 layer 'x': unknown layer type 'warp'"):
        upgrade_net_param(unknown_type, "old.prototxt")


def test_v0_data_layer_fields():
    param = _text_net("""
        layers {
          layer { name: "data" type: "data" source: "train_lmdb" batchsize: 64 rand_skip: 3
                  scale: 0.00390625 meanfile: "mean.binaryproto" cropsize: 4 mirror: true }
          top: "data" top: "label"
        }
        layers {
          layer { name: "win" type: "window_data" source: "w.txt" batchsize: 8
                  det_fg_threshold: 0.6 det_bg_threshold: 0.4 det_fg_fraction: 0.3
                  det_context_pad: 16 det_crop_mode: "square" }
          top: "w" top: "wl"
        }
        layers {
          layer { name: "img" type: "images" source: "list.txt" batchsize: 2
                  shuffle_images: true new_height: 10 new_width: 12 }
          top: "i" top: "il"
        }
        layers { layer { name: "lrn" type: "lrn" local_size: 3 alpha: 0.1 beta: 0.5 k: 2 }
                 bottom: "data" top: "lrn" }
        layers { layer { name: "cat" type: "concat" concat_dim: 1 }
                 bottom: "data" bottom: "lrn" top: "cat" }
    """)
    upgrade_net_param(param)
    data, win, img, lrn, cat = param.layer
    assert data.type == "Data"
    assert data.data_param == caffe_pb2.DataParameter(source="train_lmdb", batch_size=64,
                                                      rand_skip=3)
    assert data.transform_param == caffe_pb2.TransformationParameter(
        scale=0.00390625, mean_file="mean.binaryproto", crop_size=4, mirror=True)
    assert win.type == "WindowData"
    assert win.window_data_param == caffe_pb2.WindowDataParameter(
        source="w.txt", batch_size=8, fg_threshold=0.6, bg_threshold=0.4, fg_fraction=0.3,
        context_pad=16, crop_mode="square")
    assert img.type == "ImageData"
    assert img.image_data_param == caffe_pb2.ImageDataParameter(
        source="list.txt", batch_size=2, shuffle=True, new_height=10, new_width=12)
    assert lrn.type == "LRN"
    assert lrn.lrn_param == caffe_pb2.LRNParameter(local_size=3, alpha=0.1, beta=0.5, k=2)
    assert cat.type == "Concat" and cat.concat_param.concat_dim == 1


def test_v0_remaining_fields_and_types():
    param = _text_net("""
        layers { layer { name: "h5" type: "hdf5_data" source: "list.txt" batchsize: 16 }
                 top: "x" }
        layers { layer { name: "conv" type: "conv" num_output: 3 biasterm: false pad: 4
                         kernelsize: 5 stride: 2 group: 3 } bottom: "x" top: "c" }
        layers { layer { name: "stoch" type: "pool" pool: STOCHASTIC kernelsize: 4 stride: 5 }
                 bottom: "c" top: "p" }
        layers { layer { name: "fc" type: "innerproduct" num_output: 7 biasterm: false }
                 bottom: "p" top: "f" }
        layers { layer { name: "info" type: "infogain_loss" source: "H.binaryproto" }
                 bottom: "f" bottom: "x" }
        layers { layer { name: "out" type: "hdf5_output"
                         hdf5_output_param { file_name: "out.h5" } } bottom: "f" }
        layers { layer { name: "m" type: "multinomial_logistic_loss" } }
        layers { layer { name: "e" type: "euclidean_loss" } }
        layers { layer { name: "b" type: "bnll" } }
        layers { layer { name: "i" type: "im2col" } }
        layers { layer { name: "s" type: "split" } }
        layers { layer { name: "fl" type: "flatten" } }
    """)
    assert upgrade_net(param) is True
    h5, conv, stoch, fc, info, out, *rest = param.layer
    assert h5.hdf5_data_param == caffe_pb2.HDF5DataParameter(source="list.txt", batch_size=16)
    assert conv.convolution_param == caffe_pb2.ConvolutionParameter(
        num_output=3, bias_term=False, pad=[4], kernel_size=[5], stride=[2], group=3)
    assert stoch.pooling_param == caffe_pb2.PoolingParameter(
        pool=caffe_pb2.PoolingParameter.STOCHASTIC, kernel_size=4, stride=5)
    assert fc.inner_product_param == caffe_pb2.InnerProductParameter(num_output=7,
                                                                     bias_term=False)
    assert info.type == "InfogainLoss" and info.infogain_loss_param.source == "H.binaryproto"
    assert out.type == "HDF5Output" and out.hdf5_output_param.file_name == "out.h5"
    assert [layer.type for layer in rest] == [
        "MultinomialLogisticLoss", "EuclideanLoss", "BNLL", "Im2col", "Split", "Flatten"]


def test_v0_parameter_the_type_does_not_take_is_logged_and_skipped():
    param = _text_net("""
        input: "data"
        layers { layer { name: "relu" type: "relu" num_output: 3 } bottom: "data" top: "r" }
    """)
    with capture_log() as log:
        assert upgrade_net(param, "old.prototxt") is False
    assert ("ERROR", "Unknown parameter num_output for layer type relu") in log.levels()
    assert any("problems upgrading V0NetParameter" in m for m in log.messages)
    # (A bare input name without dimensions is dropped, as Caffe drops it.)
    assert [layer.type for layer in param.layer] == ["ReLU"]
    assert not param.layer[0].HasField("inner_product_param")


# --- V1 details ---------------------------------------------------------------------------------
def test_every_v1_type_and_param_message_is_upgraded():
    assert set(V1_TYPE_NAMES) == set(V1.LayerType.keys())
    v1_params = {f.name for f in V1.DESCRIPTOR.fields if f.name.endswith("_param")}
    assert set(V1_PARAM_FIELDS) == v1_params
    current = {f.name for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields}
    assert v1_params <= current


@pytest.mark.parametrize(("enum", "name"), [
    ("CONVOLUTION", "Convolution"), ("SOFTMAX_LOSS", "SoftmaxWithLoss"),
    ("HDF5_DATA", "HDF5Data"), ("IM2COL", "Im2col"), ("ABSVAL", "AbsVal"),
    ("SIGMOID_CROSS_ENTROPY_LOSS", "SigmoidCrossEntropyLoss"), ("NONE", "")])
def test_v1_type_names(enum, name):
    param = _text_net(f'layers {{ name: "l" type: {enum} }}')
    upgrade_net_param(param)
    assert param.layer[0].type == name


def test_v1_param_specs_rules_and_messages():
    param = _text_net("""
        layers {
          name: "ip" type: INNER_PRODUCT bottom: "x" top: "y"
          param: "w" blob_share_mode: PERMISSIVE blob_share_mode: STRICT
          blobs_lr: 0.5 weight_decay: 0 weight_decay: 2 weight_decay: 3
          loss_weight: 0.25
          include { phase: TEST min_level: 1 stage: "deploy" }
          exclude { not_stage: "x" }
          inner_product_param { num_output: 3 axis: 2 }
          blobs { shape { dim: 3 dim: 2 } data: [1, 2, 3, 4, 5, 6] }
          blobs { num: 1 channels: 1 height: 1 width: 3 data: [7, 8, 9] }
        }
    """)
    upgrade_net_param(param)
    ip = param.layer[0]
    expected = parse_text_proto("""
        name: "ip" type: "InnerProduct" bottom: "x" top: "y"
        param { name: "w" share_mode: PERMISSIVE lr_mult: 0.5 decay_mult: 0 }
        param { share_mode: STRICT decay_mult: 2 }
        param { decay_mult: 3 }
        loss_weight: 0.25
        include { phase: TEST min_level: 1 stage: "deploy" }
        exclude { not_stage: "x" }
        inner_product_param { num_output: 3 axis: 2 }
        blobs { shape { dim: 3 dim: 2 } data: [1, 2, 3, 4, 5, 6] }
        blobs { num: 1 channels: 1 height: 1 width: 3 data: [7, 8, 9] }
    """, caffe_pb2.LayerParameter(), "<expected>")
    assert ip == expected


def test_v1_data_transformation_fields_move_to_transform_param():
    param = _text_net("""
        layers { name: "d" type: DATA top: "data"
                 data_param { source: "db" batch_size: 4 scale: 0.5 mean_file: "m"
                              crop_size: 3 mirror: true backend: LMDB } }
        layers { name: "i" type: IMAGE_DATA top: "img"
                 image_data_param { source: "l.txt" crop_size: 2 } }
        layers { name: "w" type: WINDOW_DATA top: "win" window_data_param { scale: 2 } }
    """)
    with capture_log() as log:
        upgrade_net_param(param, "old.prototxt")
    assert ("Attempting to upgrade input file specified using deprecated transformation "
            "parameters: old.prototxt") in log.messages
    d, i, w = param.layer
    assert d.data_param == caffe_pb2.DataParameter(source="db", batch_size=4,
                                                   backend=caffe_pb2.DataParameter.LMDB)
    assert d.transform_param == caffe_pb2.TransformationParameter(
        scale=0.5, mean_file="m", crop_size=3, mirror=True)
    assert i.transform_param.crop_size == 2 and not i.image_data_param.HasField("crop_size")
    # Caffe moves WindowData's scale too (and WindowData then reads the default 1).
    assert w.transform_param.scale == 2 and not w.window_data_param.HasField("scale")


def test_current_format_deprecated_transform_fields_are_only_warned_about():
    param = _text_net('layer { name: "d" type: "Data" data_param { source: "db" scale: 0.5 } }')
    with capture_log() as log:
        upgrade_net_param(param)
    assert param.layer[0].data_param.scale == 0.5  # left alone, as Caffe leaves it
    assert any(level == "WARNING" and "data_param.scale is deprecated and ignored" in m
               for level, m in log.levels())


# --- weights --------------------------------------------------------------------------------------
def _legacy_blob(array: np.ndarray) -> caffe_pb2.BlobProto:
    """A BlobProto with Caffe's legacy num/channels/height/width, right-aligned to 4 axes."""
    dims = (1,) * (4 - array.ndim) + array.shape
    blob = caffe_pb2.BlobProto(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
    blob.data.extend(array.ravel().astype(np.float32))
    return blob


def _v1_caffemodel(net: Net) -> caffe_pb2.NetParameter:
    """The trained net as an old Caffe would have saved it: V1 layers, legacy blob shapes."""
    model = caffe_pb2.NetParameter(name="v1net")
    v1_types = {value: key for key, value in V1_TYPE_NAMES.items()}
    for name, layer in zip(net.layer_names, net.layers):
        if layer.type_name in ("Input", "Split"):
            continue
        v1 = model.layers.add(name=name, type=V1.LayerType.Value(v1_types[layer.type_name]))
        for blob in layer.blobs:
            v1.blobs.append(_legacy_blob(blob.data))
    return model


def test_v1_caffemodel_with_legacy_shapes_loads_into_the_upgraded_net(tmp_path):
    source = _build(read_net_param(DATA / "v1_net.prototxt"))
    model = _v1_caffemodel(source)
    # An InnerProduct weight (5, 36) is stored as 1 x 1 x 5 x 36, its bias as 1 x 1 x 1 x 5.
    ip = next(layer for layer in model.layers if layer.name == "ip_a")
    assert [(b.num, b.channels, b.height, b.width) for b in ip.blobs] == [(1, 1, 5, 36),
                                                                           (1, 1, 1, 5)]
    path = tmp_path / "old.caffemodel"
    write_binary_proto(path, model)
    with capture_log() as log:
        weights = read_weights(str(path))
    assert (f"Attempting to upgrade input file specified using deprecated V1LayerParameter: "
            f"{path}") in log.messages
    assert not weights.layers and [layer.type for layer in weights.layer][:2] == [
        "Convolution", "ReLU"]
    target = _build(_twin("v1"))
    target.copy_trained_layers_from(weights, str(path))
    for name, blobs in source.params.items():
        for mine, theirs in zip(target.params[name], blobs):
            np.testing.assert_array_equal(mine.data, theirs.data)


def test_legacy_shape_mismatch_is_reported(tmp_path):
    source = _build(read_net_param(DATA / "v1_net.prototxt"))
    model = _v1_caffemodel(source)
    conv = next(layer for layer in model.layers if layer.name == "conv1")
    conv.blobs[0].channels = 2  # 4 x 2 x 3 x 3 instead of 4 x 3 x 3 x 3
    path = tmp_path / "bad.caffemodel"
    write_binary_proto(path, model)
    target = _build(_twin("v1"))
    with pytest.raises(WeightsError, match="layer 'conv1': shape mismatch, source param shape "
                                           "is 4 2 3 3, target param shape is 4 3 3 3"):
        target.copy_trained_layers_from(read_weights(str(path)), str(path))


# --- solvers ------------------------------------------------------------------------------------
def test_solver_with_embedded_v1_net_is_upgraded(tmp_path):
    v1 = (DATA / "v1_net.prototxt").read_text()
    path = tmp_path / "solver.prototxt"
    path.write_text(f"solver_type: NESTEROV\nbase_lr: 0.1\nnet_param {{\n{v1}\n}}\n")
    param = read_solver_param(path)
    assert param.type == "Nesterov" and not param.HasField("solver_type")
    assert param.net_param == _twin("v1")


# --- commands -----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["upgrade-net", "upgrade_net_proto_text"])
@pytest.mark.parametrize("version", ["v0", "v1"])
def test_upgrade_net_command_text(tmp_path, command, version):
    out = tmp_path / "new.prototxt"
    with capture_log() as log:
        assert main([command, str(DATA / f"{version}_net.prototxt"), str(out)]) == 0
    assert f"Wrote upgraded NetParameter text proto to {out}" in log.messages
    written = read_text_proto(out, caffe_pb2.NetParameter())
    assert written == read_net_param(DATA / f"{version}_net.prototxt") == _twin(version)


@pytest.mark.parametrize("argv", [[], ["--binary"]])
def test_upgrade_net_command_binary(tmp_path, argv):
    source = _build(read_net_param(DATA / "v1_net.prototxt"))
    old = tmp_path / ("old.caffemodel" if not argv else "old.weights")
    write_binary_proto(old, _v1_caffemodel(source))
    out = tmp_path / "new.caffemodel"
    with capture_log() as log:
        assert main(["upgrade-net", *argv, str(old), str(out)]) == 0
    assert f"Wrote upgraded NetParameter binary proto to {out}" in log.messages
    written = read_binary_proto(out, caffe_pb2.NetParameter())
    expected = upgrade_net_param(read_binary_proto(old, caffe_pb2.NetParameter()))
    assert written == expected and not written.layers and len(written.layer)


def test_upgrade_net_proto_binary_alias(tmp_path):
    old = tmp_path / "old.bin"
    write_binary_proto(old, _text_net('layers { name: "r" type: RELU bottom: "x" top: "x" }'))
    assert main(["upgrade_net_proto_binary", str(old), str(tmp_path / "new.bin")]) == 0
    written = read_binary_proto(tmp_path / "new.bin", caffe_pb2.NetParameter())
    assert [(layer.name, layer.type) for layer in written.layer] == [("r", "ReLU")]


def test_upgrade_net_command_on_a_current_net(tmp_path):
    out = tmp_path / "same.prototxt"
    source = DATA / "v1_net_upgraded.prototxt"
    with capture_log() as log:
        assert main(["upgrade-net", str(source), str(out)]) == 0
    assert ("ERROR", f"File already in latest proto format: {source}") in log.levels()
    assert read_text_proto(out, caffe_pb2.NetParameter()) == _twin("v1")


def test_upgrade_net_command_with_problems_exits_1(tmp_path):
    old = tmp_path / "old.prototxt"
    old.write_text('layers { layer { name: "r" type: "relu" num_output: 2 } }')
    assert main(["upgrade-net", str(old), str(tmp_path / "new.prototxt")]) == 1
    assert (tmp_path / "new.prototxt").exists()


def test_upgrade_net_command_bad_input_is_one_line(tmp_path, capsys):
    old = tmp_path / "old.prototxt"
    old.write_text("layers { nme: 1 }")
    assert main(["upgrade-net", str(old), str(tmp_path / "new.prototxt")]) == 1
    err = capsys.readouterr().err
    assert f"pyforge: error: {old}:1:10:" in err and "did you mean 'name'?" in err


@pytest.mark.parametrize("command", ["upgrade-solver", "upgrade_solver_proto_text"])
def test_upgrade_solver_command(tmp_path, command):
    old = tmp_path / "solver.prototxt"
    old.write_text('net: "net.prototxt"\nsolver_type: ADAM\nbase_lr: 0.001\nmomentum: 0.9\n'
                   'lr_policy: "fixed"\n')
    out = tmp_path / "new_solver.prototxt"
    with capture_log() as log:
        assert main([command, str(old), str(out)]) == 0
    assert f"Wrote upgraded SolverParameter text proto to {out}" in log.messages
    assert any(m.startswith("Attempting to upgrade input file specified using deprecated "
                            "'solver_type' field (enum)'") for m in log.messages)
    written = read_text_proto(out, caffe_pb2.SolverParameter())
    expected = read_text_proto(old, caffe_pb2.SolverParameter())
    upgrade_solver_param(expected, str(old), default_snapshot_prefix=False)
    assert written == expected
    assert written.type == "Adam" and not written.HasField("solver_type")
    # The snapshot_prefix default belongs to reading a solver for training, not to the file.
    assert not written.HasField("snapshot_prefix")
