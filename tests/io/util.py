"""Helpers shared by the data-layer tests: build a layer from prototxt text, run it, make
small images."""

from __future__ import annotations

import cv2
import numpy as np

from pyforge.blob import Blob
from pyforge.layers import LAYERS, NetContext
from pyforge.log import get_logger
from pyforge.proto import caffe_pb2, parse_text_proto
from pyforge.rng import make_rng

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def make_layer(text: str, phase=TRAIN, seed=1701, source_file=None):
    param = parse_text_proto(text, caffe_pb2.LayerParameter(), "layer")
    param.phase = phase
    ctx = NetContext(phase=phase, rng=make_rng(seed), logger=get_logger(),
                     source_file=source_file)
    return LAYERS.get(param.type)(param, ctx)


def run(layer, n_tops=2, forwards=1, bottoms=()):
    """Set the layer up and run ``forwards`` passes; the tops' data after each."""
    tops = [Blob() for _ in range(n_tops)]
    layer.setup(list(bottoms), tops)
    out = []
    for _ in range(forwards):
        layer.reshape(list(bottoms), tops)
        layer.forward(list(bottoms), tops)
        out.append([t.data.copy() for t in tops])
    return out


def random_images(n, height, width, channels=3, seed=0):
    """``n`` random uint8 images as (H, W, C) arrays in RGB order (what Pillow saves)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
            for _ in range(n)]


def smooth_image(height, width, seed=0):
    """A smooth RGB image (JPEG keeps it close), (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = rng.uniform(40, 200, size=3)
    image = np.stack([base[c] + 30 * np.sin((x + 3 * c) / 5) + 20 * np.cos(y / 4)
                      for c in range(3)], axis=-1)
    return np.clip(image, 0, 255).astype(np.uint8)


def bgr_planar(rgb):
    """(H, W, 3) RGB -> (3, H, W) BGR, the layout Caffe's records and layers use."""
    return np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1))


def planar(image):
    """OpenCV's (H, W) or (H, W, C) as Caffe's planar (C, H, W)."""
    return image[None] if image.ndim == 2 else np.ascontiguousarray(image.transpose(2, 0, 1))


def write_rgb(path, rgb, **params):
    """Save an (H, W, 3) RGB image with OpenCV (which takes BGR); ``params`` e.g. jpeg=90."""
    flags = []
    if "jpeg" in params:
        flags = [cv2.IMWRITE_JPEG_QUALITY, params["jpeg"]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), flags)


def cv_read(path, gray=False):
    """cv::imread with IMREAD_COLOR or IMREAD_GRAYSCALE, as Caffe reads, planar."""
    return planar(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR))


def cv_resize(image, height, width):
    """cv::resize INTER_LINEAR of a planar image, as Caffe resizes."""
    hwc = image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))
    return planar(cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR))
