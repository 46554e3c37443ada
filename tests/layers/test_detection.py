"""The SSD and Faster R-CNN detection layers: PriorBox, DetectionOutput and Proposal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import NetError, PyforgeError
from tests.gradient_check import TEST, blob_from, build_layer, setup_forward
from tests.layers.util import priors_blob, rand, run, softmax_conf
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


VAR4 = "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2"


# --- PriorBox -----------------------------------------------------------------------------------
def reference_priors(layer_hw, img_hw, min_sizes, max_sizes=(), ratios=(), flip=True,
                     clip=False, variances=(0.1,), step_hw=None, offset=0.5, reduce=False):
    """The fork's prior boxes and variances, box by box."""
    kept = [1.0]
    for r in ratios:
        if not any(abs(r - k) < 1e-6 for k in kept):
            kept.append(r)
            if flip:
                kept.append(1.0 / r)
    (lh, lw), (ih, iw) = layer_hw, img_hw
    sh, sw = step_hw or (ih / lh, iw / lw)
    boxes = []

    def add(cx, cy, bw, bh):
        boxes.append([(cx - bw / 2) / iw, (cy - bh / 2) / ih, (cx + bw / 2) / iw,
                      (cy + bh / 2) / ih])

    for h in range(lh):
        for w in range(lw):
            cx, cy = (w + offset) * sw, (h + offset) * sh
            for i, size in enumerate(int(m) for m in min_sizes):
                side = size / 2 if reduce else size
                add(cx, cy, side, side)
                if max_sizes:
                    side = math.sqrt(size * int(max_sizes[i]))
                    add(cx, cy, side, side)
                for a in kept:
                    if abs(a - 1) < 1e-6:
                        continue
                    add(cx, cy, size * math.sqrt(a), size / math.sqrt(a))
    boxes = np.array(boxes).reshape(-1)
    if clip:
        boxes = boxes.clip(0, 1)
    var = np.resize(np.array(variances), boxes.size)
    return np.stack([boxes, var])[None]


def prior_box(params: str, feature=(1, 4, 3, 5), image=(1, 3, 30, 50)):
    layer, bottom, top = run(f'type: "PriorBox" bottom: "f" bottom: "im" top: "p" '
                             f"prior_box_param {{ {params} }}", np.zeros(feature),
                             np.zeros(image))
    return layer, top[0].data


# --- DetectionOutput ----------------------------------------------------------------------------
def decode(prior, var, t, code, in_target):
    """One box, as the fork's DecodeBBox."""
    v = np.ones(4) if in_target else var
    if code == "CORNER":
        return prior + v * t
    pw, ph = prior[2] - prior[0], prior[3] - prior[1]
    if code == "CORNER_SIZE":
        return prior + v * t * np.array([pw, ph, pw, ph])
    cx = v[0] * t[0] * pw + (prior[0] + prior[2]) / 2
    cy = v[1] * t[1] * ph + (prior[1] + prior[3]) / 2
    w, h = math.exp(v[2] * t[2]) * pw, math.exp(v[3] * t[3]) * ph
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def iou(a, b):
    def size(box):
        return 0.0 if box[2] < box[0] or box[3] < box[1] else (box[2] - box[0]) * (box[3] - box[1])
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    return w * h / (size(a) + size(b) - w * h) if w > 0 and h > 0 else 0.0


def reference_detections(loc, conf, priors, num_classes, share=True, background=0,
                         threshold=-np.inf, nms=0.3, top_k=-1, eta=1.0, keep_top_k=-1,
                         code="CORNER", in_target=False):
    """The fork's DetectionOutput, one image, class and box at a time."""
    num, n_priors = conf.shape[0], priors.shape[2] // 4
    boxes_p, vars_p = priors[0, 0].reshape(-1, 4), priors[0, 1].reshape(-1, 4)
    loc = loc.reshape(num, n_priors, 1 if share else num_classes, 4)
    conf = conf.reshape(num, n_priors, num_classes)
    rows = []
    for n in range(num):
        kept = {}
        for c in range(num_classes):
            if c == background:
                continue
            label = 0 if share else c
            boxes = [decode(boxes_p[p], vars_p[p], loc[n, p, label], code, in_target)
                     for p in range(n_priors)]
            order = sorted((p for p in range(n_priors) if conf[n, p, c] > threshold),
                           key=lambda p: -conf[n, p, c])
            if top_k > -1:
                order = order[:top_k]
            chosen, limit = [], nms
            for p in order:
                if all(iou(boxes[p], boxes[q]) <= limit for q in chosen):
                    chosen.append(p)
                    if eta < 1 and limit > 0.5:
                        limit *= eta
            kept[c] = [(p, boxes[p]) for p in chosen]
        pairs = [(conf[n, p, c], c, p, box) for c in sorted(kept) for p, box in kept[c]]
        if keep_top_k > -1 and len(pairs) > keep_top_k:
            pairs = sorted(pairs, key=lambda item: -item[0])[:keep_top_k]
            pairs = sorted(pairs, key=lambda item: item[1])  # stable: score order within class
        rows += [[n, c, score, *box] for score, c, p, box in pairs]
    return np.array(rows).reshape(-1, 7)


def detection_output(loc, conf, priors, params):
    layer, _, top = run(f'type: "DetectionOutput" bottom: "l" bottom: "c" bottom: "p" '
                        f'top: "d" detection_output_param {{ {params} }}', loc, conf, priors,
                        phase=TEST)
    return layer, top[0].data


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
def test_proposal_errors(params, shapes, message):
    arrays = [np.ones(shape, F) for shape in shapes]
    with pytest.raises(PyforgeError, match=message):
        proposal(params, *arrays)


def test_prior_box_one_cell_by_hand():
    _, out = prior_box("min_size: 30 max_size: 60 aspect_ratio: 2 flip: false " + VAR4,
                       feature=(1, 1, 1, 1), image=(1, 3, 100, 100))
    root2 = math.sqrt(2)
    big = math.sqrt(30 * 60) / 200
    expected = [0.35, 0.35, 0.65, 0.65,
                0.5 - big, 0.5 - big, 0.5 + big, 0.5 + big,
                0.5 - 0.15 * root2, 0.5 - 0.15 / root2, 0.5 + 0.15 * root2, 0.5 + 0.15 / root2]
    assert out.shape == (1, 2, 12)
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [0.1, 0.1, 0.2, 0.2] * 3, atol=1e-7)


@pytest.mark.parametrize("params, kwargs", [
    ("min_size: 6", dict(min_sizes=[6])),
    ("min_size: 6 max_size: 13.7 aspect_ratio: 2 aspect_ratio: 3 " + VAR4,
     dict(min_sizes=[6], max_sizes=[13.7], ratios=[2, 3], variances=[0.1, 0.1, 0.2, 0.2])),
    ("min_size: 6.9 min_size: 9 max_size: 8 max_size: 12 aspect_ratio: 2 aspect_ratio: 2.0000001 "
     "aspect_ratio: 0.5 flip: true clip: true variance: 0.2",
     dict(min_sizes=[6.9, 9], max_sizes=[8, 12], ratios=[2, 2.0000001, 0.5], clip=True,
          variances=[0.2])),
    ("min_size: 10 aspect_ratio: 3 flip: false step: 7 offset: 0.25",
     dict(min_sizes=[10], ratios=[3], flip=False, step_hw=(7, 7), offset=0.25)),
    ("min_size: 10 img_h: 60 img_w: 40 step_h: 9 step_w: 4",
     dict(min_sizes=[10], step_hw=(9, 4), img_hw=(60, 40))),
    ("min_size: 8 img_size: 64", dict(min_sizes=[8], img_hw=(64, 64))),
    ("min_size: 10 max_size: 20 aspect_ratio: 2 reduce_boxes: true",
     dict(min_sizes=[10], max_sizes=[20], ratios=[2], reduce=True)),
])
def test_prior_box_matches_the_forks_definition(params, kwargs):
    layer, out = prior_box(params)
    kwargs.setdefault("img_hw", (30, 50))
    expected = reference_priors((3, 5), **kwargs)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=2e-6)


def test_prior_box_sizes_are_whole_numbers_as_the_fork_reads_them():
    _, fractional = prior_box("min_size: 6.9 max_size: 12.5")
    _, whole = prior_box("min_size: 6 max_size: 12")
    np.testing.assert_array_equal(fractional, whole)


def test_prior_box_backward_gives_zero_and_values_do_not_matter():
    layer, bottom, top = run('type: "PriorBox" bottom: "f" bottom: "im" top: "p" '
                             'prior_box_param { min_size: 4 }', rand(1, 2, 3, 3),
                             rand(1, 3, 12, 12))
    first = top[0].data.copy()
    bottom[0].data[...] = 7.0
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, first)
    for blob in bottom:
        blob.diff[...] = np.nan
    layer.backward(top, [True, False], bottom)
    assert not bottom[0].diff.any() and np.isnan(bottom[1].diff).all()


@pytest.mark.parametrize("params, message", [
    ("aspect_ratio: 2", "needs at least one min_size"),
    ("min_size: 0", "min_size must be positive"),
    ("min_size: 10 max_size: 5", "max_size must be greater than min_size, found max_size 5 "
                                 "for min_size 10"),
    ("min_size: 10 min_size: 20 max_size: 30", "one max_size per min_size"),
    ("min_size: 10 variance: 0.1 variance: 0.2", "variance takes 1 or 4 values, found 2"),
    ("min_size: 10 variance: 0", "variance must be positive"),
    ("min_size: 10 img_size: 30 img_h: 30 img_w: 30", "either img_size or img_h/img_w"),
    ("min_size: 10 step: 8 step_h: 8 step_w: 4", "either step or step_h/step_w"),
    ("min_size: 10 step_h: 8", "step_h and step_w must be larger than 0"),
])
def test_prior_box_errors(params, message):
    with pytest.raises(NetError, match=f"layer 'priorbox' \\(PriorBox\\): .*{message}"):
        prior_box(params)


@pytest.mark.parametrize("params, kwargs", [
    ("nms_param { nms_threshold: 0.45 }", dict(nms=0.45)),
    ("code_type: CENTER_SIZE nms_param { nms_threshold: 0.3 top_k: 10 } keep_top_k: 12 "
     "confidence_threshold: 0.2",
     dict(code="CENTER_SIZE", top_k=10, keep_top_k=12, threshold=0.2)),
    ("code_type: CORNER_SIZE variance_encoded_in_target: true nms_param { nms_threshold: 0.6 "
     "eta: 0.9 } confidence_threshold: 0.1",
     dict(code="CORNER_SIZE", in_target=True, nms=0.6, eta=0.9, threshold=0.1)),
    ("share_location: false background_label_id: 2 code_type: CENTER_SIZE keep_top_k: 7 "
     "nms_param { nms_threshold: 0.5 }",
     dict(share=False, background=2, code="CENTER_SIZE", keep_top_k=7, nms=0.5)),
    ("share_location: false background_label_id: -1 nms_param { nms_threshold: 0.2 top_k: 5 }",
     dict(share=False, background=-1, nms=0.2, top_k=5)),
])
def test_detection_output_matches_the_forks_definition(params, kwargs):
    num, n_priors, classes = 2, 40, 3
    share = kwargs.get("share", True)
    loc = rand(num, n_priors * (1 if share else classes) * 4, seed=4, scale=0.5)
    conf = softmax_conf(num, n_priors, classes, seed=5)
    priors = priors_blob(n_priors)
    _, out = detection_output(loc, conf, priors, f"num_classes: {classes} {params}")
    expected = reference_detections(loc, conf, priors, classes, **kwargs)
    # The case keeps boxes, and NMS, the threshold or the limits removed some.
    assert 3 < len(expected) < num * classes * n_priors
    assert out.shape == (1, 1, len(expected), 7)
    np.testing.assert_allclose(out.reshape(-1, 7), expected, rtol=1e-5, atol=1e-6)


def test_nms_suppresses_the_overlapping_lower_score_and_keep_top_k_orders_by_class():
    # Three priors: 0 and 1 overlap with IoU 0.6, 2 is apart. Zero offsets decode to priors.
    boxes = [[0.1, 0.1, 0.5, 0.5], [0.15, 0.1, 0.55, 0.5], [0.6, 0.6, 0.9, 0.9]]
    priors = np.stack([np.ravel(boxes), np.tile([0.1, 0.1, 0.2, 0.2], 3)])[None]
    conf = np.array([[0.1, 0.9, 0.0, 0.2, 0.8, 0.0, 0.3, 0.1, 0.6]], np.float32)  # 3 classes
    loc = np.zeros((1, 12), np.float32)
    _, out = detection_output(loc, conf, priors,
                              "num_classes: 3 nms_param { nms_threshold: 0.5 }")
    rows = out.reshape(-1, 7)
    # Class 1: prior 0 (0.9) kept, prior 1 (0.8, IoU 0.6) suppressed, prior 2 (0.1) kept.
    # Class 2: prior 2 (0.6), then prior 0 (0.0: above the default threshold, -FLT_MAX),
    # which suppresses prior 1 (0.0, later in the stable order).
    assert [tuple(r[:3].round(3)) for r in rows] == [(0, 1, 0.9), (0, 1, 0.1), (0, 2, 0.6),
                                                     (0, 2, 0.0)]
    np.testing.assert_allclose(rows[:, 3:], np.array(boxes)[[0, 2, 2, 0]], atol=1e-7)
    _, out = detection_output(loc, conf, priors,
                              "num_classes: 3 keep_top_k: 2 nms_param { nms_threshold: 0.5 }")
    assert [tuple(r[:3].round(3)) for r in out.reshape(-1, 7)] == [(0, 1, 0.9), (0, 2, 0.6)]
    np.testing.assert_allclose(out[0, 0, 0, 3:], boxes[0], atol=1e-7)


def test_nothing_detected_is_one_row_of_minus_one_per_image():
    conf = softmax_conf(3, 5, 2, seed=1)
    _, out = detection_output(rand(3, 20), conf, priors_blob(5),
                              "num_classes: 2 confidence_threshold: 1.0")
    assert out.shape == (1, 1, 3, 7)
    np.testing.assert_array_equal(out[0, 0, :, 0], [0, 1, 2])
    assert (out[0, 0, :, 1:] == -1).all()


@pytest.mark.parametrize("params, loc, conf, priors, message", [
    ("", (1, 8), (1, 4), (1, 2, 8), "detection_output_param needs num_classes"),
    ("num_classes: 2", (1, 12), (1, 4), (1, 2, 8), r"2 priors need 2 x 1 x 4 location values "
                                                   r"per image, found 12 \(bottom \(1, 12\)\)"),
    ("num_classes: 3", (1, 8), (1, 4), (1, 2, 8), "2 priors need 2 x 3 confidences"),
    ("num_classes: 2", (1, 8), (1, 4), (1, 8), r"must be \(1, 2, num_priors \* 4\)"),
    ("num_classes: 2", (2, 8), (1, 4), (1, 2, 8), "different batch sizes"),
    ("num_classes: 2 nms_param { eta: 0 }", (1, 8), (1, 4), (1, 2, 8), r"eta must be in \(0, 1\]"),
    ("num_classes: 2 background_label_id: -1", (1, 8), (1, 4), (1, 2, 8),
     "share_location: true with background_label_id: -1 leaves no location predictions"),
])
def test_detection_output_errors(params, loc, conf, priors, message):
    with pytest.raises(NetError, match=message):
        detection_output(np.zeros(loc), np.zeros(conf), np.zeros(priors), params)


def test_detection_output_has_no_backward():
    layer, bottom, top = run('type: "DetectionOutput" bottom: "l" bottom: "c" bottom: "p" '
                             'top: "d" detection_output_param { num_classes: 2 }',
                             np.zeros((1, 8)), softmax_conf(1, 2, 2, 0), priors_blob(2))
    layer.backward(top, [False, False, False], bottom)
    with pytest.raises(NetError, match="has no backward"):
        layer.backward(top, [True, False, False], bottom)
