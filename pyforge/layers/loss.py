"""The loss layers other than SoftmaxWithLoss: EuclideanLoss, SigmoidCrossEntropyLoss,
MultinomialLogisticLoss, InfogainLoss, HingeLoss and ContrastiveLoss.

Losses are summed in float64 and rounded to float32 once; Caffe sums in float32, so the two
agree to float32 rounding. Labels are read as Caffe reads them, ``static_cast<int>`` of the
float value (truncation toward zero).
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob, proto_shape, proto_values
from ..proto import caffe_pb2, read_binary_proto, resolve_path
from .base import LossLayer, Norm, loss_normalizer, register_layer
from .softmax import softmax_forward

#: Caffe's kLOG_THRESHOLD: probabilities are clamped to it before the log.
LOG_THRESHOLD = np.float32(1e-20)




def _legacy_dims(blob: Blob) -> tuple[int, int, int, int]:
    """Caffe's num/channels/height/width: dimensions 0..3, 1 where the blob has fewer axes."""
    shape = blob.shape + (1,) * (4 - blob.num_axes)
    return shape[0], shape[1], shape[2], shape[3]


def _top_scale(top: list[Blob]) -> np.float32:
    """The loss weight Caffe keeps in the loss top's diff."""
    return np.float32(top[0].diff.reshape(-1)[0])


@register_layer("EuclideanLoss", "EUCLIDEAN_LOSS")
class EuclideanLossLayer(LossLayer):
    """Caffe type ``EuclideanLoss``: ``sum((b0 - b1)^2) / num / 2``."""

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        if bottom[0].count_range(1) != bottom[1].count_range(1):
            raise self.error(
                f"inputs must have the same dimension: {bottom[0].shape} vs {bottom[1].shape}"
            )
        self.diff = np.empty(bottom[0].shape, dtype=np.float32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        np.subtract(bottom[0].data, bottom[1].data.reshape(bottom[0].shape), out=self.diff)
        flat = self.diff.reshape(-1)
        top[0].data[...] = np.dot(flat, flat) / np.float32(bottom[0].shape[0]) / np.float32(2)

    def allow_force_backward(self, bottom_index: int) -> bool:
        return True  # both inputs of a Euclidean loss may receive gradients

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        for i in range(2):
            if propagate_down[i]:
                sign = np.float32(1.0 if i == 0 else -1.0)
                alpha = sign * top[0].diff.reshape(-1)[0] / np.float32(bottom[i].shape[0])
                np.multiply(self.diff, alpha, out=bottom[i].diff.reshape(self.diff.shape))


@register_layer("SigmoidCrossEntropyLoss", "SIGMOID_CROSS_ENTROPY_LOSS")
class SigmoidCrossEntropyLossLayer(LossLayer):
    """Caffe type ``SigmoidCrossEntropyLoss``: bottoms (scores x, targets t in [0, 1]) of equal
    count -> the cross-entropy of sigmoid(x) with t, in the overflow-free form
    ``max(x, 0) - x*t + log(1 + exp(-|x|))``.

    Reads loss_param: ignore_label (entries whose ``int(t)`` equals it count for nothing) and
    normalization, which defaults to BATCH_SIZE here (not VALID); the deprecated ``normalize``
    maps true -> VALID, false -> BATCH_SIZE. Gradient ``(sigmoid(x) - t) * weight / norm``.
    """

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().layer_setup(bottom, top)
        lp = self.param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = lp.ignore_label
        if lp.HasField("normalization"):
            self.mode = lp.normalization
        elif lp.HasField("normalize"):
            self.mode = Norm.VALID if lp.normalize else Norm.BATCH_SIZE
        else:
            self.mode = Norm.BATCH_SIZE
        self.norm = np.float32(1)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise self.error(f"inputs must have the same count: {bottom[0].shape} vs "
                             f"{bottom[1].shape}")
        self.outer = bottom[0].shape[0]
        self.inner = bottom[0].count_range(1)
        self.sigmoid = np.empty(bottom[0].count, dtype=np.float32)

    def _valid(self, target: np.ndarray) -> np.ndarray:
        if not self.has_ignore:
            return np.ones(target.shape, dtype=bool)
        return target.astype(np.int64) != self.ignore_label

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(-1)
        t = bottom[1].data.reshape(-1)
        # The internal Sigmoid layer's output, kept for the gradient (Caffe's tanh form).
        np.multiply(np.tanh(x * np.float32(0.5)), np.float32(0.5), out=self.sigmoid)
        self.sigmoid += np.float32(0.5)
        valid = self._valid(t)
        pos = (x >= 0).astype(np.float32)
        term = x * (t - pos) - np.log(np.float32(1) + np.exp(x - np.float32(2) * x * pos))
        loss = -np.sum(term[valid], dtype=np.float64)
        self.norm = np.float32(loss_normalizer(self.mode, self.outer, self.inner, int(valid.sum())))
        top[0].data[...] = np.float32(loss) / self.norm

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the target input")
        if not propagate_down[0]:
            return
        t = bottom[1].data.reshape(-1)
        dx = bottom[0].diff.reshape(-1)
        np.subtract(self.sigmoid, t, out=dx)
        if self.has_ignore:
            dx[~self._valid(t)] = 0
        dx *= np.float32(_top_scale(top) / self.norm)


@register_layer("MultinomialLogisticLoss", "MULTINOMIAL_LOGISTIC_LOSS")
class MultinomialLogisticLossLayer(LossLayer):
    """Caffe type ``MultinomialLogisticLoss``: bottoms (probabilities (N, ...), labels (N) or
    (N, 1, 1, 1)) -> ``-sum_n log(max(p[n, label_n], 1e-20)) / N``.

    Each item's entries after axis 0 are its classes. Gradient ``-weight / (N * p)`` at the
    label's entry (with the same clamp), 0 elsewhere. No parameters read.
    """

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        _, c, h, w = _legacy_dims(bottom[1]) if bottom[1].num_axes <= 4 else (0, 0, 0, 0)
        if (c, h, w) != (1, 1, 1):
            raise self.error(f"the label bottom must be (N) or (N, 1, 1, 1), found "
                             f"{bottom[1].shape}")
        self.num = bottom[0].shape[0]
        self.dim = bottom[0].count // self.num if self.num else 0

    def _picked(self, bottom: list[Blob]) -> tuple[np.ndarray, np.ndarray]:
        labels = bottom[1].data.reshape(-1).astype(np.int64)
        bad = (labels < 0) | (labels >= self.dim)
        if bad.any():
            raise self.error(f"label {int(labels[bad][0])} is out of range for {self.dim} "
                             f"classes")
        x = bottom[0].data.reshape(self.num, self.dim)
        prob = np.maximum(x[np.arange(self.num), labels], LOG_THRESHOLD)
        return labels, prob

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        _, prob = self._picked(bottom)
        loss = -np.sum(np.log(prob), dtype=np.float64)
        top[0].data[...] = np.float32(loss) / np.float32(self.num)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the label input")
        if not propagate_down[0]:
            return
        labels, prob = self._picked(bottom)
        dx = bottom[0].diff.reshape(self.num, self.dim)
        dx[...] = 0
        scale = np.float32(-_top_scale(top) / np.float32(self.num))
        dx[np.arange(self.num), labels] = scale / prob


@register_layer("InfogainLoss", "INFOGAIN_LOSS")
class InfogainLossLayer(LossLayer):
    """Caffe type ``InfogainLoss``: bottoms (scores, labels[, H]) -> the softmax (along
    ``axis``) of the scores scored by the infogain matrix H (K x K, K classes):
    ``-sum_valid sum_l H[label, l] * log(max(p_l, 1e-20)) / normalizer``; an optional second
    top gives the probabilities.

    H is the third bottom, or else the BlobProto file infogain_loss_param.source (read once).
    Reads infogain_loss_param: source, axis (1); loss_param: ignore_label, normalization (VALID;
    the deprecated ``normalize`` is refused, as in Caffe). Gradient
    ``(p_l * sum(H[label]) - H[label, l]) * weight / normalizer``; none to labels or H.
    """

    exact_num_bottom_blobs = -1
    min_bottom_blobs = 2
    max_bottom_blobs = 3
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
        if lp.HasField("normalize"):
            raise self.error('normalize is deprecated; use "normalization"')
        self.mode = lp.normalization
        self.norm = np.float32(1)
        self.infogain: np.ndarray | None = None
        if len(bottom) < 3:
            self.infogain = self._read_matrix()

    def _read_matrix(self) -> np.ndarray:
        p = self.param.infogain_loss_param
        if not p.HasField("source") or not p.source:
            raise self.error("the infogain matrix source must be specified "
                             "(infogain_loss_param.source) when there is no third bottom")
        path = resolve_path(p.source, self.ctx.source_file, f"{self.where} infogain source")
        proto = read_binary_proto(path, caffe_pb2.BlobProto())
        values = proto_values(proto, "data")
        if values is None:
            values = np.zeros(0, dtype=np.float32)
        count = int(np.prod(proto_shape(proto), dtype=np.int64))
        if values.size != count:
            raise self.error(f"infogain matrix '{path}' holds {values.size} values for its "
                             f"shape {proto_shape(proto)}")
        return values

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        self.axis = self.canonical_axis(bottom[0], self.param.infogain_loss_param.axis)
        self.outer = bottom[0].count_range(0, self.axis)
        self.channels = bottom[0].shape[self.axis]
        self.inner = bottom[0].count_range(self.axis + 1)
        if self.outer * self.inner != bottom[1].count:
            raise self.error(
                f"number of labels must match number of predictions; e.g., if infogain axis "
                f"== 1 and prediction shape is (N, C, H, W), label count (number of labels) "
                f"must be N*H*W, with integer values in {{0, 1, ..., C-1}}; found prediction "
                f"{bottom[0].shape} and label {bottom[1].shape}"
            )
        k = self.channels
        count = bottom[2].count if len(bottom) > 2 else self.infogain.size
        if count != k * k:
            raise self.error(f"the infogain matrix H must be {k}x{k} ({k * k} values) for "
                             f"{k} classes, found {count} values")
        prob = self.__dict__.get("prob")
        if prob is None or prob.shape != bottom[0].shape:
            self.prob = np.empty(bottom[0].shape, dtype=np.float32)
        if len(top) > 1:
            top[1].reshape_like(bottom[0])

    def _matrix(self, bottom: list[Blob]) -> np.ndarray:
        h = bottom[2].data if len(bottom) > 2 else self.infogain
        return h.reshape(self.channels, self.channels)

    def _labels(self, bottom: list[Blob]) -> tuple[np.ndarray, np.ndarray]:
        labels = bottom[1].data.reshape(self.outer, self.inner).astype(np.int64)
        valid = np.ones(labels.shape, dtype=bool)
        if self.has_ignore:
            valid = labels != self.ignore_label
        bad = valid & ((labels < 0) | (labels >= self.channels))
        if bad.any():
            raise self.error(f"label {int(labels[bad][0])} is out of range for "
                             f"{self.channels} classes")
        return np.where(valid, labels, 0), valid

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        softmax_forward(bottom[0].data, self.outer, self.channels, self.inner, self.prob)
        labels, valid = self._labels(bottom)
        h = self._matrix(bottom)
        prob3 = self.prob.reshape(self.outer, self.channels, self.inner)
        logp = np.log(np.maximum(prob3, LOG_THRESHOLD))  # (outer, K, inner)
        rows = h[labels]  # (outer, inner, K): H's row of each entry's label
        per_entry = np.einsum("ijl,ilj->ij", rows.astype(np.float64), logp.astype(np.float64))
        loss = -np.sum(per_entry[valid], dtype=np.float64)
        self.norm = np.float32(loss_normalizer(self.mode, self.outer, self.inner, int(valid.sum())))
        top[0].data[...] = np.float32(loss) / self.norm
        if len(top) == 2:
            top[1].data[...] = self.prob

    def allow_force_backward(self, bottom_index: int) -> bool:
        # Neither the labels nor H receive a gradient (Caffe would abort on H under
        # force_backward; pyforge leaves it out instead).
        return bottom_index == 0

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the label input")
        if len(propagate_down) > 2 and propagate_down[2]:
            raise self.error("cannot backpropagate to the infogain matrix input")
        if not propagate_down[0]:
            return
        labels, valid = self._labels(bottom)
        h = self._matrix(bottom)
        row_sums = h.sum(axis=1, dtype=np.float32)
        prob3 = self.prob.reshape(self.outer, self.channels, self.inner)
        dx = bottom[0].diff.reshape(prob3.shape)
        np.multiply(prob3, row_sums[labels][:, None, :], out=dx)
        dx -= np.transpose(h[labels], (0, 2, 1))
        if self.has_ignore:
            dx *= valid[:, None, :]
        dx *= np.float32(_top_scale(top) / self.norm)


@register_layer("HingeLoss", "HINGE_LOSS")
class HingeLossLayer(LossLayer):
    """Caffe type ``HingeLoss``: bottoms (scores (N, ...), labels (N)) -> the one-vs-all hinge
    loss ``sum_n sum_k max(0, 1 - d(label_n == k) * x_nk)^p / N`` with ``d = +1`` for the true
    class and ``-1`` for the others, p = 1 (L1) or 2 (L2).

    Reads hinge_loss_param: norm (L1).
    """

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        self.num = bottom[0].shape[0]
        self.dim = bottom[0].count // self.num if self.num else 0
        self.norm_type = self.param.hinge_loss_param.norm
        if self.norm_type not in (caffe_pb2.HingeLossParameter.L1,
                                  caffe_pb2.HingeLossParameter.L2):
            raise self.error(f"unknown norm {self.norm_type}")
        if bottom[1].count < self.num:
            raise self.error(f"needs one label per item: {self.num} items, "
                             f"{bottom[1].count} labels")

    def _labels(self, bottom: list[Blob]) -> np.ndarray:
        labels = bottom[1].data.reshape(-1)[: self.num].astype(np.int64)
        bad = (labels < 0) | (labels >= self.dim)
        if bad.any():
            raise self.error(f"label {int(labels[bad][0])} is out of range for {self.dim} "
                             f"classes")
        return labels

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        rows = np.arange(self.num)
        labels = self._labels(bottom)
        margin = bottom[0].data.reshape(self.num, self.dim).copy()
        margin[rows, labels] *= np.float32(-1)
        np.maximum(margin + np.float32(1), np.float32(0), out=margin)
        self.margin = margin
        flat = margin.reshape(-1).astype(np.float64)
        total = flat.sum() if self.norm_type == caffe_pb2.HingeLossParameter.L1 else flat @ flat
        top[0].data[...] = np.float32(total) / np.float32(self.num)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the label input")
        if not propagate_down[0]:
            return
        rows = np.arange(self.num)
        labels = self._labels(bottom)
        dx = bottom[0].diff.reshape(self.num, self.dim)
        dx[...] = self.margin
        dx[rows, labels] *= np.float32(-1)
        weight = _top_scale(top)
        if self.norm_type == caffe_pb2.HingeLossParameter.L1:
            # caffe_cpu_sign: (0 < x) - (x < 0); a zero margin gives no gradient.
            sign = (dx > 0).astype(np.float32) - (dx < 0).astype(np.float32)
            np.multiply(sign, np.float32(weight / np.float32(self.num)), out=dx)
        else:
            dx *= np.float32(weight * np.float32(2) / np.float32(self.num))


@register_layer("ContrastiveLoss", "CONTRASTIVE_LOSS")
class ContrastiveLossLayer(LossLayer):
    """Caffe type ``ContrastiveLoss``: bottoms (a (N, C[, 1, 1]), b (N, C[, 1, 1]), similar
    (N[, 1, 1, 1])) -> ``sum_n L_n / N / 2`` with ``d_n = ||a_n - b_n||``:
    similar pairs ``L = d^2``; dissimilar ``L = max(margin - d, 0)^2``, or with
    ``legacy_version`` ``L = max(margin - d^2, 0)``.

    Reads contrastive_loss_param: margin (1), legacy_version (false). Both a and b get
    gradients (the dissimilar one divides by ``d + 1e-4``, as Caffe does); ``similar`` none.
    """

    exact_num_bottom_blobs = 3

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        for i, b in enumerate(bottom):
            if b.num_axes > 4:
                raise self.error(f"bottom {i} has more than 4 axes: {b.shape}")
        a, b, s = (_legacy_dims(x) for x in bottom)
        if a[1] != b[1] or a[2:] != (1, 1) or b[2:] != (1, 1):
            raise self.error(f"the first two bottoms must both be (N, C) or (N, C, 1, 1) with "
                             f"the same C, found {bottom[0].shape} and {bottom[1].shape}")
        if s[1:] != (1, 1, 1) or s[0] != a[0]:
            raise self.error(f"the similarity bottom must be (N) or (N, 1, 1, 1) with N = "
                             f"{a[0]}, found {bottom[2].shape}")
        self.num, self.channels = a[0], a[1]
        p = self.param.contrastive_loss_param
        self.margin = np.float32(p.margin)
        self.legacy = p.legacy_version

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        a = bottom[0].data.reshape(self.num, self.channels)
        b = bottom[1].data.reshape(self.num, self.channels)
        self.diff = a - b
        self.dist_sq = np.einsum("ij,ij->i", self.diff, self.diff)
        self.similar = bottom[2].data.reshape(-1).astype(np.int64) != 0
        if self.legacy:
            dissimilar = np.maximum(self.margin - self.dist_sq, np.float32(0))
        else:
            dissimilar = np.maximum(self.margin - np.sqrt(self.dist_sq), np.float32(0)) ** 2
        per_item = np.where(self.similar, self.dist_sq, dissimilar)
        loss = np.sum(per_item, dtype=np.float64)
        top[0].data[...] = np.float32(loss) / np.float32(self.num) / np.float32(2)

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != 2

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[2]:
            raise self.error("cannot backpropagate to the similarity input")
        for i in range(2):
            if not propagate_down[i]:
                continue
            sign = np.float32(1 if i == 0 else -1)
            alpha = sign * _top_scale(top) / np.float32(self.num)
            if self.legacy:
                mdist = self.margin - self.dist_sq
                beta = np.full(self.num, -alpha, dtype=np.float32)
            else:
                dist = np.sqrt(self.dist_sq)
                mdist = self.margin - dist
                beta = -alpha * mdist / (dist + np.float32(1e-4))
            coeff = np.where(self.similar, alpha, np.where(mdist > 0, beta, np.float32(0)))
            np.multiply(self.diff, coeff.astype(np.float32)[:, None],
                        out=bottom[i].diff.reshape(self.num, self.channels))
