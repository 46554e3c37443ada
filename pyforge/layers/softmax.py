"""Softmax and SoftmaxWithLoss (softmax followed by the multinomial log loss).
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..proto import caffe_pb2
from .base import Layer, LossLayer, Norm, loss_normalizer, register_layer

FLT_MIN = np.float32(1.17549435e-38)


def softmax_forward(x: np.ndarray, outer: int, channels: int, inner: int, out: np.ndarray) -> None:
    """Softmax over the middle axis of ``x`` viewed as (outer, channels, inner)."""
    x3 = x.reshape(outer, channels, inner)
    y3 = out.reshape(outer, channels, inner)
    np.subtract(x3, x3.max(axis=1, keepdims=True), out=y3)
    np.exp(y3, out=y3)
    y3 /= y3.sum(axis=1, keepdims=True)


@register_layer("Softmax", "SOFTMAX")
class SoftmaxLayer(Layer):
    """Caffe type ``Softmax``: normalised exponentials along softmax_param.axis (1)."""

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.axis = self.canonical_axis(bottom[0], self.param.softmax_param.axis)
        top[0].reshape_like(bottom[0])
        self.outer = bottom[0].count_range(0, self.axis)
        self.channels = bottom[0].shape[self.axis]
        self.inner = bottom[0].count_range(self.axis + 1)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        softmax_forward(bottom[0].data, self.outer, self.channels, self.inner, top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        shape = (self.outer, self.channels, self.inner)
        y = top[0].data.reshape(shape)
        dy = top[0].diff.reshape(shape)
        dot = (dy * y).sum(axis=1, keepdims=True)
        np.multiply(dy - dot, y, out=bottom[0].diff.reshape(shape))


def normalizer(param: caffe_pb2.LossParameter, outer: int, inner: int, valid: int,
               has_ignore: bool) -> float:
    """Caffe's LossLayer::GetNormalizer, including the deprecated ``normalize`` field."""
    mode = param.normalization
    if not param.HasField("normalization") and param.HasField("normalize"):
        mode = Norm.VALID if param.normalize else Norm.BATCH_SIZE
    return loss_normalizer(mode, outer, inner, valid if has_ignore else outer * inner)


@register_layer("SoftmaxWithLoss", "SOFTMAX_LOSS")
class SoftmaxWithLossLayer(LossLayer):
    """Caffe type ``SoftmaxWithLoss``: softmax of bottom[0] along ``axis`` and the mean negative
    log-likelihood of the integer labels in bottom[1].

    Reads softmax_param.axis, loss_param.ignore_label and normalization (VALID). An optional
    second top gives the probabilities.
    """

    exact_num_top_blobs = -1
    min_top_blobs = 1
    max_top_blobs = 2

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().layer_setup(bottom, top)
        # Caffe builds an internal Softmax layer through the layer factory.
        self.ctx.logger.info("Creating layer %s", self.name)
        lp = self.param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = lp.ignore_label
        self.prob = np.empty(0, dtype=np.float32)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape(())
        self.axis = self.canonical_axis(bottom[0], self.param.softmax_param.axis)
        self.outer = bottom[0].count_range(0, self.axis)
        self.channels = bottom[0].shape[self.axis]
        self.inner = bottom[0].count_range(self.axis + 1)
        if self.outer * self.inner != bottom[1].count:
            raise self.error(
                f"number of labels must match number of predictions; e.g., if softmax axis == 1 "
                f"and prediction shape is (N, C, H, W), label count (number of labels) must be "
                f"N*H*W, with integer values in {{0, 1, ..., C-1}}; found prediction "
                f"{bottom[0].shape} and label {bottom[1].shape}"
            )
        if self.prob.shape != bottom[0].shape:
            self.prob = np.empty(bottom[0].shape, dtype=np.float32)
        if len(top) > 1:
            top[1].reshape_like(bottom[0])

    def _labels(self, bottom: list[Blob]) -> tuple[np.ndarray, np.ndarray]:
        labels = bottom[1].data.reshape(self.outer, self.inner).astype(np.int64)
        valid = np.ones_like(labels, dtype=bool)
        if self.has_ignore:
            valid = labels != self.ignore_label
        bad = valid & ((labels < 0) | (labels >= self.channels))
        if bad.any():
            raise self.error(
                f"label {int(labels[bad][0])} is out of range for {self.channels} classes"
            )
        return labels, valid

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        softmax_forward(bottom[0].data, self.outer, self.channels, self.inner, self.prob)
        labels, valid = self._labels(bottom)
        prob3 = self.prob.reshape(self.outer, self.channels, self.inner)
        safe = np.where(valid, labels, 0)
        picked = np.take_along_axis(prob3, safe[:, None, :], axis=1)[:, 0, :]
        logs = np.log(np.maximum(picked, FLT_MIN))
        total = -np.sum(logs[valid], dtype=np.float32)
        count = int(valid.sum())
        norm = normalizer(self.param.loss_param, self.outer, self.inner, count, self.has_ignore)
        top[0].data[...] = np.float32(total) / np.float32(norm)
        if len(top) == 2:
            top[1].data[...] = self.prob

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if len(propagate_down) > 1 and propagate_down[1]:
            raise self.error("cannot backpropagate to the label input")
        if not propagate_down[0]:
            return
        labels, valid = self._labels(bottom)
        diff3 = bottom[0].diff.reshape(self.outer, self.channels, self.inner)
        diff3[...] = self.prob.reshape(diff3.shape)
        rows, cols = np.nonzero(valid)
        diff3[rows, labels[rows, cols], cols] -= np.float32(1.0)
        if self.has_ignore:
            diff3 *= valid[:, None, :]
        count = int(valid.sum())
        norm = normalizer(self.param.loss_param, self.outer, self.inner, count, self.has_ignore)
        diff3 *= np.float32(top[0].diff.reshape(-1)[0] / norm)
