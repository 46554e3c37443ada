"""The SSD fork's layers, ReLU6 and the forks' Pooling / Dropout fields against OpenCV 4's dnn.

Each net gets seeded random weights written as a .caffemodel by pyforge and loaded by
``cv2.dnn.readNetFromCaffe``; every compared output is within 1e-3 of its scale.

Where OpenCV departs from the fork, the cases give the parameter explicitly or leave it out,
and the unit tests (tests/layers/test_detection.py) pin the fork's behaviour:

- PriorBox: OpenCV's clip defaults to true (the fork's to false), it needs ``variance``, keeps
  fractional min/max sizes (the fork reads them as ints) and ignores img_size / img_h / img_w;
- DetectionOutput: OpenCV sorts an image's rows by score (the fork: by class, then score),
  pads the output with zero rows to N x keep_top_k, needs share_location, background_label_id
  and keep_top_k given (keep_top_k -1 corrupts its memory), has no CORNER_SIZE, ignores
  nms_param.eta, writes zero rows (not the fork's -1 rows) when nothing is detected, and with
  variance_encoded_in_target wants a prior blob without variances (the fork's PriorBox
  always writes them);
- Normalize: OpenCV reads neither a 0-axis (channel_shared) scale blob nor per-channel scales
  across_spatial; Permute: OpenCV needs the full order;
- Dropout: OpenCV has no sample_weights_test (Monte-Carlo dropout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyforge.cli import main
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, read_net_param
from tests.forks.opencv_compare import Result, assert_close, run_both
from tests.layers.util import priors_blob, softmax_conf
from tests.logcapture import capture_log

MINI_SSD = Path(__file__).resolve().parents[1] / "data" / "forks" / "mini_mobilenet_ssd.prototxt"
VAR4 = "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2"


def _input(name: str, shape) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'layer {{ name: "{name}" type: "Input" top: "{name}" '
            f"input_param {{ shape {{ {dims} }} }} }}\n")


def _data(shape, seed=0, scale=1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _one_layer(tmp_path, layer: str, shape=(2, 4, 6, 7), scale=4.0, seed=0) -> Result:
    results = run_both(tmp_path, _input("data", shape) + layer,
                       {"data": _data(shape, seed, scale)}, ["out"], seed=seed)
    assert_close(results)
    assert results[0].scale > 0
    return results[0]


# --- detections -----------------------------------------------------------------------------------
def canonical(rows: np.ndarray) -> np.ndarray:
    """Detection rows in one order (image, label, score descending, box)."""
    rows = rows.reshape(-1, 7)
    keys = (rows[:, 6], rows[:, 5], rows[:, 4], rows[:, 3], -rows[:, 2], rows[:, 1], rows[:, 0])
    return rows[np.lexsort(keys)]


def assert_in_fork_order(rows: np.ndarray) -> None:
    """The fork's order: by image, then class, then score descending."""
    rows = rows.reshape(-1, 7)
    key = rows[:, 0] * 1e6 + rows[:, 1] * 1e3
    assert np.all(np.diff(key) >= 0)
    same = np.diff(key) == 0
    assert np.all(np.diff(rows[:, 2])[same] <= 0)


def assert_same_detections(result: Result) -> int:
    """pyforge's rows are OpenCV's (less its zero padding), in the fork's order."""
    theirs = result.theirs.reshape(-1, 7)
    theirs = theirs[: len(theirs) - np.argmax(np.any(theirs[::-1] != 0, axis=1))]
    ours = result.ours.reshape(-1, 7)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert_close([Result(result.name, canonical(ours), canonical(theirs))])
    assert_in_fork_order(ours)
    return len(ours)


# --- the mini MobileNet-SSD ---------------------------------------------------------------------
HEADS = ("conv3_norm", "conv4", "conv5_2")
IN_PLACE = ["conv0", "conv1/dw", "conv1", "conv2/dw", "conv2", "conv3/dw", "conv3", "conv4/dw",
            "conv4", "conv5_1", "conv5_2"]


def test_mini_mobilenet_ssd_equals_opencv_at_each_output(tmp_path):
    outputs = [(blob, f"{blob}/relu") for blob in IN_PLACE] + ["conv3_norm"]
    for head in HEADS:
        for kind in ("loc", "conf"):
            outputs += [f"{head}_mbox_{kind}", f"{head}_mbox_{kind}_perm",
                        f"{head}_mbox_{kind}_flat"]
        outputs.append(f"{head}_mbox_priorbox")
    outputs += ["mbox_loc", "mbox_conf", "mbox_conf_softmax", "mbox_conf_flatten",
                "mbox_priorbox", "detection_out"]
    results = run_both(tmp_path, MINI_SSD.read_text(), {"data": _data((2, 3, 64, 64), 7)},
                       outputs, seed=3)
    *layers, detections = results
    assert_close(layers)
    assert all(result.scale > 0 for result in layers)
    assert assert_same_detections(detections) > 10


def test_mini_mobilenet_ssd_runs_with_pyforge_time():
    with capture_log() as log:
        assert main(["time", f"--model={MINI_SSD}", "--iterations=1"]) == 0
    lines = log.messages
    for layer in ("conv3_norm", "conv4_mbox_loc_perm", "conv5_2_mbox_priorbox", "detection_out",
                  "conv2/relu"):
        assert any(line.strip().startswith(f"{layer}\tforward:") for line in lines), layer
        assert any(line.strip().startswith(f"{layer}\tbackward:") for line in lines), layer
    assert lines[-1] == "*** Benchmark ends ***"


def test_mini_mobilenet_ssd_trains_through_the_fork_layers():
    """The net less DetectionOutput, with a loss on each of its inputs (sum of squares): the
    gradient reaches every layer, through Permute, Normalize, ReLU6 and PriorBox."""
    param = read_net_param(MINI_SSD)
    kept = [layer for layer in param.layer if layer.type != "DetectionOutput"]
    del param.layer[:]
    param.layer.extend(kept)
    for blob in ("mbox_loc", "mbox_conf_flatten", "mbox_priorbox"):
        loss = param.layer.add(name=f"{blob}_loss", type="Reduction", bottom=[blob],
                               top=[f"{blob}_loss"], loss_weight=[1.0])
        loss.reduction_param.operation = caffe_pb2.ReductionParameter.SUMSQ
    param.state.phase = caffe_pb2.TRAIN
    net = Net(param, np.random.default_rng(0))
    net.blobs["data"].data[...] = _data((2, 3, 64, 64), 1)
    loss = net.forward_backward()
    assert np.isfinite(loss) and loss > 0
    for name in ("conv0", "conv2/dw", "conv3_norm", "conv5_2_mbox_loc", "conv3_norm_mbox_conf"):
        diff = net.params[name][0].diff
        assert np.isfinite(diff).all() and np.abs(diff).max() > 0, name


# --- single layers ------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [
    f"min_size: 3 max_size: 5 aspect_ratio: 2 clip: false {VAR4}",
    f"min_size: 2 min_size: 4 max_size: 3 max_size: 6 aspect_ratio: 2 aspect_ratio: 3 flip: false "
    f"clip: false {VAR4}",
    "min_size: 3 aspect_ratio: 2 aspect_ratio: 2 aspect_ratio: 0.5 flip: true clip: true "
    "variance: 0.2",
    "min_size: 3 step_h: 3 step_w: 4 offset: 0.3 clip: false variance: 0.1",
    "min_size: 3 step: 2.5 clip: true variance: 0.1",
])
def test_prior_box(tmp_path, params):
    _one_layer(tmp_path, f'layer {{ name: "out" type: "PriorBox" bottom: "data" bottom: "data" '
                         f"top: \"out\" prior_box_param {{ {params} }} }}")


@pytest.mark.parametrize("order", ["0 3 1 2", "0 2 3 1", "3 2 1 0", "1 0 2 3"])
def test_permute(tmp_path, order):
    orders = " ".join(f"order: {o}" for o in order.split())
    _one_layer(tmp_path, f'layer {{ name: "out" type: "Permute" bottom: "data" top: "out" '
                         f"permute_param {{ {orders} }} }}")


@pytest.mark.parametrize("eps", ["", "eps: 0.5"])
def test_normalize(tmp_path, eps):
    _one_layer(tmp_path, 'layer { name: "out" type: "Normalize" bottom: "data" top: "out" '
                         f"norm_param {{ across_spatial: false channel_shared: false {eps} }} }}")


def test_relu6(tmp_path):
    result = _one_layer(tmp_path, 'layer { name: "out" type: "ReLU6" bottom: "data" top: "out" }')
    assert result.ours.max() == 6 and result.ours.min() == 0


@pytest.mark.parametrize("params", [
    "pool: MAX kernel_size: 3 stride: 2 ceil_mode: false",
    "pool: MAX kernel_size: 3 stride: 2 pad: 1 ceil_mode: false",
    "pool: AVE kernel_size: 3 stride: 2 pad: 1 ceil_mode: false",
    "pool: AVE kernel_size: 2 stride: 2 ceil_mode: false",
    "pool: MAX kernel_size: 2 stride: 2 pad: 1 ceil_mode: true",
])
def test_pooling_ceil_mode(tmp_path, params):
    result = _one_layer(tmp_path, f'layer {{ name: "out" type: "Pooling" bottom: "data" '
                                  f'top: "out" pooling_param {{ {params} }} }}', shape=(1, 2, 9, 8))
    if "ceil_mode: false" in params and "kernel_size: 3" in params:
        assert result.ours.shape[2:] == ((4, 3) if "pad" not in params else (5, 4))


def test_dropout_scale_train_false_at_test(tmp_path):
    result = _one_layer(tmp_path, 'layer { name: "out" type: "Dropout" bottom: "data" '
                                  'top: "out" dropout_param { dropout_ratio: 0.3 '
                                  "scale_train: false } }", seed=2)
    assert result.ours.std() < result.theirs.std() * 1.0001


# --- DetectionOutput alone ----------------------------------------------------------------------
def _detection_net(num, n_priors, classes, share, params):
    for field, default in (("share_location", "true"), ("background_label_id", "0"),
                           ("keep_top_k", "500")):
        if field not in params:
            params += f" {field}: {default}"
    loc_width = n_priors * (1 if share else classes) * 4
    return (_input("loc", (num, loc_width)) + _input("conf", (num, n_priors * classes))
            + _input("pri", (1, 2, n_priors * 4))
            + 'layer { name: "out" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
            f'bottom: "pri" top: "out" detection_output_param {{ num_classes: {classes} '
            f"{params} }} }}")


@pytest.mark.parametrize("params", [
    "nms_param { nms_threshold: 0.45 } code_type: CENTER_SIZE",
    "code_type: CENTER_SIZE nms_param { nms_threshold: 0.3 top_k: 10 } keep_top_k: 12 "
    "confidence_threshold: 0.2",
    "code_type: CORNER nms_param { nms_threshold: 0.6 } confidence_threshold: 0.1",
    "share_location: false background_label_id: 2 code_type: CENTER_SIZE keep_top_k: 7 "
    "nms_param { nms_threshold: 0.5 }",
    "share_location: false background_label_id: -1 nms_param { nms_threshold: 0.2 top_k: 5 } "
    "code_type: CORNER",
])
def test_detection_output(tmp_path, params):
    num, n_priors, classes = 2, 30, 4
    share = "share_location: false" not in params
    loc = _data((num, n_priors * (1 if share else classes) * 4), 1, 0.5)
    inputs = {"loc": loc, "conf": softmax_conf(num, n_priors, classes, seed=2),
              "pri": priors_blob(n_priors)}
    [result] = run_both(tmp_path, _detection_net(num, n_priors, classes, share, params), inputs,
                        ["out"])
    assert assert_same_detections(result) >= 10
