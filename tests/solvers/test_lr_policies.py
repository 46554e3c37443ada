"""Learning-rate policies (Caffe's SGDSolver::GetLearningRate) and their parameter checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyforge.errors import SolverError
from pyforge.proto import caffe_pb2
from pyforge.solvers.lr_policy import LR_POLICIES, LrState, get_policy

f32 = np.float32
ALL_POLICIES = ("exp", "fixed", "inv", "multistep", "poly", "sigmoid", "step")


def _param(**fields) -> caffe_pb2.SolverParameter:
    stepvalues = fields.pop("stepvalue", ())
    param = caffe_pb2.SolverParameter(**fields)
    param.stepvalue.extend(stepvalues)
    return param


def _rates(param: caffe_pb2.SolverParameter, iters) -> list[np.float32]:
    policy = get_policy(param)
    state = LrState()
    return [policy.rate(param, it, state) for it in iters]


def _assert_f32_close(got, expected, rtol=1e-6):
    """``got`` is a float32 and within a few float32 ulps of ``expected``."""
    assert np.asarray(got).dtype == np.float32, f"rate {got!r} is not a float32"
    np.testing.assert_allclose(np.float64(got), np.float64(expected), rtol=rtol, atol=0)


def test_registry_holds_caffes_policies_and_pyforges_plateau():
    assert tuple(n for n in LR_POLICIES.names() if n != "plateau") == ALL_POLICIES
    assert "plateau" in LR_POLICIES
    for name in ALL_POLICIES:
        assert name in LR_POLICIES
        assert LR_POLICIES.get(name) is get_policy(_param(
            lr_policy=name, base_lr=0.1, gamma=0.5, stepsize=10, power=1, max_iter=10,
            stepvalue=[5]))


# --- formulas ------------------------------------------------------------------------------------

def test_fixed():
    param = _param(lr_policy="fixed", base_lr=0.01, gamma=0.1, stepsize=1)
    for got in _rates(param, [0, 1, 99, 100, 12345]):
        _assert_f32_close(got, f32(0.01))


@pytest.mark.parametrize(("it", "current_step", "expected"), [
    (0, 0, 0.01), (1, 0, 0.01), (99, 0, 0.01), (100, 1, 0.001), (199, 1, 0.001),
    (250, 2, 1e-4), (1000, 10, 1e-12),
])
def test_step(it, current_step, expected):
    param = _param(lr_policy="step", base_lr=0.01, gamma=0.1, stepsize=100)
    state = LrState()
    got = get_policy(param).rate(param, it, state)
    _assert_f32_close(got, expected)
    assert state.current_step == current_step


def test_step_recomputes_current_step_each_call():
    """step sets current_step = iter / stepsize every call, even when iter goes backwards."""
    param = _param(lr_policy="step", base_lr=1.0, gamma=0.5, stepsize=10)
    policy = get_policy(param)
    state = LrState(current_step=7)
    _assert_f32_close(policy.rate(param, 35, state), 0.125)
    assert state.current_step == 3
    _assert_f32_close(policy.rate(param, 5, state), 1.0)
    assert state.current_step == 0
    _assert_f32_close(policy.rate(param, 20, state), 0.25)
    assert state.current_step == 2


def test_step_caffe_lenet_style_values():
    """base 0.02, gamma 0.5, stepsize 20 (the reference sgd_step run): halves every 20 iters."""
    param = _param(lr_policy="step", base_lr=0.02, gamma=0.5, stepsize=20)
    rates = _rates(param, range(60))
    assert [f"{r:g}" for r in rates] == ["0.02"] * 20 + ["0.01"] * 20 + ["0.005"] * 20


@pytest.mark.parametrize(("it", "expected"), [
    (0, 0.1), (1, 0.099), (10, 0.1 * 0.99 ** 10), (100, 0.1 * 0.99 ** 100),
])
def test_exp(it, expected):
    param = _param(lr_policy="exp", base_lr=0.1, gamma=0.99)
    _assert_f32_close(_rates(param, [it])[0], expected)


def test_exp_gamma_zero_and_one():
    assert [float(r) for r in _rates(_param(lr_policy="exp", base_lr=0.5, gamma=1.0),
                                     [0, 7, 1000])] == [0.5, 0.5, 0.5]
    # 0^0 = 1 at iteration 0, then 0.
    assert [float(r) for r in _rates(_param(lr_policy="exp", base_lr=0.5, gamma=0.0),
                                     [0, 1, 2])] == [0.5, 0.0, 0.0]


@pytest.mark.parametrize(("it", "expected"), [
    (0, 0.01), (100, 0.01 * 1.01 ** -0.75), (1000, 0.01 * 1.1 ** -0.75),
    (10000, 0.01 * 2.0 ** -0.75),
])
def test_inv(it, expected):
    """Caffe's LeNet solver: base_lr 0.01, gamma 1e-4, power 0.75."""
    param = _param(lr_policy="inv", base_lr=0.01, gamma=1e-4, power=0.75)
    _assert_f32_close(_rates(param, [it])[0], expected)


def test_inv_prints_like_caffe_lenet_log():
    """The lr values of Caffe's own LeNet training log (examples/mnist)."""
    param = _param(lr_policy="inv", base_lr=0.01, gamma=1e-4, power=0.75)
    got = [f"{r:g}" for r in _rates(param, [0, 100, 200, 300, 400, 500])]
    assert got == ["0.01", "0.00992565", "0.00985258", "0.00978075", "0.00971013", "0.00964069"]


# Values printed by the real Caffe (tests/data/caffe_reference/runs/*/trace.json, "lr").
_CAFFE_INV = {  # base_lr 0.01, gamma 1e-4, power 0.75
    1: "0.00999925", 9: "0.00999326", 10: "0.00999251", 14: "0.00998951", 33: "0.00997532",
    39: "0.00997085", 40: "0.00997011", 41: "0.00996936", 59: "0.00995598",
}
_CAFFE_POLY = {  # base_lr 0.02, power 2, max_iter 60
    0: "0.02", 1: "0.0193389", 19: "0.00933889", 30: "0.005", 32: "0.00435555",
    47: "0.000938889", 56: "8.88889e-05", 58: "2.22223e-05", 59: "5.55555e-06",
}


def test_inv_matches_caffes_printed_float32_values():
    """Caffe computes ``base_lr * powf(1 + gamma*iter, -power)`` in float with a correctly
    rounded powf; e.g. iteration 40 prints 0.00997011 (a plain float32 ``np.power`` is one ulp
    low there and prints 0.0099701)."""
    param = _param(lr_policy="inv", base_lr=0.01, gamma=1e-4, power=0.75)
    iters = sorted(_CAFFE_INV)
    got = dict(zip(iters, (f"{r:g}" for r in _rates(param, iters))))
    assert got == _CAFFE_INV


def test_poly_matches_caffes_printed_float32_values():
    param = _param(lr_policy="poly", base_lr=0.02, power=2.0, max_iter=60)
    iters = sorted(_CAFFE_POLY)
    got = dict(zip(iters, (f"{r:g}" for r in _rates(param, iters))))
    assert got == _CAFFE_POLY


def _powf(x, y) -> np.float32:
    """A correctly rounded float32 pow (glibc powf), as Caffe's float ``pow`` computes it."""
    return f32(math.pow(float(f32(x)), float(f32(y))))


def test_inv_and_poly_use_a_correctly_rounded_float_pow():
    """Bit-exact against Caffe's float arithmetic over many iterations."""
    inv = _param(lr_policy="inv", base_lr=0.01, gamma=1e-4, power=0.75)
    poly = _param(lr_policy="poly", base_lr=0.02, power=2.0, max_iter=600)
    iters = range(0, 600)
    bad = []
    for it, got in zip(iters, _rates(inv, iters)):
        expected = f32(0.01) * _powf(f32(1) + f32(1e-4) * f32(it), -f32(0.75))
        if got != expected:
            bad.append(("inv", it, repr(got), repr(expected)))
    for it, got in zip(iters, _rates(poly, iters)):
        expected = f32(0.02) * _powf(f32(1) - f32(it) / f32(600), f32(2.0))
        if got != expected:
            bad.append(("poly", it, repr(got), repr(expected)))
    assert not bad, f"{len(bad)} rates differ from Caffe's float32 values, e.g. {bad[:5]}"


def _mismatches(param, iters, caffe_rate) -> list[tuple[int, str, str]]:
    bad = []
    for it, got in zip(iters, _rates(param, iters)):
        expected = caffe_rate(it)
        if got != expected:
            bad.append((it, repr(got), repr(expected)))
    return bad


@pytest.mark.parametrize(("policy", "fields"), [
    ("step", dict(base_lr=0.01, gamma=0.1, stepsize=1)),
    ("exp", dict(base_lr=0.01, gamma=0.9999)),
    ("multistep", dict(base_lr=0.01, gamma=0.1, stepvalue=list(range(1, 40)))),
])
def test_integer_powers_are_computed_in_double_like_caffe(policy, fields):
    """``base_lr * pow(gamma, n)`` with an int n: in C++11 ``pow(float, int)`` promotes both to
    double, and the double product is rounded to float when assigned to the float rate. (The
    float overloads are in scope in Caffe's sgd_solver.cpp: inv/poly use powf, see above.)
    A float32 ``np.power(gamma, n)`` is off by an ulp for e.g. 0.01 * 0.1^2."""
    param = _param(lr_policy=policy, **fields)
    base, gamma = float(f32(fields["base_lr"])), float(f32(fields["gamma"]))
    if policy == "step":
        iters = range(40)
        exponent = [it // fields["stepsize"] for it in iters]
    elif policy == "exp":
        iters = range(0, 20000, 97)
        exponent = list(iters)
    else:
        iters = range(40)  # one step value per iteration: current_step == iter
        exponent = list(iters)
    powers = dict(zip(iters, exponent))
    bad = _mismatches(param, iters, lambda it: f32(base * math.pow(gamma, powers[it])))
    assert not bad, f"{len(bad)} {policy} rates differ from Caffe's, e.g. {bad[:4]}"


def test_sigmoid_uses_a_correctly_rounded_float_exp_like_caffe():
    """``base_lr * (1 / (1 + expf(-gamma * (iter - stepsize))))``, all in float, with glibc's
    (correctly rounded) expf; a float32 ``np.exp`` is off by an ulp or two in places."""
    param = _param(lr_policy="sigmoid", base_lr=0.01, gamma=0.01, stepsize=500)

    def caffe_rate(it):
        x = -f32(0.01) * (f32(it) - f32(500))
        return f32(0.01) * (f32(1) / (f32(1) + f32(math.exp(float(x)))))

    iters = range(0, 1000, 3)
    bad = _mismatches(param, iters, caffe_rate)
    assert not bad, f"{len(bad)} sigmoid rates differ from Caffe's, e.g. {bad[:4]}"


@pytest.mark.parametrize(("it", "expected"), [
    (0, 0.01), (25, 0.01 * 0.75 ** 2), (50, 0.0025), (80, 0.01 * 0.2 ** 2), (100, 0.0),
])
def test_poly(it, expected):
    param = _param(lr_policy="poly", base_lr=0.01, power=2.0, max_iter=100)
    got = _rates(param, [it])[0]
    if expected == 0.0:
        assert float(got) == 0.0
    else:
        _assert_f32_close(got, expected)


def test_poly_fractional_power_uses_float_division():
    param = _param(lr_policy="poly", base_lr=0.01, power=0.5, max_iter=100)
    _assert_f32_close(_rates(param, [75])[0], 0.005)
    # iter / max_iter is a float division (1/3), not an integer one (0).
    param = _param(lr_policy="poly", base_lr=1.0, power=1.0, max_iter=3)
    _assert_f32_close(_rates(param, [1])[0], 2.0 / 3.0)


@pytest.mark.parametrize(("it", "expected"), [
    (0, 0.1 / (1 + math.exp(5.0))), (100, 0.05), (150, 0.1 / (1 + math.exp(-2.5))),
    (200, 0.1 / (1 + math.exp(-5.0))),
])
def test_sigmoid(it, expected):
    param = _param(lr_policy="sigmoid", base_lr=0.1, gamma=0.05, stepsize=100)
    _assert_f32_close(_rates(param, [it])[0], expected)


def test_sigmoid_saturates_without_warnings():
    """exp overflows in float32 for far-off iterations: the rate is 0, with no warning (pytest
    turns warnings into errors here)."""
    param = _param(lr_policy="sigmoid", base_lr=0.1, gamma=10.0, stepsize=100)
    low, high = _rates(param, [0, 10_000])
    assert float(low) == 0.0
    _assert_f32_close(high, 0.1)


def test_multistep_advances_at_most_once_per_call(pyforge_log):
    param = _param(lr_policy="multistep", base_lr=1.0, gamma=0.5, stepvalue=[10, 20, 30])
    policy = get_policy(param)
    state = LrState()
    seen = []
    for it in (0, 9, 10, 11, 35, 35, 36, 37, 5, 1000):
        seen.append((it, float(policy.rate(param, it, state)), state.current_step))
    assert seen == [
        (0, 1.0, 0), (9, 1.0, 0), (10, 0.5, 1), (11, 0.5, 1),
        # 35 is past two step values: one step per call (Caffe's `if`, not `while`).
        (35, 0.25, 2), (35, 0.125, 3), (36, 0.125, 3), (37, 0.125, 3),
        # never goes back, never past the last step value
        (5, 0.125, 3), (1000, 0.125, 3),
    ]
    status = [m for m in pyforge_log if m.startswith("MultiStep Status")]
    assert status == [
        "MultiStep Status: Iteration 10, step = 1",
        "MultiStep Status: Iteration 35, step = 2",
        "MultiStep Status: Iteration 35, step = 3",
    ]


def test_multistep_continues_from_the_stored_current_step(pyforge_log):
    """current_step lives in the solver state (restored from a .solverstate), not recomputed."""
    param = _param(lr_policy="multistep", base_lr=0.1, gamma=0.1, stepvalue=[10, 20])
    policy = get_policy(param)
    state = LrState(current_step=1)
    _assert_f32_close(policy.rate(param, 15, state), 0.01)
    assert state.current_step == 1
    assert not [m for m in pyforge_log if m.startswith("MultiStep Status")]
    _assert_f32_close(policy.rate(param, 20, state), 0.001)
    assert state.current_step == 2
    assert pyforge_log[-1] == "MultiStep Status: Iteration 20, step = 2"


def test_multistep_schedule_over_a_run():
    param = _param(lr_policy="multistep", base_lr=0.01, gamma=0.1, stepvalue=[3, 5])
    got = _rates(param, range(8))
    expected = [0.01] * 3 + [0.001] * 2 + [1e-4] * 3
    for g, e in zip(got, expected):
        _assert_f32_close(g, e)


# --- checks --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "words"), [
    (dict(lr_policy="step", base_lr=0.1, gamma=0.1, stepsize=0), ["step", "stepsize"]),
    (dict(lr_policy="step", base_lr=0.1, gamma=0.1, stepsize=-5), ["step", "stepsize"]),
    (dict(lr_policy="step", base_lr=0.1, gamma=-0.1, stepsize=10), ["step", "gamma"]),
    (dict(lr_policy="exp", base_lr=0.1, gamma=-0.5), ["exp", "gamma"]),
    (dict(lr_policy="inv", base_lr=0.1, gamma=-1e-4, power=0.75), ["inv", "gamma"]),
    (dict(lr_policy="multistep", base_lr=0.1, gamma=-0.1, stepvalue=[10]),
     ["multistep", "gamma"]),
    (dict(lr_policy="sigmoid", base_lr=0.1, gamma=0.1, stepsize=0), ["sigmoid", "stepsize"]),
    (dict(lr_policy="sigmoid", base_lr=0.1, gamma=-0.1, stepsize=10), ["sigmoid", "gamma"]),
    (dict(lr_policy="poly", base_lr=0.1, power=1.0, max_iter=0), ["poly", "max_iter"]),
])
def test_parameter_checks_raise_solver_error(fields, words):
    with pytest.raises(SolverError) as info:
        get_policy(_param(**fields))
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"


def test_valid_edge_parameters_pass_the_checks():
    get_policy(_param(lr_policy="step", base_lr=0.1, gamma=0.0, stepsize=1))
    get_policy(_param(lr_policy="exp", base_lr=0.1, gamma=0.0))
    get_policy(_param(lr_policy="inv", base_lr=0.1, gamma=0.0, power=1.0))
    get_policy(_param(lr_policy="sigmoid", base_lr=0.1, gamma=0.0, stepsize=1))
    get_policy(_param(lr_policy="poly", base_lr=0.1, power=1.0, max_iter=1))
    get_policy(_param(lr_policy="fixed"))


def test_unknown_policy_lists_the_known_ones():
    with pytest.raises(SolverError) as info:
        get_policy(_param(lr_policy="cosine", base_lr=0.1))
    message = str(info.value)
    assert "cosine" in message
    for name in ALL_POLICIES:
        assert name in message


def test_policy_names_are_case_sensitive():
    with pytest.raises(SolverError):
        get_policy(_param(lr_policy="Fixed", base_lr=0.1))


def test_empty_lr_policy_is_an_error():
    with pytest.raises(SolverError) as info:
        get_policy(_param(base_lr=0.1))
    assert "lr_policy" in str(info.value)
