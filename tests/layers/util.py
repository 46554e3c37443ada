"""Helpers shared by the layer tests: inputs, and one layer set up and run forward."""

from __future__ import annotations

import numpy as np

from pyforge.blob import Blob
from tests.gradient_check import TRAIN, blob_from, build_layer, setup_forward


def rand(*shape, seed=0, scale=1.0) -> np.ndarray:
    """Standard normal float32 values of ``shape`` (times ``scale``), from ``seed``."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def labels(shape, classes, seed=1) -> np.ndarray:
    """Integer class labels in [0, classes) as float32, as Caffe's label blobs hold them."""
    return np.random.default_rng(seed).integers(0, classes, shape).astype(np.float32)


def f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def run(text: str, *xs, tops: int = 1, phase=TRAIN, in_place=False, seed=1701):
    """Build the layer of ``text``, set it up on bottoms holding ``xs`` and run one forward;
    ``in_place`` makes the (single) top the first bottom. Returns (layer, bottom, top)."""
    layer = build_layer(text, phase, seed=seed)
    bottom = [blob_from(x) for x in xs]
    top = [bottom[0]] if in_place else [Blob() for _ in range(tops)]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def backward(layer, bottom, top, dys, propagate_down=None) -> None:
    """One backward with top diffs ``dys``; bottom diffs start as NaN so that a layer which
    accumulates into them instead of overwriting fails. By default only bottom 0 is asked."""
    for t, dy in zip(top, dys):
        t.diff[...] = dy
    for b in bottom:
        b.diff[...] = np.nan  # must be overwritten
    layer.backward(top, propagate_down or [True] + [False] * (len(bottom) - 1), bottom)


def backward_top0(layer, top, bottom, dy, propagate_down=None) -> None:
    """One backward with top 0's diff set to ``dy`` (the diffs of in-place layers are shared
    with their bottom, so nothing is pre-filled); by default every bottom is asked."""
    top[0].diff[...] = dy
    layer.backward(top, propagate_down or [True] * len(bottom), bottom)


def priors_blob(n_priors, seed=0):
    """A PriorBox top (1, 2, n_priors * 4): random boxes inside [0, 1], SSD's variances."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0.2, 0.8, (n_priors, 2))
    sizes = rng.uniform(0.1, 0.4, (n_priors, 2))
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
    var = np.tile([0.1, 0.1, 0.2, 0.2], (n_priors, 1))
    return np.stack([boxes.reshape(-1), var.reshape(-1)])[None].astype(np.float32)


def softmax_conf(num, n_priors, classes, seed, sharpness=3.0):
    """Class probabilities (num, n_priors * classes), as DetectionOutput reads them."""
    logits = rand(num, n_priors, classes, seed=seed) * sharpness
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    return (e / e.sum(axis=2, keepdims=True)).reshape(num, -1).astype(np.float32)
