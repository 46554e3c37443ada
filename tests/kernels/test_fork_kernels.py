"""The forks' layer kernels against the loop-by-loop references in tests/reference/forks.py."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels import proposal, resample, roi
from pyforge.layers.detection import generate_anchors
from tests.reference import forks as ref

F = np.float32


def _rois(rng, n_img, height, width, scale, count):
    """Random ROIs in image pixels, with the edge cases the forks must survive: a box that
    hangs off the map, one that lies entirely outside it, a malformed one (x2 < x1) and
    exact halves that C and NumPy round differently."""
    image_h, image_w = height / scale, width / scale
    x1 = rng.uniform(-0.2 * image_w, image_w, count)
    y1 = rng.uniform(-0.2 * image_h, image_h, count)
    x2 = x1 + rng.uniform(0, image_w, count)
    y2 = y1 + rng.uniform(0, image_h, count)
    rois = np.stack([rng.integers(0, n_img, count), x1, y1, x2, y2], axis=1)
    rois = np.vstack([rois, [[0, 2.5 / scale, 0.5 / scale, 1.5 / scale, 2.5 / scale],
                             [n_img - 1, 3 * image_w, 3 * image_h, 4 * image_w, 4 * image_h],
                             [0, 0.5, 1.5, 2.5, 3.5]]])
    return rois.astype(F)


@pytest.mark.parametrize(("shape", "pooled", "scale"), [
    ((2, 3, 9, 11), (3, 2), 0.0625),
    ((1, 2, 6, 6), (4, 4), 1.0),
    ((2, 2, 14, 10), (7, 7), 0.5),
])
def test_roi_pooling_matches_the_fork(shape, pooled, scale):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(F)
    rois = _rois(rng, shape[0], shape[2], shape[3], scale, 6)
    top = np.empty((len(rois), shape[1], *pooled), F)
    argmax = np.empty(top.shape, np.int32)
    roi.roi_pool_forward(x, rois, F(scale), top, argmax)
    want_top, want_argmax = ref.roi_pool_forward(x, rois, scale, *pooled)
    np.testing.assert_array_equal(top, want_top)
    np.testing.assert_array_equal(argmax, want_argmax)
    dy = rng.standard_normal(top.shape).astype(F)
    dx = np.full(shape, np.nan, F)
    roi.roi_pool_backward(dy, argmax, rois, F(scale), dx)
    np.testing.assert_allclose(dx, ref.roi_pool_backward(dy, want_argmax, rois, scale, shape),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("shape", "output_dim", "group", "scale"), [
    ((2, 2 * 9, 8, 9), 2, 3, 0.0625),
    ((1, 3 * 4, 5, 7), 3, 2, 1.0),
    ((2, 1 * 49, 14, 14), 1, 7, 0.5),
])
def test_psroi_pooling_matches_the_fork(shape, output_dim, group, scale):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(F)
    rois = _rois(rng, shape[0], shape[2], shape[3], scale, 6)
    top = np.empty((len(rois), output_dim, group, group), F)
    roi.psroi_pool_forward(x, rois, F(scale), group, top)
    np.testing.assert_array_equal(top, ref.psroi_pool_forward(x, rois, scale, output_dim,
                                                               group))
    dy = rng.standard_normal(top.shape).astype(F)
    dx = np.full(shape, np.nan, F)
    roi.psroi_pool_backward(dy, rois, F(scale), group, dx)
    np.testing.assert_allclose(dx, ref.psroi_pool_backward(dy, rois, scale, shape), rtol=1e-5,
                               atol=1e-6)


def test_rounding_is_c_round_not_numpy_round():
    # 0.5 and 2.5 go up in C (away from zero); NumPy would round them to 0 and 2.
    assert [roi.round_half_away(v) for v in (0.5, 2.5, -0.5, -2.5, 1.49)] == [1, 3, -1, -3, 1]


@pytest.mark.parametrize(("shape", "pad_beg", "pad_end", "out"), [
    ((2, 3, 4, 5), 0, 0, (7, 9)),      # zoom 2
    ((1, 2, 9, 9), 0, 0, (5, 5)),      # shrink 2
    ((1, 2, 6, 7), -1, -1, (9, 11)),   # cropped, zoom 2
    ((1, 1, 5, 5), -1, 0, (4, 4)),     # a crop as large as the output: copied
    ((1, 2, 3, 4), 0, 0, (1, 1)),      # one output pixel: ratio 0
    ((2, 1, 1, 1), 0, 0, (3, 2)),      # one input pixel
])
def test_interp_matches_the_fork(shape, pad_beg, pad_end, out):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(F)
    size_in = (shape[2] + pad_beg + pad_end, shape[3] + pad_beg + pad_end)
    y = np.full((shape[0] * shape[1], *out), np.nan, F)
    resample.interp_forward(x.reshape(-1, *shape[2:]), -pad_beg, *size_in, y)
    want = ref.interp_forward(x, pad_beg, *size_in, *out)
    np.testing.assert_array_equal(y.reshape(want.shape), want)
    dy = rng.standard_normal(want.shape).astype(F)
    dx = np.full(x.shape, np.nan, F)
    resample.interp_backward(dy.reshape(y.shape), -pad_beg, *size_in,
                             dx.reshape(-1, *shape[2:]))
    np.testing.assert_allclose(dx, ref.interp_backward(dy, pad_beg, *size_in, x.shape),
                               rtol=1e-6, atol=1e-6)


def test_upsample_matches_the_fork_and_reports_a_bad_index():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 2, 3)).astype(F)
    mask = rng.integers(0, 5 * 6, x.shape).astype(F)  # repeated indices: the last one wins
    y = np.full((6, 30), np.nan, F)
    assert resample.upsample_forward(x.reshape(6, 6), mask.reshape(6, 6), y) == -1
    np.testing.assert_array_equal(y.reshape(2, 3, 5, 6), ref.upsample_forward(x, mask, 5, 6))
    dy = rng.standard_normal((2, 3, 5, 6)).astype(F)
    dx = np.full((6, 6), np.nan, F)
    resample.upsample_backward(dy.reshape(6, 30), mask.reshape(6, 6), dx)
    np.testing.assert_array_equal(dx.reshape(x.shape), ref.upsample_backward(dy, mask))
    mask[1, 2, 1, 0] = 30
    assert resample.upsample_forward(x.reshape(6, 6), mask.reshape(6, 6), y) == 5


def test_anchors_are_py_faster_rcnns():
    want = ref.anchors()
    np.testing.assert_array_equal(generate_anchors(16, (0.5, 1, 2), (8, 16, 32)), want)
    # The table py-faster-rcnn's generate_anchors.py prints for its defaults.
    assert want[0].tolist() == [-84.0, -40.0, 99.0, 55.0]
    odd = ref.anchors(base_size=13, ratios=(0.5, 1.7), scales=(2, 3))
    np.testing.assert_array_equal(generate_anchors(13, (0.5, 1.7), (2, 3)), odd)


@pytest.mark.parametrize("min_size", [16, 0])
def test_proposals_match_py_faster_rcnn(min_size):
    rng = np.random.default_rng(7)
    base = ref.anchors()
    a, height, width = len(base), 6, 8
    cls_prob = rng.uniform(0, 1, (1, 2 * a, height, width)).astype(F)
    deltas = (rng.standard_normal((1, 4 * a, height, width)) * 0.3).astype(F)
    im_info = np.array([90, 120, 1.2], F)
    n = height * width * a
    boxes, scores = np.empty((n, 4), F), np.empty(n, F)
    keep = np.empty(n, np.bool_)
    proposal.decode_proposals(base.astype(F), deltas[0], cls_prob[0, a:], 16, im_info[0],
                              im_info[1], F(min_size * im_info[2]), boxes, scores, keep)
    kept = np.flatnonzero(keep)
    order = kept[np.argsort(scores[kept], kind="stable")[::-1]][:50]
    chosen = np.empty(len(order), np.int64)
    count = proposal.greedy_nms(np.ascontiguousarray(boxes[order]), F(0.7), 20, chosen)
    want_rois, want_scores = ref.proposals(cls_prob, deltas, im_info, base=base, pre_nms=50,
                                           post_nms=20, min_size=min_size)
    assert count == len(want_rois) > 5
    np.testing.assert_allclose(boxes[order[chosen[:count]]], want_rois[:, 1:], rtol=1e-5,
                               atol=1e-3)
    np.testing.assert_array_equal(scores[order[chosen[:count]]], want_scores.ravel())
