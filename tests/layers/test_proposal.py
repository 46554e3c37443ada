"""Proposal (OpenCV's native layer for py-faster-rcnn nets): the steps of py-faster-rcnn's
rpn/proposal_layer.py (TEST settings by default), the optional scores top, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import TEST, blob_from, build_layer, setup_forward
from tests.reference import forks as ref

F = np.float32


def rpn_inputs(seed: int, height: int = 7, width: int = 9, anchors: int = 9):
    rng = np.random.default_rng(seed)
    cls_prob = rng.uniform(0, 1, (1, 2 * anchors, height, width)).astype(F)
    deltas = (rng.standard_normal((1, 4 * anchors, height, width)) * 0.25).astype(F)
    return cls_prob, deltas


def proposal(params: str, cls_prob, deltas, im_info, tops: int = 2):
    names = " ".join(f'top: "{n}"' for n in ("rois", "scores")[:tops])
    layer = build_layer(f'name: "proposal" type: "Proposal" bottom: "cls" bottom: "bbox" '
                        f'bottom: "im_info" {names} proposal_param {{ {params} }}', TEST)
    bottom = [blob_from(cls_prob), blob_from(deltas), blob_from(im_info)]
    top = [Blob() for _ in range(tops)]
    setup_forward(layer, bottom, top)
    return top


@pytest.mark.parametrize(("params", "im_info", "settings"), [
    ("", [[112, 144, 1.0]], {}),
    ("min_size: 40 nms_thresh: 0.5", [[112, 144, 1.0]], {"min_size": 40, "thresh": 0.5}),
    # im_info's scale multiplies min_size, as in py-faster-rcnn.
    ("min_size: 16", [[112, 144, 2.5]], {}),
    ("pre_nms_topn: 60 post_nms_topn: 12", [[112, 144, 1.0]], {"pre_nms": 60, "post_nms": 12}),
])
def test_proposals_are_py_faster_rcnns(params, im_info, settings):
    cls_prob, deltas = rpn_inputs(1)
    info = np.asarray(im_info, F)
    rois, scores = proposal(params, cls_prob, deltas, info)
    want_rois, want_scores = ref.proposals(cls_prob, deltas, info[0], ref.anchors(), **settings)
    assert rois.shape == (len(want_rois), 5) and scores.shape == (len(want_rois), 1)
    assert len(want_rois) > 3
    np.testing.assert_allclose(rois.data, want_rois, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(scores.data, want_scores)
    assert not rois.data[:, 0].any()  # one image: batch index 0
    assert (np.diff(scores.data[:, 0]) <= 0).all()  # best first


def test_custom_anchors_stride_and_one_top():
    ratios, scales = (0.5, 2.0), (4.0, 8.0)
    cls_prob, deltas = rpn_inputs(2, 5, 6, anchors=4)
    info = np.array([[80, 96, 1.0]], F)
    (rois,) = proposal("feat_stride: 8 base_size: 12 ratio: 0.5 ratio: 2 scale: 4 scale: 8 "
                       "min_size: 4", cls_prob, deltas, info, tops=1)
    want, _ = ref.proposals(cls_prob, deltas, info[0], ref.anchors(12, ratios, scales),
                            feat_stride=8, min_size=4)
    np.testing.assert_allclose(rois.data, want, rtol=1e-5, atol=1e-3)


def test_boxes_are_clipped_to_the_image():
    cls_prob, deltas = rpn_inputs(3)
    deltas[:, 2::4] += 3  # very wide boxes
    rois, _ = proposal("min_size: 0", cls_prob, deltas, np.array([[50, 60, 1]], F))
    assert rois.data[:, 1].min() >= 0 and rois.data[:, 3].max() <= 59
    assert rois.data[:, 2].min() >= 0 and rois.data[:, 4].max() <= 49


def test_nothing_survives_gives_an_empty_rois_blob():
    cls_prob, deltas = rpn_inputs(4)
    rois, scores = proposal("min_size: 1000", cls_prob, deltas, np.array([[112, 144, 1]], F))
    assert rois.shape == (0, 5) and scores.shape == (0, 1)


@pytest.mark.parametrize(("params", "shapes", "message"), [
    ("", ((2, 18, 3, 3), (2, 36, 3, 3), (2, 3)), r"\(1, 18, H, W\) for 9 anchors \(one image"),
    ("", ((1, 10, 3, 3), (1, 20, 3, 3), (1, 3)), r"\(1, 18, H, W\) for 9 anchors"),
    ("", ((1, 18, 3, 3), (1, 36, 3, 4), (1, 3)), r"bottom 1 \(the box deltas\) must be "
     r"\(1, 36, 3, 3\)"),
    ("", ((1, 18, 3, 3), (1, 36, 3, 3), (1, 2)), r"bottom 2 \(im_info\) must hold"),
    ("nms_thresh: 0", ((1, 18, 3, 3), (1, 36, 3, 3), (1, 3)), r"nms_thresh must be in"),
    ("ratio: -1", ((1, 6, 3, 3), (1, 12, 3, 3), (1, 3)), "ratios and scales must be > 0"),
    ("feat_stride: 0", ((1, 18, 3, 3), (1, 36, 3, 3), (1, 3)), "feat_stride and base_size"),
])
def test_errors(params, shapes, message):
    arrays = [np.ones(shape, F) for shape in shapes]
    with pytest.raises(PyforgeError, match=message):
        proposal(params, *arrays)
