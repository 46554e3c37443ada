"""ROIPooling and PSROIPooling layers (Fast R-CNN, R-FCN): hand-checked values, the forks'
rounding and bin rules, shapes, the ROIs' zero diff, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import blob_from, build_layer, setup_forward
from tests.reference import forks as ref


def roi_layer(params: str, x, rois, kind: str = "ROIPooling"):
    field = "roi_pooling_param" if kind == "ROIPooling" else "psroi_pooling_param"
    layer = build_layer(f'name: "pool" type: "{kind}" bottom: "x" bottom: "rois" top: "y" '
                        f"{field} {{ {params} }}")
    bottom, top = [blob_from(x), blob_from(rois)], [Blob()]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def test_roi_pooling_takes_the_maximum_of_each_bin():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = 100  # the top-left bin's maximum is its first pixel
    # ROI (1, 1)-(3, 4) in image pixels at scale 0.5 -> map box (1, 1)-(2, 2): C rounds 0.5
    # up to 1 (NumPy would give 0) and 1.5 to 2. Then the whole map.
    rois = [[0, 1, 1, 3, 4], [0, 0, 0, 6, 6]]
    _, _, top = roi_layer("pooled_h: 2 pooled_w: 2 spatial_scale: 0.5", x, rois)
    assert top[0].shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(top[0].data[0, 0], [[5, 6], [9, 10]])
    np.testing.assert_array_equal(top[0].data[1, 0], [[100, 7], [13, 15]])


def test_roi_pooling_bins_clipped_away_give_zero_and_no_gradient():
    x = -np.ones((1, 2, 3, 3), np.float32)
    layer, bottom, top = roi_layer("pooled_h: 2 pooled_w: 2", x, [[0, 2, 2, 5, 5]])
    # The box (2, 2)-(5, 5) keeps one map pixel; bins past the map are empty and read 0.
    np.testing.assert_array_equal(top[0].data[0, 0], [[-1, 0], [0, 0]])
    top[0].diff[...] = 1
    bottom[1].diff[...] = 5
    layer.backward(top, [True, True], bottom)
    assert bottom[0].diff[0, 0].sum() == 1 and bottom[0].diff[0, 0, 2, 2] == 1
    assert not bottom[1].diff.any()  # the boxes get a zero diff


def test_roi_pooling_routes_overlapping_rois_into_one_pixel():
    x = np.zeros((2, 1, 3, 3), np.float32)
    x[1, 0, 1, 1] = 9
    rois = [[1, 0, 0, 2, 2], [1, 1, 1, 2, 2], [0, 0, 0, 2, 2]]
    layer, bottom, top = roi_layer("pooled_h: 1 pooled_w: 1", x, rois)
    top[0].diff[...] = [[[[2]]], [[[3]]], [[[4]]]]
    layer.backward(top, [True, False], bottom)
    assert bottom[0].diff[1, 0, 1, 1] == 5  # both ROIs of image 1 picked it
    assert bottom[0].diff[0].sum() == 4  # image 0's ROI picked its first zero


def test_roi_pooling_a_malformed_box_pools_one_pixel_but_passes_no_gradient():
    """x2 < x1: the fork pools the 1x1 box at (x1, y1) but its backward only credits pixels
    inside [x1, x2], which is empty (the fork's quirk, kept)."""
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 2] = 5
    rois = np.array([[0, 2, 1, 0, 3]], np.float32)
    layer, bottom, top = roi_layer("pooled_h: 1 pooled_w: 1", x, rois)
    assert top[0].data[0, 0, 0, 0] == 5
    top[0].diff[...] = 1
    layer.backward(top, [True, False], bottom)
    assert not bottom[0].diff.any()
    np.testing.assert_array_equal(
        bottom[0].diff, ref.roi_pool_backward(top[0].diff, layer._argmax, rois, 1.0, x.shape))


def test_psroi_pooling_averages_the_position_sensitive_channel():
    x = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    # Image 1, the whole 4x4 map, 2x2 bins of 2x2 pixels; bin (i, j) reads channel 2i + j.
    _, _, top = roi_layer("spatial_scale: 1 output_dim: 1 group_size: 2", x,
                          [[1, 0, 0, 3, 3]], "PSROIPooling")
    assert top[0].shape == (1, 1, 2, 2)
    want = [[x[1, 0, :2, :2].mean(), x[1, 1, :2, 2:].mean()],
            [x[1, 2, 2:, :2].mean(), x[1, 3, 2:, 2:].mean()]]
    np.testing.assert_allclose(top[0].data[0, 0], want, rtol=1e-6)


def test_psroi_pooling_rounds_the_box_before_scaling():
    x = np.random.default_rng(1).standard_normal((1, 8, 6, 7)).astype(np.float32)
    rois = np.array([[0, 2.5, 3.5, 40.5, 31.4], [0, -8, -8, 4, 2]], np.float32)
    _, _, top = roi_layer("spatial_scale: 0.125 output_dim: 2 group_size: 2", x, rois,
                          "PSROIPooling")
    np.testing.assert_array_equal(top[0].data, ref.psroi_pool_forward(x, rois, 0.125, 2, 2))


@pytest.mark.parametrize(("kind", "params", "x_shape", "rois", "message"), [
    ("ROIPooling", "pooled_h: 0 pooled_w: 2", (1, 1, 4, 4), [[0, 0, 0, 1, 1]],
     "pooled_h and pooled_w must be > 0"),
    ("ROIPooling", "pooled_h: 2 pooled_w: 2", (1, 1, 4, 4), [[0, 0, 0, 1]],
     r"bottom 1 \(the ROIs\) must be R x 5"),
    ("ROIPooling", "pooled_h: 2 pooled_w: 2", (1, 4, 4), [[0, 0, 0, 1, 1]],
     r"bottom 0 \(the feature map\) must be \(N, C, H, W\)"),
    ("ROIPooling", "pooled_h: 2 pooled_w: 2", (2, 1, 4, 4), [[0, 0, 0, 1, 1], [2, 0, 0, 1, 1]],
     "ROI 1 has batch index 2; the feature map holds 2 image"),
    ("PSROIPooling", "spatial_scale: 1 output_dim: 2 group_size: 2", (1, 6, 4, 4),
     [[0, 0, 0, 1, 1]], "bottom 0 has 6 channels; output_dim 2 x group_size 2.2 needs 8"),
    ("PSROIPooling", "spatial_scale: 1 output_dim: 0 group_size: 2", (1, 8, 4, 4),
     [[0, 0, 0, 1, 1]], "output_dim and group_size must be > 0"),
    ("PSROIPooling", "spatial_scale: 1 output_dim: 2 group_size: 2", (1, 8, 4, 4),
     [[-1, 0, 0, 1, 1]], "ROI 0 has batch index -1"),
])
def test_errors(kind, params, x_shape, rois, message):
    with pytest.raises(PyforgeError, match=message):
        roi_layer(params, np.zeros(x_shape, np.float32), np.asarray(rois, np.float32), kind)
