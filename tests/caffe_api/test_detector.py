"""caffe.Detector: R-CNN style window classification, with and without context padding."""

from __future__ import annotations

import numpy as np
import pytest

import caffe
from pyforge.errors import PyforgeError

cv2 = pytest.importorskip("cv2")

DEPLOY = """name: "tiny_detector"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 3 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

MEAN = np.array([0.2, 0.4, 0.6], dtype=np.float32)  # per channel, in the net's (BGR) order


@pytest.fixture
def model(tmp_path):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(DEPLOY)
    caffe.set_random_seed(5)
    weights = str(tmp_path / "tiny.caffemodel")
    caffe.Net(str(deploy), caffe.TEST).save(weights)
    return str(deploy), weights


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(7)
    paths = []
    for i, shape in enumerate([(40, 40, 3), (30, 50, 3)]):
        path = str(tmp_path / f"image{i}.png")  # lossless: the pixels read back are these
        cv2.imwrite(path, rng.integers(0, 256, shape, dtype=np.uint8))
        paths.append(path)
    return paths


def _detector(model, **kwargs):
    return caffe.Detector(*model, mean=MEAN, raw_scale=255, channel_swap=(2, 1, 0), **kwargs)


def test_windows_are_warped_to_the_input_and_classified(model, images):
    detector = _detector(model)
    windows = [(images[0], [np.array([1, 2, 20, 30]), np.array([0, 0, 40, 40])]),
               (images[1], [np.array([5, 10, 25, 45])])]
    detections = detector.detect_windows(windows)
    assert [(d["filename"], tuple(d["window"])) for d in detections] == [
        (images[0], (1, 2, 20, 30)), (images[0], (0, 0, 40, 40)), (images[1], (5, 10, 25, 45))]
    # The same crops, preprocessed and run by hand through a plain Net with the same weights.
    net = caffe.Net(model[0], caffe.TEST, weights=model[1])
    for detection in detections:
        image = caffe.io.load_image(detection["filename"])
        top, left, bottom, right = detection["window"]
        crop = image[top:bottom, left:right]
        np.testing.assert_array_equal(detector.crop(image, detection["window"]), crop)
        warped = caffe.io.resize_image(crop, (8, 8))[:, :, ::-1].transpose(2, 0, 1) * 255
        batch = np.zeros((3, 3, 8, 8), np.float32)
        batch[0] = warped - MEAN[:, None, None]
        expected = net.forward(data=batch)["prob"][0]
        np.testing.assert_allclose(detection["prediction"], expected, rtol=1e-4, atol=1e-6)
        assert detection["prediction"].shape == (5,)
    assert detector.detect_windows([]) == []


def test_context_padding_inside_the_image(model, images):
    detector = _detector(model, context_pad=2)
    image = caffe.io.load_image(images[0])
    # crop 8 with 2 pixels of context: the window is scaled by 8 / 4 about its centre.
    crop = detector.crop(image, np.array([10, 10, 19, 19]))
    assert crop.shape == (8, 8, 3)
    np.testing.assert_allclose(crop, caffe.io.resize_image(image[5:25, 5:25], (8, 8)),
                               rtol=1e-6)


def test_context_padding_beyond_the_border_is_the_mean(model, images):
    detector = _detector(model, context_pad=2)
    image = caffe.io.load_image(images[0])
    crop = detector.crop(image, np.array([0, 0, 9, 9]))
    # The enlarged box (-5, -5, 15, 15) leaves the image by 5 of its 21 pixels: 2 crop pixels.
    np.testing.assert_allclose(crop[2:, 2:], caffe.io.resize_image(image[0:15, 0:15], (6, 6)),
                               rtol=1e-6)
    mean_rgb = MEAN[::-1] / 255  # the mean back in load_image's space
    np.testing.assert_allclose(crop[:2], np.broadcast_to(mean_rgb, (2, 8, 3)), rtol=1e-6)
    np.testing.assert_allclose(crop[:, :2], np.broadcast_to(mean_rgb, (8, 2, 3)), rtol=1e-6)
    # After preprocessing the context border is zero, as R-CNN pads.
    net_input = detector.transformer.preprocess("data", crop)
    np.testing.assert_allclose(net_input[:, :2, :], 0, atol=1e-5)
    assert np.abs(net_input[:, 2:, 2:]).max() > 0.01
    with pytest.raises(PyforgeError, match="outside"):
        detector.crop(image, np.array([-30, -30, -25, -25]))


def test_context_padding_without_a_mean_pads_with_zeros(model, images):
    detector = caffe.Detector(*model, context_pad=2)
    crop = detector.crop(caffe.io.load_image(images[1]), np.array([20, 40, 29, 49]))
    assert crop.shape == (8, 8, 3)
    np.testing.assert_array_equal(crop[:, 6:], 0)  # beyond the right edge


def test_selective_search_needs_its_package(model, images):
    with pytest.raises(PyforgeError, match="selective_search_ijcv_with_python"):
        _detector(model).detect_selective_search(images)
