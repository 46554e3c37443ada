"""pycaffe's ``caffe.detector``: ``Detector``, a TEST-phase Net that classifies image windows
(R-CNN style: each window is cut out, warped to the net's input and classified).

Windows are ``(ymin, xmin, ymax, xmax)`` in pixels, given per image
(:meth:`Detector.detect_windows`) or proposed by selective search
(:meth:`Detector.detect_selective_search`, which needs the external
``selective_search_ijcv_with_python`` package and MATLAB, as pycaffe's does).

With ``context_pad``, a window is first enlarged so that, once warped to the input size, a
border of ``context_pad`` pixels around it shows the image around the window (R-CNN's
feature extraction). Where the enlarged window leaves the image, that border is filled with
the mean (in the image's own space), so that it is zero after preprocessing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from pyforge.errors import PyforgeError
from pyforge.proto import caffe_pb2

from . import io as caffe_io
from .classifier import input_transformer
from .pycaffe import Net

__all__ = ["Detector"]


class Detector(Net):
    """``Detector(model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
    channel_swap=None, context_pad=None)``: a deploy net with weights and a Transformer for its
    first input, as :class:`caffe.Classifier` has, plus the context padding of crops."""

    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None, context_pad=None) -> None:
        super().__init__(model_file, caffe_pb2.TEST, weights=pretrained_file)
        self.transformer = input_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows: Iterable) -> list[dict]:
        """Classify every window of every image: ``images_windows`` holds ``(image file,
        windows)`` pairs. Returns one ``{'window', 'prediction', 'filename'}`` dict per window,
        in order; ``prediction`` is the net's first output for it."""
        pairs = [(filename, [np.asarray(w) for w in windows])
                 for filename, windows in images_windows]
        crops = []
        for filename, windows in pairs:
            image = caffe_io.load_image(filename).astype(np.float32)
            crops.extend(self.crop(image, window) for window in windows)
        if not crops:
            return []
        name = self.inputs[0]
        caffe_in = np.zeros((len(crops), crops[0].shape[2], *self.blobs[name].data.shape[2:]),
                            dtype=np.float32)
        for i, crop in enumerate(crops):
            caffe_in[i] = self.transformer.preprocess(name, crop)
        predictions = self.forward_all(**{name: caffe_in})[self.outputs[0]]
        detections = []
        for filename, windows in pairs:
            for window in windows:
                detections.append({"window": window, "prediction": predictions[len(detections)],
                                   "filename": filename})
        return detections

    def detect_selective_search(self, image_fnames: Iterable) -> list[dict]:
        """:meth:`detect_windows` over the windows selective search proposes for each image."""
        try:
            import selective_search_ijcv_with_python as selective_search
        except ImportError:
            raise PyforgeError("detect_selective_search needs the selective_search_ijcv_with_"
                               "python package (github.com/sergeyk/selective_search_ijcv_with_"
                               "python) and MATLAB; or give the windows to detect_windows"
                               ) from None
        # Absolute paths: MATLAB runs in another directory.
        image_fnames = [os.path.abspath(f) for f in image_fnames]
        windows = selective_search.get_windows(image_fnames, cmd="selective_search_rcnn")
        return self.detect_windows(zip(image_fnames, windows))

    def crop(self, im: np.ndarray, window) -> np.ndarray:
        """The window ``(ymin, xmin, ymax, xmax)`` of ``im`` (``H x W x K``); with context
        padding, the enlarged window resized into an input-sized crop (see the module)."""
        box = np.asarray(window, dtype=np.float64)
        if not self.context_pad:
            top, left, bottom, right = (int(v) for v in box)
            return im[top:bottom, left:right]
        crop_size = self.blobs[self.inputs[0]].width  # R-CNN's inputs are square
        scale = crop_size / (crop_size - 2.0 * self.context_pad)
        half = np.array([box[2] - box[0] + 1, box[3] - box[1] + 1]) / 2.0
        centre = box[:2] + half
        box = np.round(np.concatenate([centre - scale * half, centre + scale * half]))
        full = box[2:] - box[:2] + 1
        scale_hw = crop_size / full
        # How much of the enlarged window lies above / left of the image, in crop pixels.
        pad_y, pad_x = (_round_half_up(max(0.0, -box[i]) * scale_hw[i]) for i in (0, 1))
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w])
        clipped = box[2:] - box[:2] + 1
        crop_h = min(_round_half_up(clipped[0] * scale_hw[0]), crop_size - pad_y)
        crop_w = min(_round_half_up(clipped[1] * scale_hw[1]), crop_size - pad_x)
        top, left, bottom, right = (int(v) for v in box)
        if bottom <= top or right <= left or crop_h <= 0 or crop_w <= 0:
            raise PyforgeError(f"window {tuple(int(v) for v in window)} with its context lies "
                               f"outside the {im_h}x{im_w} image")
        context = caffe_io.resize_image(im[top:bottom, left:right], (crop_h, crop_w))
        crop = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        crop[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context
        return crop

    def configure_crop(self, context_pad) -> None:
        """Set the crop size (the input's, as ``H x W x K``) and the context padding; with
        padding, the fill value: the preprocessing mean taken back to image space."""
        name = self.inputs[0]
        to_image = np.argsort(self.transformer.transpose[name])
        self.crop_dims = np.array(self.blobs[name].data.shape[1:])[to_image]
        self.context_pad = context_pad
        if not context_pad:
            return
        mean = self.transformer.mean.get(name)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        crop_mean = np.array(mean, dtype=np.float32).transpose(to_image)
        channel_swap = self.transformer.channel_swap.get(name)
        if channel_swap is not None:
            crop_mean = crop_mean[:, :, np.argsort(channel_swap)]
        raw_scale = self.transformer.raw_scale.get(name)
        if raw_scale is not None:
            crop_mean /= raw_scale
        self.crop_mean = crop_mean


def _round_half_up(value: float) -> int:
    """Python 2's round() of a non-negative number, which pycaffe's detector was written for."""
    return int(np.floor(value + 0.5))
