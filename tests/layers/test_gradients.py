"""Gradient checks (Caffe's GradientChecker) for every registered layer type.

``GRAD_CASES`` maps each Caffe type string that pyforge registers to either a list of
:class:`Case` (a layer prototxt, bottom shapes, which bottoms to check, the checker settings) or
a :class:`NoGradient` saying why that type has no gradient to check (and a claim that is
verified). A registered type without an entry fails ``test_every_registered_layer_has_a_case``
and its own parametrized test.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.layers import LAYERS
from tests.gradient_check import TEST, TRAIN, GradientChecker, build_layer, layer_param
from tests.layers.grad_case import Case, NoGradient


def _no_bottoms(type_name: str) -> Callable[[], None]:
    def verify() -> None:
        cls = LAYERS.get(type_name)
        assert cls.exact_num_bottom_blobs == 0, f"{type_name} takes bottoms"
        assert "backward" not in vars(cls), (
            f"{type_name} defines a backward; give it a gradient case"
        )

    return verify


def _accuracy_refuses_backward() -> None:
    layer = build_layer('type: "Accuracy" bottom: "x" bottom: "y" top: "acc"', TEST)
    bottom = [Blob((2, 3)), Blob((2,))]
    top = [Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    layer.backward(top, [False, False], bottom)  # nothing asked: fine
    with pytest.raises(Exception, match="(?i)gradient|backprop|backward"):
        layer.backward(top, [True, False], bottom)


IP = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 }'
CONV = IP
N4 = (2, 3, 4, 5)


def _conv(extra: str, bottoms: int = 1) -> str:
    bots = " ".join(f'bottom: "b{i}"' for i in range(bottoms))
    tops = " ".join(f'top: "t{i}"' for i in range(bottoms))
    return (f'name: "conv" type: "Convolution" {bots} {tops} '
            f"convolution_param {{ {extra} {CONV} }}")


def _pool(extra: str, tops: int = 1) -> str:
    names = " ".join(f'top: "t{i}"' for i in range(tops))
    return f'name: "pool" type: "Pooling" bottom: "b" {names} pooling_param {{ {extra} }}'


def _swl(extra: str = "", bottoms: str = 'bottom: "x" bottom: "label"') -> str:
    return f'name: "loss" type: "SoftmaxWithLoss" {bottoms} top: "loss" {extra}'


RELU_KINK = {"kink": 0.0, "kink_range": 0.01}

GRAD_CASES: dict[str, list[Case] | NoGradient] = {
    # --- data producers: no bottoms, nothing to differentiate --------------------------------
    "Input": NoGradient("data layer: no bottoms; tops are set from outside",
                        _no_bottoms("Input")),
    "DummyData": NoGradient("data layer: no bottoms; tops come from fillers",
                            _no_bottoms("DummyData")),
    "Data": NoGradient("data layer: no bottoms; tops come from a database",
                       _no_bottoms("Data")),
    "HDF5Data": NoGradient("data layer: no bottoms; tops come from HDF5 files",
                           _no_bottoms("HDF5Data")),
    # --- not differentiable ------------------------------------------------------------------
    "Accuracy": NoGradient("piecewise constant in the scores, never used for backward; "
                           "Caffe's Backward is NOT_IMPLEMENTED for propagate_down",
                           _accuracy_refuses_backward),
    # --- neurons -------------------------------------------------------------------------------
    "ReLU": [
        Case("plain", 'type: "ReLU" bottom: "x" top: "y"', (N4,), mode="eltwise",
             **RELU_KINK),
        Case("negative_slope", 'type: "ReLU" bottom: "x" top: "y" relu_param '
             "{ negative_slope: 0.01 }", (N4,), mode="eltwise", **RELU_KINK),
        Case("negative_slope_big", 'type: "ReLU" bottom: "x" top: "y" relu_param '
             "{ negative_slope: -0.7 }", (N4,), mode="eltwise", **RELU_KINK),
        Case("in_place", 'type: "ReLU" bottom: "x" top: "x"', (N4,), mode="eltwise",
             **RELU_KINK),
        Case("in_place_slope", 'type: "ReLU" bottom: "x" top: "x" relu_param '
             "{ negative_slope: 0.3 }", (N4,), mode="eltwise", **RELU_KINK),
    ],
    "Sigmoid": [
        Case("eltwise", 'type: "Sigmoid" bottom: "x" top: "y"', (N4,), mode="eltwise"),
        Case("in_place", 'type: "Sigmoid" bottom: "x" top: "x"', (N4,), mode="eltwise"),
    ],
    "TanH": [
        Case("eltwise", 'type: "TanH" bottom: "x" top: "y"', (N4,), mode="eltwise"),
        Case("in_place", 'type: "TanH" bottom: "x" top: "x"', (N4,), mode="eltwise"),
    ],
    "Dropout": [
        Case("train", 'type: "Dropout" bottom: "x" top: "y"', (N4,), mode="eltwise"),
        Case("train_ratio_0.2", 'type: "Dropout" bottom: "x" top: "y" dropout_param '
             "{ dropout_ratio: 0.2 }", (N4,), mode="eltwise"),
        Case("train_in_place", 'type: "Dropout" bottom: "x" top: "x"', (N4,), mode="eltwise"),
        Case("test", 'type: "Dropout" bottom: "x" top: "y"', (N4,), mode="eltwise",
             phase=TEST),
        Case("test_in_place", 'type: "Dropout" bottom: "x" top: "x"', (N4,), mode="eltwise",
             phase=TEST),
    ],
    # --- softmax and losses ------------------------------------------------------------------
    "Softmax": [
        Case("axis1", 'type: "Softmax" bottom: "x" top: "y"', ((2, 4, 2, 2),)),
        Case("axis2", 'type: "Softmax" bottom: "x" top: "y" softmax_param { axis: 2 }',
             ((2, 2, 3, 2),)),
        Case("axis-1", 'type: "Softmax" bottom: "x" top: "y" softmax_param { axis: -1 }',
             ((3, 5),)),
    ],
    "SoftmaxWithLoss": [
        # Caffe checks losses with threshold 1e-2; pyforge's float32 passes 1e-3.
        Case("default", _swl(), ((2, 5, 2, 3), (2, 1, 2, 3)), check_bottom=(0,),
             labels={1: 5}),
        Case("2d", _swl(), ((4, 5), (4,)), check_bottom=(0,), labels={1: 5}),
        Case("ignore_label", _swl("loss_param { ignore_label: 0 }"), ((3, 4, 2, 2), (3, 2, 2)),
             check_bottom=(0,), labels={1: 4}),
        Case("full", _swl("loss_param { normalization: FULL ignore_label: 1 }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("valid", _swl("loss_param { normalization: VALID ignore_label: 1 }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("batch_size", _swl("loss_param { normalization: BATCH_SIZE }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("none", _swl("loss_param { normalization: NONE }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("normalize_false", _swl("loss_param { normalize: false }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("axis2", _swl("softmax_param { axis: 2 }"), ((2, 3, 4, 2), (2, 3, 2)),
             check_bottom=(0,), labels={1: 4}),
        # As in Caffe, the probability top is an output only: Backward reads top[0]'s diff.
        Case("prob_top", 'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" '
             'top: "loss" top: "prob" loss_weight: 1 loss_weight: 0',
             ((3, 4), (3,)), check_bottom=(0,), labels={1: 4}, top_ids=(0,)),
        Case("no_top", 'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"',
             ((3, 4), (3,)), check_bottom=(0,), labels={1: 4}),
    ],
    "EuclideanLoss": [
        Case("both", 'type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"',
             ((3, 4, 2), (3, 4, 2))),
        Case("first", 'type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"',
             ((3, 5), (3, 5)), check_bottom=(0,)),
        Case("second_reshaped", 'type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"',
             ((3, 4), (3, 2, 2)), check_bottom=(1,)),
    ],
    # --- parameterised layers ------------------------------------------------------------------
    "InnerProduct": [
        Case("default", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 4 {IP} }}", ((2, 3, 2, 2),)),
        Case("axis2", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 3 axis: 2 {IP} }}", ((2, 3, 4),)),
        Case("axis-1", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 3 axis: -1 {IP} }}", ((2, 2, 3),)),
        Case("transpose", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 4 transpose: true {IP} }}", ((2, 3, 2, 2),)),
        Case("no_bias", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 4 bias_term: false {IP} }}", ((3, 5),)),
        Case("transpose_no_bias", f'type: "InnerProduct" bottom: "x" top: "y" '
             f"inner_product_param {{ num_output: 2 transpose: true bias_term: false {IP} }}",
             ((3, 2, 3),)),
    ],
    "Convolution": [
        Case("small_exhaustive", _conv("num_output: 2 kernel_size: 2"), ((1, 2, 3, 3),)),
        Case("k3", _conv("num_output: 3 kernel_size: 3"), ((2, 3, 5, 4),), mode="total"),
        Case("pad_stride", _conv("num_output: 3 kernel_size: 3 pad: 1 stride: 2"),
             ((2, 3, 6, 5),), mode="total"),
        Case("dilation", _conv("num_output: 2 kernel_size: 3 dilation: 2 pad: 1"),
             ((2, 2, 6, 6),), mode="total"),
        Case("group", _conv("num_output: 4 kernel_size: 3 group: 2 pad: 1"),
             ((2, 4, 4, 4),), mode="total"),
        Case("depthwise", _conv("num_output: 3 kernel_size: 2 group: 3"),
             ((2, 3, 4, 3),), mode="total"),
        Case("no_bias", _conv("num_output: 3 kernel_size: 3 bias_term: false"),
             ((2, 2, 4, 4),), mode="total"),
        Case("hw_fields", _conv("num_output: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 "
                                "stride_h: 2 stride_w: 1"), ((2, 2, 5, 4),), mode="total"),
        Case("two_bottoms", _conv("num_output: 2 kernel_size: 3 pad: 1", bottoms=2),
             ((2, 2, 4, 3), (2, 2, 4, 3)), mode="total"),
        Case("kernel_1x1", _conv("num_output: 3 kernel_size: 1"), ((2, 4, 3, 3),),
             mode="total"),
    ],
    "Pooling": [
        Case("max_k3s2", _pool("pool: MAX kernel_size: 3 stride: 2"), ((2, 2, 7, 7),),
             data="distinct"),
        Case("max_k3s2_pad1", _pool("pool: MAX kernel_size: 3 stride: 2 pad: 1"),
             ((1, 2, 7, 6),), data="distinct"),
        Case("max_k2s2_ceil", _pool("pool: MAX kernel_size: 2 stride: 2"), ((1, 2, 5, 5),),
             data="distinct"),
        Case("max_rect", _pool("pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1"),
             ((1, 2, 6, 5),), data="distinct"),
        # Caffe's own MAX test: gaussian data, small steps, loose threshold.
        Case("max_caffe_gaussian", _pool("pool: MAX kernel_size: 3 stride: 2 pad: 1"),
             ((2, 2, 5, 5),), stepsize=1e-4, threshold=1e-2),
        Case("max_with_mask_top", _pool("pool: MAX kernel_size: 2 stride: 1", tops=2),
             ((1, 2, 4, 4),), data="distinct"),
        Case("max_global", _pool("pool: MAX global_pooling: true"), ((2, 3, 3, 4),),
             data="distinct"),
        Case("ave_k3s2", _pool("pool: AVE kernel_size: 3 stride: 2"), ((2, 2, 7, 7),)),
        Case("ave_k3s2_pad1", _pool("pool: AVE kernel_size: 3 stride: 2 pad: 1"),
             ((1, 2, 7, 6),)),
        Case("ave_k2s2_pad1_drop", _pool("pool: AVE kernel_size: 2 stride: 2 pad: 1"),
             ((1, 2, 5, 5),)),
        Case("ave_rect_pad", _pool("pool: AVE kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 1 "
                                   "stride_h: 2 stride_w: 2"), ((1, 2, 5, 6),)),
        Case("ave_global", _pool("pool: AVE global_pooling: true"), ((2, 3, 3, 4),)),
        Case("ave_floor", _pool("pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR"),
             ((1, 2, 6, 6),)),
    ],
    # --- structural ----------------------------------------------------------------------------
    "Split": [
        Case("two", 'type: "Split" bottom: "x" top: "a" top: "b"', ((2, 3, 2),)),
        Case("three", 'type: "Split" bottom: "x" top: "a" top: "b" top: "c"', ((2, 3),)),
        Case("one", 'type: "Split" bottom: "x" top: "a"', ((2, 3),)),
    ],
    "Concat": [
        Case("axis1", 'type: "Concat" bottom: "a" bottom: "b" top: "c"',
             ((2, 2, 2, 2), (2, 3, 2, 2))),
        Case("axis0", 'type: "Concat" bottom: "a" bottom: "b" top: "c" concat_param '
             "{ axis: 0 }", ((1, 3, 2), (2, 3, 2))),
        Case("axis-1_three", 'type: "Concat" bottom: "a" bottom: "b" bottom: "c" top: "d" '
             "concat_param { axis: -1 }", ((2, 2, 1), (2, 2, 3), (2, 2, 2))),
        Case("concat_dim", 'type: "Concat" bottom: "a" bottom: "b" top: "c" concat_param '
             "{ concat_dim: 0 }", ((1, 3), (2, 3))),
        Case("second_only", 'type: "Concat" bottom: "a" bottom: "b" top: "c"',
             ((2, 2, 2), (2, 1, 2)), check_bottom=(1,)),
        Case("single_bottom", 'type: "Concat" bottom: "a" top: "c"', ((2, 3),)),
    ],
    "Slice": [
        Case("points", 'type: "Slice" bottom: "x" top: "a" top: "b" top: "c" slice_param '
             "{ slice_point: 1 slice_point: 3 }", ((2, 5, 2),)),
        Case("even_axis0", 'type: "Slice" bottom: "x" top: "a" top: "b" slice_param '
             "{ axis: 0 }", ((4, 3),)),
        Case("axis-1", 'type: "Slice" bottom: "x" top: "a" top: "b" slice_param '
             "{ axis: -1 slice_point: 2 }", ((2, 2, 3),)),
        Case("slice_dim", 'type: "Slice" bottom: "x" top: "a" top: "b" slice_param '
             "{ slice_dim: 2 }", ((2, 1, 4),)),
        Case("single_top", 'type: "Slice" bottom: "x" top: "a"', ((2, 3),)),
    ],
    "Flatten": [
        Case("default", 'type: "Flatten" bottom: "x" top: "y"', ((2, 3, 2, 2),)),
        Case("axis_end", 'type: "Flatten" bottom: "x" top: "y" flatten_param '
             "{ axis: 1 end_axis: 2 }", ((2, 3, 2, 2),)),
    ],
    "Reshape": [
        Case("copy_infer", 'type: "Reshape" bottom: "x" top: "y" reshape_param '
             "{ shape { dim: 0 dim: -1 } }", ((2, 3, 2, 2),)),
        Case("axis_num_axes", 'type: "Reshape" bottom: "x" top: "y" reshape_param '
             "{ shape { dim: 6 } axis: 1 num_axes: 2 }", ((2, 3, 2, 2),)),
    ],
    "Eltwise": [
        Case("sum", 'type: "Eltwise" bottom: "a" bottom: "b" top: "c"',
             ((2, 3, 2), (2, 3, 2)), mode="eltwise"),
        Case("sum_coeff", 'type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "d" '
             "eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }",
             ((2, 3, 2), (2, 3, 2), (2, 3, 2)), mode="eltwise"),
        Case("prod", 'type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "d" '
             "eltwise_param { operation: PROD }", ((2, 3, 2),) * 3, mode="eltwise",
             data="away"),
        Case("prod_unstable", 'type: "Eltwise" bottom: "a" bottom: "b" top: "c" '
             "eltwise_param { operation: PROD stable_prod_grad: false }", ((2, 3, 2),) * 2,
             mode="eltwise", data="away"),
        Case("max", 'type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "d" '
             "eltwise_param { operation: MAX }", ((2, 3, 2),) * 3, data="distinct"),
        # Caffe's own MAX test settings.
        Case("max_caffe", 'type: "Eltwise" bottom: "a" bottom: "b" top: "c" '
             "eltwise_param { operation: MAX }", ((2, 3, 2),) * 2, stepsize=1e-4,
             threshold=1e-2),
    ],
    "Silence": [
        # No tops, so the objective is 0: the gradient must be exactly 0 (Caffe's Silence
        # Backward writes zeros into every bottom diff that needs one).
        Case("two_bottoms", 'type: "Silence" bottom: "a" bottom: "b"', ((2, 3), (4,)),
             mode="total"),
        Case("first_only", 'type: "Silence" bottom: "a" bottom: "b"', ((2, 3), (4,)),
             check_bottom=(0,), mode="total"),
    ],
}


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
