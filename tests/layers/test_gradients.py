"""Gradient checks (Caffe's GradientChecker) for every registered layer type.

``GRAD_CASES`` maps each Caffe type string that pyforge registers to either a list of
:class:`Case` (a layer prototxt, bottom shapes, which bottoms to check, the checker settings) or
a :class:`NoGradient` saying why that type has no gradient to check (and a claim that is
verified). A registered type without an entry fails ``test_every_registered_layer_has_a_case``
and its own parametrized test.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.layers import LAYERS
from tests.gradient_check import TRAIN, GradientChecker, build_layer, layer_param
from tests.layers.grad_case import Case, NoGradient

GRAD_CASES: dict[str, list[Case] | NoGradient] = {}


def _merge_family_cases() -> None:
    """Add the cases of every ``grad_cases_<family>.py`` module beside this file."""
    import importlib
    import pkgutil

    import tests.layers as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("grad_cases_"):
            module = importlib.import_module(f"tests.layers.{info.name}")
            for type_name, cases in module.CASES.items():
                if type_name in GRAD_CASES:
                    raise ValueError(f"{info.name}: cases for {type_name} are defined twice")
                GRAD_CASES[type_name] = cases


_merge_family_cases()


def make_bottoms(case: Case, rng: np.random.Generator) -> list[Blob]:
    blobs = [Blob(shape) for shape in case.bottoms]
    total = sum(b.count for i, b in enumerate(blobs)
                if i not in case.labels and i not in case.fixed)
    if case.data == "distinct":
        values = (rng.permutation(total) - total / 2).astype(np.float32) * np.float32(0.05)
    elif case.data == "away":
        values = rng.uniform(0.5, 1.5, total) * rng.choice([-1.0, 1.0], total)
    else:
        values = rng.standard_normal(total)
    offset = 0
    for i, blob in enumerate(blobs):
        if i in case.labels:
            blob.data[...] = rng.integers(0, case.labels[i], size=blob.shape)
            continue
        if i in case.fixed:
            blob.data[...] = np.asarray(case.fixed[i], dtype=np.float32).reshape(blob.shape)
            continue
        blob.data[...] = values[offset : offset + blob.count].reshape(blob.shape)
        offset += blob.count
    return blobs


def wire(case: Case, type_name: str):
    """Layer, bottoms and tops for a case (top j named like bottom j is the same blob)."""
    param = layer_param(case.prototxt, case.phase)
    assert param.type == type_name, f"case {case.id} builds a {param.type}, not a {type_name}"
    assert len(param.bottom) == len(case.bottoms)
    layer = build_layer(param)
    bottom = make_bottoms(case, np.random.default_rng(1701))
    top = []
    for j, name in enumerate(param.top):
        top.append(bottom[j] if j < len(param.bottom) and param.bottom[j] == name else Blob())
    cls = type(layer)
    if cls.auto_top_blobs:
        while len(top) < max(cls.min_top_blobs, cls.exact_num_top_blobs):
            top.append(Blob())
    return layer, bottom, top


def _params():
    out = []
    for name in LAYERS.names():
        entry = GRAD_CASES.get(name)
        if entry is None:
            out.append(pytest.param(name, None, id=f"{name}-MISSING"))
        elif isinstance(entry, NoGradient):
            out.append(pytest.param(name, entry, id=f"{name}-no_gradient"))
        else:
            out.extend(pytest.param(name, case, id=f"{name}-{case.id}") for case in entry)
    return out


def test_every_registered_layer_has_a_case():
    missing = [name for name in LAYERS.names() if name not in GRAD_CASES]
    assert not missing, f"registered layer types without a GRAD_CASES entry: {missing}"
    for name, entry in GRAD_CASES.items():
        assert isinstance(entry, NoGradient) or entry, f"{name} has an empty case list"


def test_no_cases_for_unregistered_types():
    stale = [name for name in GRAD_CASES if name not in LAYERS]
    assert not stale, f"GRAD_CASES names types pyforge does not register: {stale}"


@pytest.mark.parametrize(("type_name", "case"), _params())
def test_gradient(type_name: str, case: Case | NoGradient | None):
    if case is None:
        pytest.fail(f"layer type {type_name!r} has no entry in GRAD_CASES")
    if isinstance(case, NoGradient):
        case.verify()
        return
    layer, bottom, top = wire(case, type_name)
    checker = GradientChecker(case.stepsize, case.threshold, 1701, case.kink, case.kink_range)
    if case.mode == "exhaustive":
        checker.check_gradient_exhaustive(layer, bottom, top, case.check_bottom,
                                          check_params=case.check_params, top_ids=case.top_ids)
    elif case.mode == "total":
        checker.check_gradient(layer, bottom, top, case.check_bottom,
                               check_params=case.check_params)
    elif case.mode == "eltwise":
        assert case.check_bottom == -1
        checker.check_gradient_eltwise(layer, bottom, top)
    else:
        raise AssertionError(f"unknown mode {case.mode}")
    assert checker.checked > 0 or type_name == "Silence"


# --- the checker itself ---------------------------------------------------------------------------
class _WrongTanH:
    """A TanH whose backward is off by a factor (to see the checker fail)."""

    def __init__(self, factor: float) -> None:
        self.inner = build_layer('type: "TanH" bottom: "x" top: "y"')
        self.factor = np.float32(factor)
        self.blobs: list[Blob] = []

    def setup(self, bottom, top):
        self.inner.setup(bottom, top)

    def reshape(self, bottom, top):
        self.inner.reshape(bottom, top)

    def forward(self, bottom, top):
        self.inner.forward(bottom, top)

    def backward(self, top, propagate_down, bottom):
        self.inner.backward(top, propagate_down, bottom)
        bottom[0].diff *= self.factor


class _Accumulating(_WrongTanH):
    """Adds into the bottom diff instead of overwriting it."""

    def backward(self, top, propagate_down, bottom):
        saved = bottom[0].diff.copy()
        self.inner.backward(top, propagate_down, bottom)
        bottom[0].diff += saved


def _tanh_bottom() -> list[Blob]:
    blob = Blob((2, 3))
    blob.data[...] = np.random.default_rng(0).standard_normal((2, 3))
    return [blob]


def test_checker_passes_a_correct_layer():
    layer = build_layer('type: "TanH" bottom: "x" top: "y"')
    checker = GradientChecker()
    checker.check_gradient(layer, _tanh_bottom(), [Blob()])
    assert checker.checked == 6


@pytest.mark.parametrize("mode", ["total", "exhaustive", "eltwise"])
def test_checker_catches_a_wrong_gradient(mode):
    layer = _WrongTanH(1.01)
    checker = GradientChecker()
    with pytest.raises(AssertionError, match="gradient mismatch"):
        if mode == "total":
            checker.check_gradient(layer, _tanh_bottom(), [Blob()])
        elif mode == "exhaustive":
            checker.check_gradient_exhaustive(layer, _tanh_bottom(), [Blob()])
        else:
            checker.check_gradient_eltwise(layer, _tanh_bottom(), [Blob()])


def test_checker_catches_accumulated_bottom_diff():
    with pytest.raises(AssertionError, match="gradient mismatch"):
        GradientChecker().check_gradient(_Accumulating(1.0), _tanh_bottom(), [Blob()])


def test_checker_kink_skips_features_near_the_kink():
    layer = _WrongTanH(2.0)
    bottom = [Blob((4,))]
    bottom[0].data[...] = [0.001, -0.004, 0.002, -0.009]
    checker = GradientChecker(1e-2, 1e-3, kink=0.0, kink_range=0.01)
    checker.check_gradient(layer, bottom, [Blob()])  # every feature is inside the kink range
    assert checker.checked == 0


def test_checker_repeats_dropout_draws():
    layer = build_layer('type: "Dropout" bottom: "x" top: "y"', TRAIN)
    bottom, top = _tanh_bottom(), [Blob()]
    GradientChecker().check_gradient_exhaustive(layer, bottom, top)


# --- accumulation semantics -----------------------------------------------------------------------
@pytest.mark.parametrize("type_name", ["InnerProduct", "Convolution"])
def test_param_diffs_accumulate_and_bottom_diffs_are_overwritten(type_name):
    case = GRAD_CASES[type_name][0]
    layer, bottom, top = wire(case, type_name)
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    for t in top:
        t.diff[...] = np.random.default_rng(3).standard_normal(t.shape)
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(top, [True], bottom)
    first_params = [p.diff.copy() for p in layer.blobs]
    first_bottom = bottom[0].diff.copy()
    assert all(np.abs(d).sum() > 0 for d in first_params)
    layer.backward(top, [True], bottom)
    for p, d in zip(layer.blobs, first_params, strict=True):
        np.testing.assert_allclose(p.diff, 2 * d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bottom[0].diff, first_bottom, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("type_name", ["InnerProduct", "Convolution"])
def test_lr_mult_zero_param_gets_no_diff(type_name):
    """With param_propagate_down False (lr_mult 0 in a net) the param diff is left alone."""
    case = GRAD_CASES[type_name][0]
    layer, bottom, top = wire(case, type_name)
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    layer.param_propagate_down = [False] * len(layer.blobs)
    for p in layer.blobs:
        p.diff[...] = 7
    layer.backward(top, [True], bottom)
    for p in layer.blobs:
        assert (p.diff == 7).all()
