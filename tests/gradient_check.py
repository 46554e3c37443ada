"""Caffe's GradientChecker (include/caffe/test/test_gradient_check_util.hpp) for pyforge layers.

Usage::

    layer = build_layer('type: "TanH"')
    bottom, top = [blob_from(x)], [Blob()]
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, bottom, top)

As in Caffe:

* ``check_gradient`` uses the objective ``0.5 * sum(top^2)`` over all tops (top diff = top
  data); ``check_gradient_exhaustive`` checks every single output element in turn with the
  objective ``2 * top[i][j]`` (top diff 2 there, 0 elsewhere); ``check_gradient_eltwise`` does
  the same but only differentiates bottom element ``j`` for output ``j`` (the other partial
  derivatives of an elementwise layer must be 0 and are checked to be).
* The analytic gradient is one forward, the objective's top diffs, one backward with the
  parameter diffs zeroed first; the numeric one is the central difference
  ``(f(x+h) - f(x-h)) / 2h`` for every element of each checked bottom and parameter blob.
* An element is skipped when ``kink - kink_range <= |x| <= kink + kink_range``; otherwise the
  check is ``|analytic - numeric| <= threshold * max(|analytic|, |numeric|, 1)``.
* Stochastic layers repeat their draws: every ``numpy.random.Generator`` attribute of the
  layer (Dropout's ``rng``) has its state saved once and restored before every forward, the
  counterpart of Caffe's ``Caffe::set_random_seed(seed_)`` before each Forward.

Additions for a Python port:

* Bottoms are restored from a saved copy before every forward, so in-place layers (whose
  forward overwrites the bottom) can be checked; perturbations are applied to that copy.
* Before backward, every bottom diff is filled with large random garbage: layers must
  *overwrite* bottom diffs, so garbage that survives (or is accumulated into) shows up as a
  gradient error. Parameter diffs are zeroed (they *accumulate*).
* The objective is accumulated in float64 from the float32 tops, and the numeric derivative
  divides by the float32 distance actually stepped.
* The many small forwards run with one Numba thread (``numba.set_num_threads`` is per calling
  thread and is restored afterwards): on a busy machine waking a thread pool for every tiny
  kernel call costs milliseconds. The kernel tests exercise the parallel paths.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np

from pyforge.blob import Blob
from pyforge.layers import LAYERS, Layer, NetContext
from pyforge.proto import caffe_pb2, parse_text_proto

TRAIN = caffe_pb2.TRAIN
TEST = caffe_pb2.TEST


# --- building single layers -----------------------------------------------------------------------
def layer_param(text: str, phase: int | None = TRAIN) -> caffe_pb2.LayerParameter:
    """A LayerParameter from a text-format snippet; ``phase`` is set unless the text sets it."""
    param = parse_text_proto(text, caffe_pb2.LayerParameter(), "<test layer>")
    if not param.name:
        param.name = param.type.lower() or "layer"
    if phase is not None and not param.HasField("phase"):
        param.phase = phase
    return param


def build_layer(text: str | caffe_pb2.LayerParameter, phase: int | None = TRAIN,
                seed: int = 1701) -> Layer:
    """Instantiate (not set up) the registered layer a LayerParameter names."""
    param = layer_param(text, phase) if isinstance(text, str) else text
    ctx = NetContext(phase=param.phase, rng=np.random.default_rng(seed),
                     logger=logging.getLogger("pyforge.tests"))
    return LAYERS.get(param.type)(param, ctx)


def blob_from(array) -> Blob:
    """A Blob holding ``array`` (as float32) in its data; diff zero."""
    array = np.asarray(array, dtype=np.float32)
    blob = Blob(array.shape)
    blob.data[...] = array
    return blob


def setup_forward(layer: Layer, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
    """``setup`` then one ``reshape`` + ``forward``, as the net does."""
    layer.setup(list(bottom), list(top))
    layer.reshape(list(bottom), list(top))
    layer.forward(list(bottom), list(top))


@contextmanager
def single_numba_thread() -> Iterator[None]:
    """Run Numba's parallel kernels on the calling thread only, for the duration."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


# --- the checker ----------------------------------------------------------------------------------
@dataclass
class Mismatch:
    blob: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    feature: float
    top_id: int
    top_data_id: int

    def __str__(self) -> str:
        return (f"{self.blob}{list(self.index)}: analytic {self.analytic:.6g} vs numeric "
                f"{self.numeric:.6g} (x = {self.feature:.6g}; top_id {self.top_id}, "
                f"top_data_id {self.top_data_id})")


class GradientChecker:
    """Caffe's GradientChecker(stepsize, threshold, seed, kink, kink_range)."""

    def __init__(self, stepsize: float = 1e-2, threshold: float = 1e-3, seed: int = 1701,
                 kink: float = 0.0, kink_range: float = -1.0) -> None:
        self.stepsize = float(stepsize)
        self.threshold = float(threshold)
        self.seed = seed
        self.kink = float(kink)
        self.kink_range = float(kink_range)
        #: Number of elements compared (not skipped by the kink rule) by the last check.
        self.checked = 0

    # --- public entry points (Caffe's names) -----------------------------------------------------
    def check_gradient(self, layer: Layer, bottom: Sequence[Blob], top: Sequence[Blob],
                       check_bottom: int | Sequence[int] = -1, check_params: bool = True,
                       setup: bool = True) -> None:
        """CheckGradient: objective ``0.5 * sum over tops of top^2``."""
        bottom, top = list(bottom), list(top)
        if setup:
            layer.setup(bottom, top)
        self._raise(self.check_gradient_single(layer, bottom, top, check_bottom, -1, -1,
                                               check_params=check_params))

    def check_gradient_exhaustive(self, layer: Layer, bottom: Sequence[Blob],
                                  top: Sequence[Blob], check_bottom: int | Sequence[int] = -1,
                                  check_params: bool = True, setup: bool = True,
                                  top_ids: Sequence[int] | None = None) -> None:
        """CheckGradientExhaustive: objective ``2 * top[i][j]`` for every top element (of the
        tops in ``top_ids``, default all)."""
        bottom, top = list(bottom), list(top)
        if setup:
            layer.setup(bottom, top)
        if not top:
            raise AssertionError("Exhaustive mode requires at least one top blob.")
        failures: list[Mismatch] = []
        checked = 0
        for i, blob in enumerate(top):
            if top_ids is not None and i not in top_ids:
                continue
            for j in range(blob.count):
                failures += self.check_gradient_single(layer, bottom, top, check_bottom, i, j,
                                                       check_params=check_params)
                checked += self.checked
        self.checked = checked
        self._raise(failures)

    def check_gradient_eltwise(self, layer: Layer, bottom: Sequence[Blob],
                               top: Sequence[Blob]) -> None:
        """CheckGradientEltwise: exhaustive, differentiating only bottom element j for top j."""
        bottom, top = list(bottom), list(top)
        layer.setup(bottom, top)
        if not top:
            raise AssertionError("Eltwise mode requires at least one top blob.")
        failures: list[Mismatch] = []
        checked = 0
        for i, blob in enumerate(top):
            for j in range(blob.count):
                failures += self.check_gradient_single(layer, bottom, top, -1, i, j,
                                                       element_wise=True)
                checked += self.checked
        self.checked = checked
        self._raise(failures)

    # --- the work -------------------------------------------------------------------------------
    def check_gradient_single(self, layer: Layer, bottom: list[Blob], top: list[Blob],
                              check_bottom: int | Sequence[int], top_id: int, top_data_id: int,
                              element_wise: bool = False, check_params: bool = True
                              ) -> list[Mismatch]:
        """CheckGradientSingle; returns the mismatches instead of asserting.

        ``check_bottom``: -1 = every bottom; an index or a list of indices = those bottoms;
        an empty list = none (parameters only).
        """
        with single_numba_thread():
            return self._check_single(layer, bottom, top, check_bottom, top_id, top_data_id,
                                      element_wise, check_params)

    def _check_single(self, layer: Layer, bottom: list[Blob], top: list[Blob],
                      check_bottom: int | Sequence[int], top_id: int, top_data_id: int,
                      element_wise: bool, check_params: bool) -> list[Mismatch]:
        if element_wise:
            assert not layer.blobs, "element_wise checks need a layer without parameters"
            assert top_id >= 0 and top_data_id >= 0
            for b in bottom:
                assert b.count == top[top_id].count, "element_wise needs equal counts"
        if isinstance(check_bottom, int):
            which = list(range(len(bottom))) if check_bottom == -1 else (
                [] if check_bottom < -1 else [check_bottom])
        else:
            which = list(check_bottom)
        for i in which:
            assert 0 <= i < len(bottom), f"check_bottom {i} out of range"
        propagate_down = [i in which for i in range(len(bottom))]

        # What to check: parameters first, then the bottoms (Caffe's order).
        params = list(layer.blobs) if check_params else []
        for p in layer.blobs:
            p.diff[...] = 0
        assert params or which, "No blobs to check."

        # Inputs are restored from these copies before every forward (in-place layers overwrite
        # them); perturbations go into the copies.
        inputs = [b.data.copy() for b in bottom]
        generators = [g for g in vars(layer).values() if isinstance(g, np.random.Generator)]
        states = [g.bit_generator.state for g in generators]

        def forward() -> float:
            for b, saved in zip(bottom, inputs, strict=True):
                b.data[...] = saved
            for g, state in zip(generators, states, strict=True):
                g.bit_generator.state = state
            layer.reshape(bottom, top)
            layer.forward(bottom, top)
            return self._objective(top, top_id, top_data_id)

        # Analytic gradient.
        forward()
        garbage = np.random.default_rng(self.seed)
        for b in bottom:
            b.diff[...] = garbage.normal(0.0, 100.0, size=b.shape).astype(np.float32)
        self._objective(top, top_id, top_data_id)  # sets the top diffs after the garbage
        layer.backward(top, propagate_down, bottom)
        computed = [p.diff.copy() for p in params] + [bottom[i].diff.copy() for i in which]

        # Numeric gradient, element by element.
        targets: list[tuple[str, np.ndarray]] = [
            (f"param[{k}]", p.data) for k, p in enumerate(params)
        ] + [(f"bottom[{i}]", inputs[i]) for i in which]
        failures: list[Mismatch] = []
        checked = 0
        for (label, array), analytic in zip(targets, computed, strict=True):
            flat = array.reshape(-1)
            for feat in range(flat.size):
                numeric = 0.0
                original = flat[feat]
                if not element_wise or feat == top_data_id:
                    plus = np.float32(original + np.float32(self.stepsize))
                    minus = np.float32(original - np.float32(self.stepsize))
                    flat[feat] = plus
                    f_plus = forward()
                    flat[feat] = minus
                    f_minus = forward()
                    flat[feat] = original
                    numeric = (f_plus - f_minus) / (float(plus) - float(minus))
                a = float(analytic.reshape(-1)[feat])
                x = abs(float(original))
                if self.kink - self.kink_range <= x <= self.kink + self.kink_range:
                    continue
                checked += 1
                scale = max(abs(a), abs(numeric), 1.0)
                if not abs(a - numeric) <= self.threshold * scale:
                    index = tuple(int(k) for k in np.unravel_index(feat, array.shape))
                    failures.append(Mismatch(label, index, a,
                                             numeric, float(original), top_id, top_data_id))
        # Leave the bottoms as they were given.
        for b, saved in zip(bottom, inputs, strict=True):
            b.data[...] = saved
        self.checked = checked
        return failures

    @staticmethod
    def _objective(top: list[Blob], top_id: int, top_data_id: int) -> float:
        """GetObjAndGradient: the objective value; sets the top diffs to its gradient."""
        if top_id < 0:
            loss = 0.0
            for t in top:
                data = t.data.astype(np.float64)
                loss += float(np.dot(data.ravel(), data.ravel()))
                t.diff[...] = t.data
            return loss / 2.0
        for t in top:
            t.diff[...] = 0
        loss_weight = 2.0
        loss = float(top[top_id].data.reshape(-1)[top_data_id]) * loss_weight
        top[top_id].diff.reshape(-1)[top_data_id] = loss_weight
        return loss

    @staticmethod
    def _raise(failures: list[Mismatch], show: int = 12) -> None:
        if not failures:
            return
        lines = [str(f) for f in failures[:show]]
        more = f"\n... and {len(failures) - show} more" if len(failures) > show else ""
        raise AssertionError(f"{len(failures)} gradient mismatch(es):\n" + "\n".join(lines)
                             + more)
