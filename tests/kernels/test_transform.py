"""pyforge.kernels.transform: transform_batch (crop, mirror, mean, scale) against Caffe's
DataTransformer loop (tests/reference/transform.py), bit for bit, since both compute Caffe's
two float32 operations per pixel; and pyforge.io.datum.resize_image (which calls OpenCV, as
Caffe does; the hand-written bilinear kernel it replaced differed on the edge rows when
enlarging) against cv2.resize(INTER_LINEAR) on uint8 images, pixel for pixel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pyforge.io.datum import resize_image
from pyforge.kernels.transform import transform_batch
from tests.reference import transform as ref

F32 = np.float32


def _mean(kind: str, shape, rng) -> np.ndarray:
    c, h, w = shape
    if kind == "none":
        return np.zeros(shape, F32)
    if kind == "values":  # mean_value: one per channel, broadcast as the transformer does
        return np.broadcast_to(np.array([104.0, 117.0, 123.5])[:c, None, None],
                               shape).astype(F32)
    return (rng.random(shape) * 255).astype(F32)  # mean_file


# (N, C, H, W, crop) with crop 0 meaning none
SHAPES = [
    pytest.param((3, 3, 8, 7, 5), id="crop5"),
    pytest.param((2, 1, 6, 6, 0), id="no_crop"),
    pytest.param((4, 2, 5, 9, 1), id="crop1"),
    pytest.param((1, 3, 4, 4, 4), id="crop_is_image"),
]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("mean_kind", ["none", "values", "image"])
@pytest.mark.parametrize("scale", [1.0, 0.00390625, 0.017])
@pytest.mark.parametrize("shape", SHAPES)
def test_transform_batch_is_caffes_arithmetic(shape, scale, mean_kind, dtype):
    n, c, h, w, crop = shape
    rng = np.random.default_rng(n * 100 + h)
    raw = rng.integers(0, 256, size=(n, c, h, w)).astype(dtype)
    if dtype == np.float32:
        raw += rng.random(raw.shape).astype(F32)  # float_data need not be integral
    crop_h, crop_w = (crop, crop) if crop else (h, w)
    h_off = rng.integers(0, h - crop_h + 1, size=n).astype(np.int64)
    w_off = rng.integers(0, w - crop_w + 1, size=n).astype(np.int64)
    mirror = (np.arange(n) % 2 == 1)
    mean = _mean(mean_kind, (c, h, w), rng)
    out = np.full((n, c, crop_h, crop_w), np.nan, F32)
    transform_batch(raw, h_off, w_off, mirror, mean, F32(scale), out)
    expected = ref.transform_batch(raw, h_off, w_off, mirror, mean, scale, (crop_h, crop_w))
    np.testing.assert_array_equal(out, expected)


def test_transform_batch_mirror_and_crop_positions():
    """A 1x1x2x4 image cropped to 2x2 at column 1 and mirrored: columns 1, 2 swapped."""
    raw = np.arange(8, dtype=np.uint8).reshape(1, 1, 2, 4)
    out = np.empty((1, 1, 2, 2), F32)
    transform_batch(raw, np.zeros(1, np.int64), np.ones(1, np.int64), np.ones(1, np.bool_),
                    np.zeros((1, 2, 4), F32), F32(1.0), out)
    np.testing.assert_array_equal(out[0, 0], [[2, 1], [6, 5]])


def _cv2_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv2.resize on the interleaved (H, W, C) image, back to planar (C, H, W)."""
    c = image.shape[0]
    resized = cv2.resize(np.ascontiguousarray(image.transpose(1, 2, 0)), (width, height),
                         interpolation=cv2.INTER_LINEAR)
    return resized.reshape(height, width, c).transpose(2, 0, 1)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return resize_image(image, height, width)


# (C, H, W, out_h, out_w)
RESIZES = [
    pytest.param((3, 32, 32, 16, 16), id="halve"),
    pytest.param((3, 256, 256, 227, 227), id="256_to_227"),
    pytest.param((3, 20, 30, 13, 17), id="shrink_non_integer"),
    pytest.param((1, 9, 37, 9, 37), id="same_size"),
    pytest.param((1, 10, 10, 10, 23), id="widen_only"),
    pytest.param((3, 12, 9, 12, 4), id="narrow_only"),
    pytest.param((1, 6, 1, 11, 3), id="one_column_source"),
    pytest.param((1, 1, 1, 4, 4), id="one_pixel_source"),
    pytest.param((3, 10, 10, 25, 25), id="enlarge"),
    pytest.param((3, 8, 8, 13, 13), id="enlarge_non_integer"),
    pytest.param((1, 5, 7, 11, 7), id="taller_only"),
]


@pytest.mark.parametrize("case", RESIZES)
def test_resize_image_matches_opencv_pixel_for_pixel(case):
    c, h, w, out_h, out_w = case
    image = np.random.default_rng(h * 1000 + w).integers(0, 256, (c, h, w), dtype=np.uint8)
    np.testing.assert_array_equal(_resize(image, out_h, out_w),
                                  _cv2_resize(image, out_h, out_w))


def test_resize_image_enlarging_one_row_matches_opencv():
    """The smallest case found where rows above/below the source's first/last pixel centre
    differ: OpenCV keeps the vertical weights there and reads the clamped row twice, so its
    fixed-point rounding differs from weights (2048, 0) on one row (cv2 gives 241; the
    hand-written kernel gave 242)."""
    image = np.array([[[255, 228]]], np.uint8)
    np.testing.assert_array_equal(_cv2_resize(image, 2, 3), [[[255, 241, 228]] * 2])
    np.testing.assert_array_equal(_resize(image, 2, 3), _cv2_resize(image, 2, 3))


def test_resize_image_of_a_constant_image_is_constant():
    image = np.full((3, 5, 4), 77, np.uint8)
    assert (_resize(image, 9, 2) == 77).all()
