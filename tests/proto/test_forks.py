"""Caffe forks' fields: their prototxts parse, their binary files load, unknown names get hints.

The binary files here are written byte by byte in each fork's own numbering (its caffe.proto),
so they are what the fork's Caffe writes, not what pyforge's schema would.
"""

from __future__ import annotations

import struct

import pytest

from pyforge.errors import ParseError
from pyforge.io.snapshot import read_weights
from pyforge.proto import caffe_pb2, read_binary_proto, read_net_param


# --- protobuf wire encoding, for files in a fork's numbering -------------------------------------
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def float_field(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)


def bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def layer(name: str, layer_type: str, *fields: bytes) -> bytes:
    """One NetParameter.layer (field 100) entry."""
    body = bytes_field(1, name.encode()) + bytes_field(2, layer_type.encode()) + b"".join(fields)
    return bytes_field(100, body)


def blob(*values: float) -> bytes:
    """LayerParameter.blobs (7): a BlobProto with shape {dim: n} (7) and packed data (5)."""
    data = b"".join(struct.pack("<f", v) for v in values)
    shape = bytes_field(1, _varint(len(values)))
    return bytes_field(7, bytes_field(5, data) + bytes_field(7, shape))


def load(tmp_path, *layers: bytes) -> caffe_pb2.NetParameter:
    path = tmp_path / "fork.caffemodel"
    path.write_bytes(b"".join(layers))
    return read_binary_proto(path, caffe_pb2.NetParameter())


# --- text: every fork field parses ------------------------------------------------------------
FORK_NET = """
name: "forks"
layer { name: "p" type: "Permute" bottom: "x" top: "p" permute_param { order: 0 order: 2 } }
layer { name: "n" type: "Normalize" bottom: "x" top: "n"
  norm_param { across_spatial: false channel_shared: false eps: 1e-6
               scale_filler { type: "constant" value: 20 } } }
layer { name: "pb" type: "PriorBox" bottom: "x" bottom: "data" top: "pb"
  prior_box_param { min_size: 30 max_size: 60 aspect_ratio: 2 flip: true clip: false
                    variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 img_size: 300
                    step: 8 offset: 0.5 reduce_boxes: false } }
layer { name: "d" type: "DetectionOutput" bottom: "l" bottom: "c" bottom: "pb" top: "d"
  detection_output_param { num_classes: 21 share_location: true background_label_id: 0
    nms_param { nms_threshold: 0.45 top_k: 400 eta: 1 } code_type: CENTER_SIZE
    keep_top_k: 200 confidence_threshold: 0.01 variance_encoded_in_target: false
    save_output_param { label_map_file: "labels.prototxt"
                        resize_param { prob: 1 resize_mode: WARP height: 300 width: 300
                                       interp_mode: LINEAR } } } }
layer { name: "r6" type: "ReLU6" bottom: "x" top: "x" relu6_param { engine: CAFFE } }
layer { name: "roi" type: "ROIPooling" bottom: "x" bottom: "rois" top: "roi"
  roi_pooling_param { pooled_h: 7 pooled_w: 7 spatial_scale: 0.0625 } }
layer { name: "sl1" type: "SmoothL1Loss" bottom: "a" bottom: "b" top: "sl1"
  smooth_l1_loss_param { sigma: 3 } }
layer { name: "ps" type: "PSROIPooling" bottom: "x" bottom: "rois" top: "ps"
  psroi_pooling_param { spatial_scale: 0.0625 output_dim: 21 group_size: 7 } }
layer { name: "prop" type: "Proposal" bottom: "s" bottom: "b" bottom: "im" top: "rois"
  proposal_param { feat_stride: 16 ratio: 0.5 ratio: 1 scale: 8 nms_thresh: 0.7 } }
layer { name: "i" type: "Interp" bottom: "x" top: "i" interp_param { zoom_factor: 8 } }
layer { name: "bn1" type: "BN" bottom: "x" top: "x"
  bn_param { slope_filler { type: "constant" value: 1 } momentum: 0.95 frozen: true } }
layer { name: "bn2" type: "BN" bottom: "x" top: "x"
  bn_param { bn_mode: INFERENCE scale_filler { type: "constant" value: 1 } } }
layer { name: "u" type: "Upsample" bottom: "x" bottom: "mask" top: "u"
  upsample_param { scale: 2 upsample_h: 45 upsample_w: 60 } }
layer { name: "di" type: "DenseImageData" top: "data" top: "label"
  dense_image_data_param { source: "train.txt" batch_size: 4 shuffle: true } }
layer { name: "sc" type: "ShuffleChannel" bottom: "x" top: "sc" shuffle_channel_param { group: 3 } }
layer { name: "drop" type: "Dropout" bottom: "x" top: "x"
  dropout_param { dropout_ratio: 0.5 scale_train: false sample_weights_test: true } }
layer { name: "pool" type: "Pooling" bottom: "x" top: "pool"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }
layer { name: "mbl" type: "MultiBoxLoss" bottom: "l" bottom: "c" bottom: "pb" bottom: "gt"
  multibox_loss_param { loc_loss_type: SMOOTH_L1 num_classes: 21 mining_type: MAX_NEGATIVE
                        nms_param { nms_threshold: 0.45 } } }
layer { name: "ev" type: "DetectionEvaluate" bottom: "d" bottom: "gt" top: "ev"
  detection_evaluate_param { num_classes: 21 overlap_threshold: 0.5 } }
"""


def test_every_fork_field_parses_from_text(tmp_path):
    path = tmp_path / "forks.prototxt"
    path.write_text(FORK_NET)
    net = read_net_param(path)
    by_name = {layer.name: layer for layer in net.layer}
    assert list(by_name["p"].permute_param.order) == [0, 2]
    assert by_name["n"].norm_param.scale_filler.value == 20
    assert list(by_name["pb"].prior_box_param.variance) == pytest.approx([0.1, 0.1, 0.2, 0.2])
    detection = by_name["d"].detection_output_param
    assert detection.code_type == caffe_pb2.PriorBoxParameter.CENTER_SIZE
    assert detection.nms_param.top_k == 400
    assert detection.save_output_param.resize_param.height == 300
    assert by_name["ps"].psroi_pooling_param.group_size == 7
    assert list(by_name["prop"].proposal_param.ratio) == [0.5, 1.0]
    assert by_name["i"].interp_param.zoom_factor == 8
    assert by_name["bn1"].bn_param.frozen
    assert by_name["bn1"].bn_param.momentum == pytest.approx(0.95)
    assert by_name["bn2"].bn_param.bn_mode == caffe_pb2.BNParameter.INFERENCE
    assert by_name["u"].upsample_param.upsample_w == 60
    assert by_name["sc"].shuffle_channel_param.group == 3
    dropout = by_name["drop"].dropout_param
    assert not dropout.scale_train and dropout.sample_weights_test
    assert not by_name["pool"].pooling_param.ceil_mode
    assert by_name["r6"].relu6_param.engine == caffe_pb2.ReLU6Parameter.CAFFE


def test_fork_defaults_are_the_forks():
    assert caffe_pb2.PriorBoxParameter().clip is False  # SSD's default; OpenCV's schema says true
    assert caffe_pb2.PriorBoxParameter().flip is True
    assert caffe_pb2.PriorBoxParameter().offset == 0.5
    assert caffe_pb2.DetectionOutputParameter().keep_top_k == -1
    assert caffe_pb2.NonMaximumSuppressionParameter().nms_threshold == pytest.approx(0.3)
    assert caffe_pb2.NormalizeParameter().eps == pytest.approx(1e-10)
    assert caffe_pb2.DropoutParameter().scale_train is True
    assert caffe_pb2.PoolingParameter().ceil_mode is True
    assert caffe_pb2.ProposalParameter().post_nms_topn == 300
    assert caffe_pb2.UpsampleParameter().scale == 2


# --- text: hints for names no fork (or no supported fork layer) defines --------------------------
def _parse_error(tmp_path, body: str) -> str:
    path = tmp_path / "net.prototxt"
    path.write_text('layer {\n  name: "x"\n  ' + body + "\n}\n")
    with pytest.raises(ParseError) as info:
        read_net_param(path)
    assert info.value.message.startswith(f"{path}:3:3: ")
    assert "\n" not in info.value.message
    return info.value.message


def test_a_misspelt_fork_field_names_the_fork_that_defines_the_close_name(tmp_path):
    message = _parse_error(tmp_path, "permut_param { order: 0 }")
    assert 'no field named "permut_param"' in message
    assert "did you mean 'permute_param' (SSD (weiliu89/caffe, branch ssd))?" in message
    message = _parse_error(tmp_path, "interp_params { zoom_factor: 2 }")
    assert "did you mean 'interp_param' (PSPNet (hszhao/PSPNet) / DeepLab)?" in message


def test_a_misspelt_bvlc_field_gets_the_close_name_without_a_fork(tmp_path):
    message = _parse_error(tmp_path, "convolution_parm { num_output: 2 }")
    assert message.endswith("did you mean 'convolution_param'?")


def test_a_field_no_fork_defines_stays_an_error(tmp_path):
    message = _parse_error(tmp_path, "teleport_param { }")
    assert 'no field named "teleport_param"' in message
    assert "defined by" not in message


def test_a_fork_field_pyforge_does_not_read_says_which_fork_and_why(tmp_path):
    message = _parse_error(tmp_path, "box_annotator_ohem_param { roi_per_img: 128 }")
    assert "R-FCN (daijifeng001/caffe-rfcn) for its OHEM training layer" in message


def test_a_fork_field_inside_a_bvlc_message_parses_and_a_misspelling_is_located(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text('layer {\n  name: "x"\n  pooling_param { ceil_mod: false }\n}\n')
    with pytest.raises(ParseError) as info:
        read_net_param(path)
    assert info.value.message.startswith(f"{path}:3:19: ")
    assert "did you mean 'ceil_mode' (the ceil_mode forks" in info.value.message


# --- binary: each fork's numbering loads into pyforge's fields ----------------------------------
def test_pspnet_interp_143_and_bvlc_input_143(tmp_path):
    net = load(
        tmp_path,
        # InputParameter { shape { dim: [1, 3] (packed) } }
        layer("data", "Input", bytes_field(143, bytes_field(1, bytes_field(1, b"\x01\x03")))),
        layer("interp", "Interp", bytes_field(143, varint_field(1, 33) + varint_field(2, 65)
                                              + varint_field(5, -1))),
    )
    data, interp = net.layer
    assert list(data.input_param.shape[0].dim) == [1, 3]
    assert not interp.HasField("input_param")
    assert (interp.interp_param.height, interp.interp_param.width) == (33, 65)
    assert interp.interp_param.pad_beg == -1


def test_segnet_and_enet_bn_45_renumbered_and_pspnet_bn_152(tmp_path):
    filler = bytes_field(1, b"constant") + float_field(2, 1.0)
    net = load(
        tmp_path,
        layer("segnet_bn", "BN", bytes_field(45, bytes_field(1, filler) + varint_field(3, 1)),
              blob(1.0, 2.0)),
        layer("pspnet_bn", "BN", bytes_field(152, bytes_field(1, filler) + float_field(3, 0.95)
                                             + varint_field(5, 1))),
    )
    segnet, pspnet = net.layer
    assert segnet.bn_param.bn_mode == caffe_pb2.BNParameter.INFERENCE
    assert segnet.bn_param.scale_filler.type == "constant"
    assert not segnet.bn_param.HasField("slope_filler")
    assert list(segnet.blobs[0].data) == [1.0, 2.0]
    assert pspnet.bn_param.slope_filler.value == 1.0
    assert pspnet.bn_param.momentum == pytest.approx(0.95) and pspnet.bn_param.frozen
    assert pspnet.bn_param.bn_mode == caffe_pb2.BNParameter.LEARN


def test_segnet_upsample_137_is_not_bvlc_embed_137_and_loses_nothing(tmp_path):
    # EmbedParameter's field 3 is a bool: re-encoding a parsed embed_param would turn
    # scale_w 4 into 1. The fork's bytes are read instead.
    net = load(
        tmp_path,
        layer("up", "Upsample", bytes_field(137, varint_field(2, 3) + varint_field(3, 4)
                                            + varint_field(6, 45))),
        layer("embed", "Embed", bytes_field(137, varint_field(1, 10) + varint_field(2, 100))),
        layer("up_enet", "Upsample", bytes_field(147, varint_field(1, 2) + varint_field(7, 60))),
        layer("swish", "Swish", bytes_field(147, float_field(1, 2.0))),
    )
    up, embed, up_enet, swish = net.layer
    assert (up.upsample_param.scale_h, up.upsample_param.scale_w) == (3, 4)
    assert up.upsample_param.upsample_h == 45 and not up.HasField("embed_param")
    assert (embed.embed_param.num_output, embed.embed_param.input_dim) == (10, 100)
    assert up_enet.upsample_param.upsample_w == 60 and not up_enet.HasField("swish_param")
    assert swish.swish_param.beta == 2.0


def test_py_rfcn_microsoft_numbers_147_148_149_and_rfcn_10001(tmp_path):
    # Microsoft/caffe's smooth_l1_loss_param 148 would read as ClipParameter, whose required
    # min/max are missing: without the fork numbers the file would not load at all.
    net = load(
        tmp_path,
        layer("roi", "ROIPooling", bytes_field(147, varint_field(1, 7) + varint_field(2, 6)
                                               + float_field(3, 0.0625))),
        layer("loss", "SmoothL1Loss", bytes_field(148, float_field(1, 3.0))),
        layer("ps_ms", "PSROIPooling", bytes_field(149, float_field(1, 0.0625)
                                                   + varint_field(2, 21) + varint_field(3, 7))),
        layer("ps_rfcn", "PSROIPooling", bytes_field(10001, float_field(1, 0.125)
                                                     + varint_field(2, 8) + varint_field(3, 3))),
        layer("ps_cv", "PSROIPooling", bytes_field(10002, float_field(1, 0.5)
                                                   + varint_field(2, 2) + varint_field(3, 2))),
        layer("clip", "Clip", bytes_field(148, float_field(1, -1.0) + float_field(2, 1.0))),
    )
    roi, loss, ps_ms, ps_rfcn, ps_cv, clip = net.layer
    assert (roi.roi_pooling_param.pooled_h, roi.roi_pooling_param.pooled_w) == (7, 6)
    assert roi.roi_pooling_param.spatial_scale == 0.0625 and not roi.HasField("swish_param")
    assert loss.smooth_l1_loss_param.sigma == 3.0 and not loss.HasField("clip_param")
    assert (ps_ms.psroi_pooling_param.output_dim, ps_ms.psroi_pooling_param.group_size) == (21, 7)
    assert ps_rfcn.psroi_pooling_param.spatial_scale == 0.125
    assert ps_cv.psroi_pooling_param.output_dim == 2
    assert (clip.clip_param.min, clip.clip_param.max) == (-1.0, 1.0)


def test_opencv_proposal_201_and_ssd_multibox_loss_201(tmp_path):
    net = load(
        tmp_path,
        layer("proposal", "Proposal", bytes_field(201, varint_field(1, 16) + float_field(4, 0.5)
                                                  + float_field(4, 2.0) + varint_field(7, 300))),
        layer("mbox_loss", "MultiBoxLoss", bytes_field(201, varint_field(4, 21)
                                                       + float_field(7, 0.5))),
    )
    proposal, loss = net.layer
    assert proposal.proposal_param.feat_stride == 16
    assert list(proposal.proposal_param.ratio) == [0.5, 2.0]
    assert proposal.proposal_param.post_nms_topn == 300
    assert not proposal.HasField("multibox_loss_param")
    assert loss.multibox_loss_param.num_classes == 21


def test_segnet_dense_image_data_138_enet_46_and_relu6_addon_100000(tmp_path):
    net = load(
        tmp_path,
        layer("segnet", "DenseImageData", bytes_field(138, bytes_field(1, b"list.txt")
                                                      + varint_field(2, 4))),
        layer("enet", "DenseImageData", bytes_field(46, varint_field(13, 4))),
        layer("tile", "Tile", bytes_field(138, varint_field(2, 3))),
        layer("relu6", "ReLU6", bytes_field(100000, float_field(1, 0.1))),
        layer("relu6_ssd", "ReLU6", bytes_field(208, varint_field(2, 1))),
    )
    segnet, enet, tile, relu6, relu6_ssd = net.layer
    assert segnet.dense_image_data_param.source == "list.txt"
    assert segnet.dense_image_data_param.batch_size == 4 and not segnet.HasField("tile_param")
    assert enet.dense_image_data_param.label_divide_factor == 4
    assert tile.tile_param.tiles == 3
    assert relu6.relu6_param.negative_slope == pytest.approx(0.1)
    assert relu6_ssd.relu6_param.engine == caffe_pb2.ReLU6Parameter.CAFFE


def test_ssd_fields_at_their_own_numbers(tmp_path):
    net = load(
        tmp_path,
        layer("prior", "PriorBox", bytes_field(203, float_field(1, 30.0) + float_field(2, 60.0)
                                               + varint_field(5, 1))),
        layer("permute", "Permute", bytes_field(202, varint_field(1, 0) + varint_field(1, 2)
                                                + varint_field(1, 3) + varint_field(1, 1))),
        layer("det", "DetectionOutput", bytes_field(204, varint_field(1, 21)
                                                    + bytes_field(4, float_field(1, 0.45)))),
        layer("norm", "Normalize", bytes_field(206, varint_field(1, 0)), blob(20.0)),
    )
    prior, permute, det, norm = net.layer
    assert list(prior.prior_box_param.min_size) == [30.0] and prior.prior_box_param.clip
    assert list(permute.permute_param.order) == [0, 2, 3, 1]
    assert det.detection_output_param.nms_param.nms_threshold == pytest.approx(0.45)
    assert not norm.norm_param.across_spatial and list(norm.blobs[0].data) == [20.0]


def test_shared_numbers_inside_one_message_keep_bvlcs_then_the_wider_forks_meaning(tmp_path):
    """Pooling 13 and Dropout 2 cannot be told apart by layer type (README: Caffe forks)."""
    net = load(
        tmp_path,
        # DenseNet fork: ceil_mode false (13: 0); BVLC reads round_mode CEIL.
        layer("pool", "Pooling", bytes_field(121, varint_field(2, 3) + varint_field(13, 0))),
        # Bayesian SegNet: sample_weights_test true (2: 1); read as Faster R-CNN's scale_train.
        layer("drop", "Dropout", bytes_field(108, varint_field(2, 1))),
    )
    pool, drop = net.layer
    assert pool.pooling_param.round_mode == caffe_pb2.PoolingParameter.CEIL
    assert pool.pooling_param.HasField("round_mode")
    assert not pool.pooling_param.HasField("ceil_mode")
    assert drop.dropout_param.scale_train and not drop.dropout_param.sample_weights_test


def test_fork_weights_file_loads_through_read_weights(tmp_path):
    path = tmp_path / "segnet.caffemodel"
    path.write_bytes(
        layer("bn", "BN", bytes_field(45, varint_field(3, 1)), blob(1.0), blob(0.5))
        + layer("up", "Upsample", bytes_field(137, varint_field(1, 2)))
    )
    net = read_weights(str(path))
    assert [len(layer.blobs) for layer in net.layer] == [2, 0]
    assert net.layer[0].bn_param.bn_mode == caffe_pb2.BNParameter.INFERENCE


def test_a_fork_field_that_does_not_decode_names_the_layer(tmp_path):
    path = tmp_path / "bad.caffemodel"
    # Field 45 is unknown to pyforge's schema, so protobuf keeps its bytes unread; they are
    # not a message (a truncated varint).
    path.write_bytes(layer("bn7", "BN", bytes_field(45, b"\x08\xff")))
    with pytest.raises(ParseError) as info:
        read_binary_proto(path, caffe_pb2.NetParameter())
    assert info.value.message == (
        f"{path}: layer 'bn7' (type BN): field 45, SegNet (alexgkendall/caffe-segnet), "
        "ENet (TimoSaemann/caffe-enet)'s bn_param, does not decode as one"
    )
