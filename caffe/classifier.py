"""pycaffe's ``caffe.classifier``: ``Classifier``, a TEST-phase Net that classifies images."""

from __future__ import annotations

import numpy as np

from pyforge.errors import PyforgeError
from pyforge.proto import caffe_pb2

from . import io as caffe_io
from .pycaffe import Net

__all__ = ["Classifier"]


class Classifier(Net):
    """``Classifier(model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
    raw_scale=None, channel_swap=None)``: a deploy net with weights and a Transformer for its
    first input (transpose ``(2, 0, 1)`` plus the given settings).

    :meth:`predict` resizes images to ``image_dims`` (default: the input's size), takes the
    centre crop, or with ``oversample`` the ten crops of :func:`io.oversample` and averages
    their predictions, and returns the first output per image.
    """

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None,
                 input_scale=None, raw_scale=None, channel_swap=None) -> None:
        super().__init__(model_file, caffe_pb2.TEST, weights=pretrained_file)
        self.transformer = input_transformer(self, mean, input_scale, raw_scale, channel_swap)
        name = self.inputs[0]
        self.crop_dims = np.array(self.blobs[name].data.shape[2:])
        self.image_dims = self.crop_dims if not image_dims else image_dims

    def predict(self, inputs, oversample: bool = True) -> np.ndarray:
        """Class scores (the first net output) for each ``H x W x K`` image in ``inputs``."""
        height, width = (int(d) for d in self.image_dims)
        batch = np.zeros((len(inputs), height, width, inputs[0].shape[2]), dtype=np.float32)
        for i, image in enumerate(inputs):
            batch[i] = caffe_io.resize_image(image, (height, width))
        if oversample:
            batch = caffe_io.oversample(batch, self.crop_dims)
        else:
            centre = np.array([height, width]) / 2.0
            crop = np.concatenate([centre - self.crop_dims / 2.0,
                                   centre + self.crop_dims / 2.0]).astype(int)
            batch = batch[:, crop[0]:crop[2], crop[1]:crop[3], :]
        name = self.inputs[0]
        caffe_in = np.zeros((batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2]),
                            dtype=np.float32)
        for i, image in enumerate(batch):
            caffe_in[i] = self.transformer.preprocess(name, image)
        predictions = self.forward_all(**{name: caffe_in})[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(1)
        return predictions


def input_transformer(net: Net, mean=None, input_scale=None, raw_scale=None,
                      channel_swap=None) -> caffe_io.Transformer:
    """A Transformer for the net's first input that turns ``H x W x K`` images into it
    (transpose ``(2, 0, 1)``) with the settings given (Classifier's and Detector's set-up)."""
    name = net.inputs[0] if net.inputs else None
    if name is None:
        raise PyforgeError(f"net '{net.name}' has no input blob to feed images into (give it an "
                           "Input layer)")
    transformer = caffe_io.Transformer({name: net.blobs[name].data.shape})
    transformer.set_transpose(name, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(name, mean)
    if input_scale is not None:
        transformer.set_input_scale(name, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(name, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(name, channel_swap)
    return transformer
