"""ROIPooling, PSROIPooling and Proposal against OpenCV 4's dnn, in small nets with seeded
random weights written as a .caffemodel by pyforge (tests/forks/opencv_compare.py), and the
one place where OpenCV's Proposal departs from py-faster-rcnn (no min_size filter)."""

from __future__ import annotations

import numpy as np

from pyforge.proto import write_binary_proto
from tests.forks.opencv_compare import (
    Result,
    assert_close,
    build_pyforge_net,
    opencv_net,
    run_both,
)

F = np.float32

ROI_NET = """
name: "fast_rcnn_head"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 24 dim: 32 } } }
layer { name: "rois" type: "Input" top: "rois" input_param { shape { dim: 7 dim: 5 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "relu1" }
layer { name: "roi_pool" type: "ROIPooling" bottom: "relu1" bottom: "rois" top: "roi_pool"
  roi_pooling_param { pooled_h: 3 pooled_w: 4 spatial_scale: 0.5 } }
layer { name: "fc" type: "InnerProduct" bottom: "roi_pool" top: "fc"
  inner_product_param { num_output: 5 } }
"""

PSROI_NET = """
name: "rfcn_head"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 4 dim: 20 dim: 24 } } }
layer { name: "rois" type: "Input" top: "rois" input_param { shape { dim: 7 dim: 5 } } }
layer { name: "rfcn_cls" type: "Convolution" bottom: "data" top: "rfcn_cls"
  convolution_param { num_output: 27 kernel_size: 1 } }
layer { name: "psroi" type: "PSROIPooling" bottom: "rfcn_cls" bottom: "rois" top: "psroi"
  psroi_pooling_param { spatial_scale: 0.25 output_dim: 3 group_size: 3 } }
layer { name: "cls_score" type: "Pooling" bottom: "psroi" top: "cls_score"
  pooling_param { pool: AVE kernel_size: 3 stride: 3 } }
"""


def rois(scale: float, height: int, width: int) -> np.ndarray:
    """Boxes in image pixels over both images: inside, hanging off the map, entirely outside,
    malformed (x2 < x1), with halves that C's round and NumPy's differ on."""
    h, w = height / scale, width / scale
    return np.array([[0, 2, 3, 0.6 * w, 0.7 * h],
                     [1, 0.3 * w, 0.1 * h, w - 1, h - 1],
                     [1, -10, -6, 0.4 * w, 0.5 * h],
                     [0, 0.5 * w, 0.5 * h, 1.5 * w, 1.5 * h],
                     [0, 2 * w, 2 * h, 3 * w, 3 * h],
                     [1, 0.5 / scale, 2.5 / scale, 9.5 / scale, 7.5 / scale],
                     [0, 0.6 * w, 0.6 * h, 0.2 * w, 0.2 * h]], F)


def test_roi_pooling_net_matches_opencv(tmp_path):
    data = np.random.default_rng(1).standard_normal((2, 3, 24, 32)).astype(F)
    results = run_both(tmp_path, ROI_NET, {"data": data, "rois": rois(0.5, 12, 16)},
                       ["conv1", "roi_pool", "fc"], seed=2)
    assert_close(results)
    assert all(r.scale > 0 for r in results)
    assert results[1].ours.shape == (7, 8, 3, 4)


def test_psroi_pooling_net_matches_opencv(tmp_path):
    data = np.random.default_rng(3).standard_normal((2, 4, 20, 24)).astype(F)
    results = run_both(tmp_path, PSROI_NET, {"data": data, "rois": rois(0.25, 20, 24)},
                       ["rfcn_cls", "psroi", "cls_score"], seed=4)
    assert_close(results)
    assert results[1].ours.shape == (7, 3, 3, 3) and results[1].scale > 0


RPN_NET = """
name: "rpn"
layer { name: "conv5" type: "Input" top: "conv5"
  input_param { shape { dim: 1 dim: 8 dim: 6 dim: 8 } } }
layer { name: "im_info" type: "Input" top: "im_info" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "rpn_conv" type: "Convolution" bottom: "conv5" top: "rpn_conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "rpn_relu" type: "ReLU" bottom: "rpn_conv" top: "rpn_relu" }
layer { name: "rpn_cls_score" type: "Convolution" bottom: "rpn_relu" top: "rpn_cls_score"
  convolution_param { num_output: 18 kernel_size: 1 } }
layer { name: "rpn_bbox_pred" type: "Convolution" bottom: "rpn_relu" top: "rpn_bbox_pred"
  convolution_param { num_output: 36 kernel_size: 1 } }
layer { name: "rpn_cls_score_reshape" type: "Reshape" bottom: "rpn_cls_score"
  top: "rpn_cls_score_reshape" reshape_param { shape { dim: 0 dim: 2 dim: -1 dim: 0 } } }
layer { name: "rpn_cls_prob" type: "Softmax" bottom: "rpn_cls_score_reshape"
  top: "rpn_cls_prob" }
layer { name: "rpn_cls_prob_reshape" type: "Reshape" bottom: "rpn_cls_prob"
  top: "rpn_cls_prob_reshape" reshape_param { shape { dim: 0 dim: 18 dim: -1 dim: 0 } } }
layer { name: "proposal" type: "Proposal" bottom: "rpn_cls_prob_reshape"
  bottom: "rpn_bbox_pred" bottom: "im_info" top: "proposal"
  proposal_param { feat_stride: 16 base_size: 16 ratio: 0.5 ratio: 1 ratio: 2
                   scale: 8 scale: 16 scale: 32 %s } }
"""


def run_rpn(tmp_path, extra: str):
    """pyforge's and OpenCV's proposals (OpenCV pads its fixed post_nms_topn rows)."""
    text = RPN_NET % extra
    path = tmp_path / "rpn.prototxt"
    path.write_text(text)
    net = build_pyforge_net(text, path, seed=5)
    write_binary_proto(tmp_path / "rpn.caffemodel", net.to_proto())
    inputs = {"conv5": np.random.default_rng(6).standard_normal((1, 8, 6, 8)).astype(F),
              "im_info": np.array([[96, 128, 1.0]], F)}
    for name, array in inputs.items():
        net.blobs[name].data[...] = array
    net.forward_from_to()
    theirs_net = opencv_net(path, tmp_path / "rpn.caffemodel")
    for name, array in inputs.items():
        theirs_net.setInput(array, name)
    theirs = theirs_net.forward(["rpn_cls_prob_reshape", "proposal"])
    return net, theirs


def test_proposal_matches_opencv_when_the_min_size_filter_keeps_everything(tmp_path):
    net, (theirs_prob, theirs_rois) = run_rpn(tmp_path, "min_size: 0")
    ours_rois = net.blobs["proposal"].data
    count = len(ours_rois)
    assert 20 < count < 300 and theirs_rois.shape == (300, 5)
    assert_close([Result("rpn_cls_prob_reshape", net.blobs["rpn_cls_prob_reshape"].data,
                         theirs_prob),
                  Result("proposal", ours_rois, theirs_rois[:count])])
    # OpenCV fills the rows past its detections with zeros.
    assert not theirs_rois[count:].any()


def test_opencv_skips_py_faster_rcnns_min_size_filter(tmp_path):
    """py-faster-rcnn drops boxes with a side under min_size * im_info[2] (16 here) before
    NMS; OpenCV's Proposal reads min_size but never filters (its source has the line
    commented out). pyforge follows py-faster-rcnn, so the lists part where OpenCV keeps a
    small box."""
    net, (_, theirs_rois) = run_rpn(tmp_path, "min_size: 16")
    ours = net.blobs["proposal"].data
    sides = np.minimum(theirs_rois[:, 3] - theirs_rois[:, 1], theirs_rois[:, 4]
                       - theirs_rois[:, 2]) + 1
    small = np.flatnonzero((sides < 16) & theirs_rois[:, 1:].any(axis=1))
    assert len(small) > 0  # OpenCV kept boxes py-faster-rcnn drops
    our_sides = np.minimum(ours[:, 3] - ours[:, 1], ours[:, 4] - ours[:, 2]) + 1
    assert (our_sides >= 16).all()
    first = int(small[0])
    np.testing.assert_allclose(ours[:first], theirs_rois[:first], rtol=1e-5, atol=1e-3)
    assert not np.allclose(ours[first], theirs_rois[first], atol=1e-3)
