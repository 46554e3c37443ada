"""Mini nets in the forks' published layouts (tests/data/forks/*.prototxt): PSPNet, SegNet,
ENet, ShuffleNet, an SE block with Axpy, Faster R-CNN and R-FCN test nets. Each builds and
runs forward and backward (``pyforge time --iterations=1`` and the Net API), and equals
OpenCV 4's dnn wherever OpenCV runs it."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from pyforge.cli import main
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto, write_binary_proto
from tests.forks.opencv_compare import Result, assert_close, build_pyforge_net, cv2, opencv_net
from tests.logcapture import capture_log

F = np.float32
NETS = Path(__file__).resolve().parent.parent / "data" / "forks"


def segnet_prototxt(folder: Path) -> Path:
    """SegNet's net with its DenseImageData pairs: 14x16 colour PNGs and label PNGs (classes
    0-3 and the ignored 11), written into ``folder``."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 256, (14, 16, 3), np.uint8))
        label = rng.choice(np.array([0, 1, 2, 3, 11], np.uint8), (14, 16))
        cv2.imwrite(str(folder / f"lab{i}.png"), label)
        lines.append(f"img{i}.png lab{i}.png")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    path = folder / "segnet_mini.prototxt"
    path.write_text((NETS / "segnet_mini.prototxt").read_text().replace("@DIR@", str(folder)))
    return path


def net_path(name: str, folder: Path) -> Path:
    return segnet_prototxt(folder) if name == "segnet_mini" else NETS / f"{name}.prototxt"


ALL = ["pspnet_mini", "segnet_mini", "enet_mini", "shufflenet_mini", "se_axpy_mini",
       "faster_rcnn_mini", "rfcn_mini"]


@pytest.mark.parametrize("name", ALL)
def test_pyforge_time_runs_forward_and_backward(tmp_path, name):
    model = net_path(name, tmp_path)
    with capture_log() as log:
        assert main(["time", f"--model={model}", "--iterations=1"]) == 0
    lines = log.messages
    assert "Testing for 1 iterations." in lines
    assert any(re.fullmatch(r"Average Forward-Backward: [\d.e+-]+ ms\.", m) for m in lines)
    # Every fork layer of the net has its forward and backward time in the table.
    fork_types = {"BN", "Interp", "Upsample", "DenseImageData", "ShuffleChannel",
                  "ConvolutionDepthwise", "Axpy", "Proposal", "ROIPooling", "PSROIPooling"}
    fork_layers = [layer.name for layer in load(model).layer if layer.type in fork_types]
    assert fork_layers
    for layer in fork_layers:
        for pass_ in ("forward", "backward"):
            assert any(re.fullmatch(rf" *{re.escape(layer)}\t{pass_}: \S+ ms\.", m)
                       for m in lines), f"no {pass_} time for {layer}"


def load(path: Path) -> caffe_pb2.NetParameter:
    return parse_text_proto(path.read_text(), caffe_pb2.NetParameter(), str(path))


def train_net(path: Path, seed: int = 0) -> Net:
    param = load(path)
    param.state.phase = caffe_pb2.TRAIN
    return Net(param, np.random.default_rng(seed), logging.getLogger("mini_nets"),
               source_file=str(path))


def fill_inputs(net: Net, rng: np.random.Generator, classes: int = 0) -> None:
    for name in ("data", "label", "im_info"):
        if name not in net.blobs or net.layers[0].type == "DenseImageData":
            continue
        blob = net.blobs[name]
        if name == "label":
            blob.data[...] = rng.integers(0, classes, blob.shape)
        elif name == "im_info":
            blob.data[...] = [[64, 80, 1.0]]
        else:
            blob.data[...] = rng.standard_normal(blob.shape)


@pytest.mark.parametrize(("name", "classes", "checked"), [
    ("pspnet_mini", 3, ["conv1_1_3x3_s2", "conv5_3_pool2_conv", "conv6"]),
    ("segnet_mini", 4, ["conv1_1", "conv1_1_bn", "conv2_1_D", "conv1_1_D"]),
    ("enet_mini", 5, ["conv0_1", "bn0_1", "conv1_0_4", "deconv4_0_1", "fullconv"]),
])
def test_training_nets_learn_through_every_fork_layer(tmp_path, name, classes, checked):
    """One forward/backward of the training nets: a finite loss, finite gradients, and a
    gradient in the layers before and after the fork layers (BN, Interp, Upsample)."""
    net = train_net(net_path(name, tmp_path))
    fill_inputs(net, np.random.default_rng(1), classes)
    loss = net.forward_backward()
    for layer in net.layers:
        if hasattr(layer, "close"):
            layer.close()  # DenseImageData's prefetch thread
    assert np.isfinite(loss) and loss > 0
    by_name = dict(zip(net.layer_names, net.layers))
    for layer_name in checked:
        weight = by_name[layer_name].blobs[0]
        assert np.isfinite(weight.diff).all() and np.abs(weight.diff).sum() > 0, layer_name


def run_against_opencv(tmp_path: Path, name: str, inputs: dict, pairs, rows_from=None,
                       opencv_text: str | None = None):
    """pyforge (TEST phase, seeded random weights) and OpenCV on the same .caffemodel;
    ``pairs`` are (OpenCV layer name, pyforge blob name). Blobs with one row per ROI are
    compared over pyforge's proposals (OpenCV pads to post_nms_topn rows)."""
    text = (NETS / f"{name}.prototxt").read_text()
    path = tmp_path / f"{name}.prototxt"
    path.write_text(text)
    net = build_pyforge_net(text, path, seed=7)
    write_binary_proto(tmp_path / "weights.caffemodel", net.to_proto())
    for blob_name, array in inputs.items():
        net.blobs[blob_name].data[...] = array
    net.forward_from_to()
    theirs_path = path
    if opencv_text is not None:
        theirs_path = tmp_path / "opencv.prototxt"
        theirs_path.write_text(opencv_text)
    theirs_net = opencv_net(theirs_path, tmp_path / "weights.caffemodel")
    for blob_name, array in inputs.items():
        theirs_net.setInput(array, blob_name)
    theirs = theirs_net.forward([layer for layer, _ in pairs])
    rows = len(net.blobs[rows_from].data) if rows_from else None
    results = []
    for (layer, blob), their in zip(pairs, theirs):
        ours = net.blobs[blob].data
        if rows is not None and len(ours) == rows and len(their) > rows:
            if layer == "proposal":
                assert not their[rows:].any()  # OpenCV's padding rows are zero
            their = their[:rows]
        results.append(Result(blob, ours.copy(), np.asarray(their)))
    assert_close(results)
    return net, results


def test_shufflenet_matches_opencv(tmp_path):
    data = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(F)
    pairs = [(n, n) for n in ("pool1", "shuffle1", "resx1_conv2", "resx1_concat",
                              "shuffle2", "resx2_conv2", "resx2_elewise", "fc", "prob")]
    _, results = run_against_opencv(tmp_path, "shufflenet_mini", {"data": data}, pairs)
    assert results[-1].ours.shape == (2, 10)


def test_se_block_matches_opencv_given_axpys_operands_swapped(tmp_path):
    """OpenCV builds Axpy as scale * bottom[2] + bottom[1] (tests/forks/
    test_opencv_resample_channel.py); given the two operands swapped it computes the fork's
    scale * bottom[1] + bottom[2], which pyforge computes from the net as written."""
    text = (NETS / "se_axpy_mini.prototxt").read_text()
    swapped = text.replace('bottom: "conv2_1x1_increase" bottom: "conv1_relu"',
                           'bottom: "conv1_relu" bottom: "conv2_1x1_increase"')
    assert swapped != text
    data = np.random.default_rng(3).standard_normal((1, 3, 12, 12)).astype(F)
    pairs = [(n, n) for n in ("conv2_1x1_increase", "conv2_prob", "conv2", "fc", "prob")]
    run_against_opencv(tmp_path, "se_axpy_mini", {"data": data}, pairs, opencv_text=swapped)


DETECTION_INPUTS = {"im_info": np.array([[64, 80, 1.0]], F)}


@pytest.mark.parametrize(("name", "pairs"), [
    ("faster_rcnn_mini", [("rpn_cls_prob_reshape", "rpn_cls_prob_reshape"),
                          ("proposal", "rois"), ("roi_pool5", "pool5"), ("relu7", "fc7"),
                          ("cls_prob", "cls_prob"), ("bbox_pred", "bbox_pred")]),
    ("rfcn_mini", [("proposal", "rois"), ("psroipooled_cls_rois", "psroipooled_cls_rois"),
                   ("ave_cls_score_rois", "cls_score"), ("cls_prob", "cls_prob"),
                   ("ave_bbox_pred_rois", "bbox_pred")]),
])
def test_detection_test_nets_match_opencv(tmp_path, name, pairs):
    data = np.random.default_rng(4).standard_normal((1, 3, 64, 80)).astype(F)
    net, results = run_against_opencv(tmp_path, name, {"data": data, **DETECTION_INPUTS},
                                      pairs, rows_from="rois")
    rois = net.blobs["rois"].data
    assert 4 < len(rois) <= 24
    assert all(r.scale > 0 for r in results)


@pytest.mark.parametrize("name", ["faster_rcnn_mini", "rfcn_mini", "shufflenet_mini",
                                  "se_axpy_mini"])
def test_deploy_nets_backward_reaches_the_image(tmp_path, name):
    """force_backward: the diff flows from the outputs back through ROIPooling/PSROIPooling,
    ShuffleChannel, ConvolutionDepthwise and Axpy to the first convolution and the data."""
    path = NETS / f"{name}.prototxt"
    net = build_pyforge_net(path.read_text(), path, seed=5)
    fill_inputs(net, np.random.default_rng(6))
    net.forward_from_to()
    for blob_id in net.output_ids:
        blob = net.blob_list[blob_id]
        blob.diff[...] = blob.data  # the objective 0.5 * sum(output^2)
    net.backward_all()
    conv1 = dict(zip(net.layer_names, net.layers))["conv1"]
    assert np.abs(conv1.blobs[0].diff).sum() > 0
    assert np.isfinite(net.blobs["data"].diff).all() and net.blobs["data"].diff.any()


def test_pspnets_bn_statistics_are_not_learned_in_a_net():
    """The solver sees lr_mult 0 on every BN's moving mean and variance (the prototxt says 1
    for conv1_1_3x3_s2/bn) and on all four blobs of a frozen BN, as PSPNet's fork sets them."""
    net = train_net(NETS / "pspnet_mini.prototxt")
    mults = {(p.layer, p.index): (p.lr_mult, p.decay_mult) for p in net.learnable}
    assert mults[("conv1_1_3x3_s2/bn", 0)] == (1, 0)
    assert mults[("conv1_1_3x3_s2/bn", 2)] == mults[("conv1_1_3x3_s2/bn", 3)] == (0, 0)
    assert all(mults[("conv5_3/bn", i)] == (0, 0) for i in range(4))
    assert mults[("conv5_4/bn", 1)] == (1, 1) and mults[("conv5_4/bn", 3)] == (0, 0)
