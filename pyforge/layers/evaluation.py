"""Layers that read out predictions: Accuracy and ArgMax.
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from .base import Layer, register_layer


@register_layer("Accuracy", "ACCURACY")
class AccuracyLayer(Layer):
    """Caffe type ``Accuracy``: fraction of items whose label is in the top_k scores.

    Ties count against: an item is correct iff fewer than ``top_k`` classes score ``>=`` the
    true class. Reads accuracy_param: top_k (1), axis (1), ignore_label. A second top gives the
    per-class accuracy.
    """

    exact_num_bottom_blobs = 2
    min_top_blobs = 1
    max_top_blobs = 2

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.accuracy_param
        self.top_k = int(p.top_k)
        self.axis = self.canonical_axis(bottom[0], p.axis)
        self.outer = bottom[0].count_range(0, self.axis)
        self.channels = bottom[0].shape[self.axis]
        self.inner = bottom[0].count_range(self.axis + 1)
        if not bottom[1].count or self.top_k > bottom[0].count // bottom[1].count:
            raise self.error(
                f"top_k ({self.top_k}) must be less than or equal to the number of classes"
            )
        if self.outer * self.inner != bottom[1].count:
            raise self.error(
                f"number of labels must match number of predictions: prediction "
                f"{bottom[0].shape}, label {bottom[1].shape}"
            )
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((self.channels,))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        scores = bottom[0].data.reshape(self.outer, self.channels, self.inner)
        labels = bottom[1].data.reshape(self.outer, self.inner).astype(np.int64)
        p = self.param.accuracy_param
        valid = labels != p.ignore_label if p.HasField("ignore_label") else np.ones_like(
            labels, dtype=bool)
        if (valid & ((labels < 0) | (labels >= self.channels))).any():
            raise self.error(f"a label is outside [0, {self.channels})")
        safe = np.where(valid, labels, 0)
        true_score = np.take_along_axis(scores, safe[:, None, :], axis=1)
        # Classes scoring >= the true class, the true class itself included.
        at_least = (scores >= true_score).sum(axis=1)
        # NaN scores never compare >=, so they never count against (as in Caffe's loop).
        correct = (at_least <= self.top_k) & valid
        count = int(valid.sum())
        top[0].data[...] = np.float32(correct.sum() / count) if count else np.float32(0)
        if len(top) > 1:
            per_class = np.zeros(self.channels, dtype=np.float32)
            for_class = np.bincount(labels[valid], minlength=self.channels)
            hits = np.bincount(labels[correct], minlength=self.channels)
            nz = for_class > 0
            per_class[nz] = hits[nz] / for_class[nz]
            top[1].data[...] = per_class

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if any(propagate_down):
            raise self.error("Accuracy has no gradient; do not backpropagate through it")


@register_layer("ArgMax", "ARGMAX")
class ArgMaxLayer(Layer):
    """Caffe type ``ArgMax``: the indices (and optionally values) of the ``top_k`` largest
    entries.

    Without ``axis``: each item's entries are flattened; the top is (N, 1, top_k) of indices,
    or (N, 2, top_k) with the indices in row 0 and the values in row 1 when ``out_max_val``
    (padded with trailing 1s to the bottom's number of axes, at least 3). With ``axis``: the top
    is the bottom's shape with ``top_k`` on that axis, holding the indices, or only the values
    when ``out_max_val``. Ties rank the larger index first (Caffe sorts (value, index) pairs
    with std::greater). Reads argmax_param: top_k (1), out_max_val (false), axis. No gradient.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.argmax_param
        self.top_k = int(p.top_k)
        if self.top_k < 1:
            raise self.error(f"top_k must not be less than 1, found {self.top_k}")
        self.out_max_val = p.out_max_val
        self.has_axis = p.HasField("axis")
        b = bottom[0]
        if self.has_axis:
            axis = self.canonical_axis(b, p.axis)
            if self.top_k > b.shape[axis]:
                raise self.error(f"top_k ({self.top_k}) must be less than or equal to the "
                                 f"dimension of the axis ({b.shape[axis]})")
            self.outer = b.count_range(0, axis)
            self.dim = b.shape[axis]
            self.inner = b.count_range(axis + 1)
            shape = list(b.shape)
            shape[axis] = self.top_k
        else:
            if b.num_axes < 1:
                raise self.error(f"needs a bottom with at least 1 axis, found {b.shape}")
            self.outer = b.shape[0]
            self.dim = b.count_range(1)
            self.inner = 1
            if self.top_k > self.dim:
                raise self.error(f"top_k ({self.top_k}) must be less than or equal to the "
                                 f"dimension of the flattened bottom blob per instance "
                                 f"({self.dim})")
            shape = [1] * max(b.num_axes, 3)
            shape[0] = b.shape[0]
            shape[2] = self.top_k
            if self.out_max_val:
                shape[1] = 2
        top[0].reshape(shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.outer, self.dim, self.inner)
        # Descending by value, ties by descending index: a stable ascending sort of the
        # negated values, with the candidates in reverse order.
        order = np.argsort(-x[:, ::-1, :], axis=1, kind="stable")[:, : self.top_k, :]
        index = (self.dim - 1) - order
        values = np.take_along_axis(x, index, axis=1)
        if not self.has_axis and self.out_max_val:
            out = top[0].data.reshape(self.outer, 2, self.top_k)
            out[:, 0, :] = index[:, :, 0]
            out[:, 1, :] = values[:, :, 0]
            return
        out = top[0].data.reshape(self.outer, self.top_k, self.inner)
        out[...] = values if self.out_max_val else index

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if any(propagate_down):
            raise self.error("ArgMax has no gradient; do not backpropagate through it")
