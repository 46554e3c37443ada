"""pyforge.kernels.neuron against Caffe's formulas in float64 (tests/reference/neuron.py): every
forward/backward pair (ReLU and leaky ReLU, the fork's ReLU6, Sigmoid, TanH, PReLU shared and
per channel with its slope gradient, ELU, BNLL, Power, Exp, Log, Threshold, Clip, Swish) on
random and edge inputs, NaN and infinity where Caffe lets them through, and the in-place calls
the kernels allow.

Tolerances (see tests/reference/float32.py) count float32 roundings: a kernel doing one IEEE
operation, or a selection, must equal the rounded reference exactly; a chain of operations may
be off by a few units of the magnitude its error scales with, which each test names. Backward
kernels are fed the forward kernel's float32 output, as the layers do, and compared with the
derivative computed from x in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels import neuron as K
from tests.reference import neuron as ref
from tests.reference.float32 import assert_close, rounded

F32 = np.float32
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 60.0, -60.0], dtype=F32)


def _inputs(seed: int, scale: float = 3.0) -> np.ndarray:
    """Random values plus signed zeros, tiny, boundary and huge ones (all finite)."""
    rng = np.random.default_rng(seed)
    edges = [0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 0.5, -0.5, 1.0, -1.0, 20.0, -20.0, 90.0,
             -90.0, 1e30, -1e30]
    return np.concatenate([rng.standard_normal(301) * scale, edges]).astype(F32)


def _dy(x: np.ndarray, seed: int = 99) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(x.shape).astype(F32)


def _out(kernel, *args, like: np.ndarray) -> np.ndarray:
    """Call ``kernel(*args, out)`` on a NaN-filled output (so that unwritten cells show)."""
    out = np.full_like(like, np.nan)
    kernel(*args, out)
    return out


# --- ReLU, PReLU -------------------------------------------------------------------------------
@pytest.mark.parametrize("slope", [0.0, 0.1, -0.5])
def test_relu_is_exact(slope):
    x = _inputs(0)
    dy = _dy(x)
    slope = F32(slope)
    # y is x or one product, dx is dy or one product: exact.
    np.testing.assert_array_equal(_out(K.relu_forward, x, slope, like=x),
                                  rounded(ref.relu(x, slope)))
    np.testing.assert_array_equal(_out(K.relu_backward, x, dy, slope, like=x),
                                  rounded(ref.relu_grad(x, dy, slope)))


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_relu_in_place(slope):
    """Forward with y = x; backward reading the output in place of the input gives the same
    gradient, since for slope >= 0 the output has the input's sign."""
    x = _inputs(1)
    dy = _dy(x)
    slope = F32(slope)
    expected_y = _out(K.relu_forward, x, slope, like=x)
    expected_dx = _out(K.relu_backward, x, dy, slope, like=x)
    y = x.copy()
    K.relu_forward(y, slope, y)
    np.testing.assert_array_equal(y, expected_y)
    K.relu_backward(y, dy, slope, dy)  # bottom data is the top, bottom diff the top diff
    np.testing.assert_array_equal(dy, expected_dx)


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_relu6_is_exact_and_in_place(slope):
    x = np.concatenate([_inputs(19, scale=5.0), np.array([6.0, 5.9999995, 6.0000005], F32)])
    dy = _dy(x)
    slope = F32(slope)
    # A clamp plus at most one product: exact; the gradient passes only where 0 < x < 6.
    y = _out(K.relu6_forward, x, slope, like=x)
    np.testing.assert_array_equal(y, rounded(ref.relu6(x, slope)))
    dx = _out(K.relu6_backward, x, dy, slope, like=x)
    np.testing.assert_array_equal(dx, rounded(ref.relu6_grad(x, dy, slope)))
    assert dx[-3] == 0 and dx[-2] == dy[-2] and dx[-1] == 0
    # In place: y = x, and Backward reading the output keeps the same ranges (slope >= 0).
    K.relu6_forward(x, slope, x)
    np.testing.assert_array_equal(x, y)
    K.relu6_backward(x, dy, slope, dy)
    np.testing.assert_array_equal(dy, dx)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per_channel"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 1, 7), (3, 4, 1)])
def test_prelu(shape, shared):
    x = _inputs(2)[: np.prod(shape)].reshape(shape)
    dy = _dy(x)
    slope = np.linspace(-0.5, 0.75, 1 if shared else shape[1]).astype(F32)
    # Forward and data gradient: a selection plus at most one product each, exact.
    y = _out(K.prelu_forward, x, slope, shared, like=x)
    np.testing.assert_array_equal(y, rounded(ref.prelu(x, slope, shared)))
    dx = _out(K.prelu_backward, x, dy, slope, shared, like=x)
    np.testing.assert_array_equal(dx, rounded(ref.prelu_grad(x, dy, slope, shared)))
    # Slope gradient: float32 products summed in float64, one rounding of each term.
    per_channel = np.full(shape[1], np.nan)
    K.prelu_slope_grad(x, dy, per_channel)
    expected = ref.prelu_slope_grad(x, dy)
    magnitude = -ref.prelu_slope_grad(x, np.abs(dy))  # sum of |dy * x| over x <= 0
    assert_close(per_channel, expected, magnitude, roundings=2)


def test_prelu_forward_in_place():
    x = _inputs(3)[:60].reshape(3, 4, 5)
    slope = np.array([0.25, -1.0, 0.0, 2.0], dtype=F32)
    expected = _out(K.prelu_forward, x, slope, False, like=x)
    K.prelu_forward(x, slope, False, x)
    np.testing.assert_array_equal(x, expected)


# --- Sigmoid, TanH -----------------------------------------------------------------------------
def test_sigmoid():
    x = _inputs(4, scale=6.0)
    dy = _dy(x)
    y = _out(K.sigmoid_forward, x, like=x)
    # 0.5 * tanh(0.5 x) + 0.5 in float32: tanhf (<= 2 ulps) and the final addition make an
    # error of a few units of 1 (absolute), whatever the size of y.
    assert_close(y, ref.sigmoid(x), 1.0, roundings=3)
    dx = _out(K.sigmoid_backward, y, dy, like=x)
    # dy * y * (1 - y) from that y: its absolute error, then two products.
    assert_close(dx, ref.sigmoid_grad_from_x(x, dy), np.abs(dy), roundings=6)


@pytest.mark.parametrize("kernel", ["sigmoid", "swish"])
def test_sigmoid_tail_has_caffes_double_precision(kernel):
    """Caffe's ``0.5 * tanh(0.5 * x) + 0.5`` has double literals, so it is evaluated in double
    and rounded once: small outputs keep their relative precision (sigmoid(-20) = 2.06e-9, not
    0; at -80 the double tanh is -1 and Caffe's result is 0 too). Sigmoid's forward and Swish's
    cached sigmoid (Caffe's Swish runs a Sigmoid layer) must keep it."""
    xs = np.array([-5.0, -10.0, -17.0, -20.0, -30.0, -80.0], dtype=F32)
    expected = ref.sigmoid(xs)
    if kernel == "sigmoid":
        actual = _out(K.sigmoid_forward, xs, like=xs)
    else:
        actual = np.full_like(xs, np.nan)
        _out(K.swish_forward, xs, F32(1.0), actual, like=xs)
    assert_close(actual, expected, expected, roundings=2)


def test_tanh():
    x = _inputs(5)
    dy = _dy(x)
    y = _out(K.tanh_forward, x, like=x)
    t = np.tanh(x.astype(np.float64))
    assert_close(y, t, t, roundings=4)  # tanhf: within 2 ulps (4 unit roundoffs)
    dx = _out(K.tanh_backward, y, dy, like=x)
    # 1 - y*y loses y's relative error times y^2 (cancellation near |y| = 1), then a product.
    assert_close(dx, ref.tanh_grad_from_x(x, dy), np.abs(dy) * (np.abs(1 - t * t) + t * t),
                 roundings=8)


@pytest.mark.parametrize("kernel", [K.sigmoid_backward, K.tanh_backward])
def test_output_based_backward_in_place(kernel):
    """Sigmoid and TanH read the output, so dx may be dy (in place, top diff is bottom diff)."""
    y = np.tanh(_inputs(6)).astype(F32)
    dy = _dy(y)
    expected = _out(kernel, y, dy, like=y)
    kernel(y, dy, dy)
    np.testing.assert_array_equal(dy, expected)


# --- ELU, BNLL ---------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 0.3, 2.5])
def test_elu(alpha):
    x = _inputs(7)
    dy = _dy(x)
    alpha = F32(alpha)
    y = _out(K.elu_forward, x, alpha, like=x)
    e = np.exp(np.minimum(x.astype(np.float64), 0))
    # alpha * (expf(x) - 1): the subtraction cancels near 0, so the error scales with
    # alpha * (e^x + 1), not with y.
    assert_close(y, ref.elu(x, alpha), np.abs(ref.elu(x, alpha)) + alpha * (e + 1), roundings=3)
    dx = _out(K.elu_backward, x, y, dy, alpha, like=x)
    y64 = ref.elu(x, alpha)
    assert_close(dx, ref.elu_grad(x, y64, dy, alpha),
                 np.abs(dy) * (np.abs(alpha + y64) + alpha * (e + 1)), roundings=6)


def test_elu_backward_in_place_equals_out_of_place():
    """In place, Backward reads the output as its input; for alpha > 0 it has the input's sign,
    so the gradient is unchanged (bit for bit)."""
    x = _inputs(8)
    dy = _dy(x)
    alpha = F32(0.7)
    y = _out(K.elu_forward, x, alpha, like=x)
    expected = _out(K.elu_backward, x, y, dy, alpha, like=x)
    K.elu_backward(y, y, dy, alpha, dy)
    np.testing.assert_array_equal(dy, expected)


def test_bnll():
    x = np.concatenate([_inputs(9, scale=20.0),
                        np.array([-36, -38, -50, -87, -88, -104, 36, 50, 51, 1e4], F32)])
    dy = _dy(x)
    y = _out(K.bnll_forward, x, like=x)
    # Evaluated in double (as Caffe does) and rounded: half an ulp of y, plus the double
    # rounding of 1 + exp(x) inside the log, 2^-53 absolute, which is 2^-29 in float32 U units.
    assert_close(y, ref.bnll(x), np.abs(ref.bnll(x)) + 2.0**-28, roundings=1)
    dx = _out(K.bnll_backward, x, dy, like=x)
    # float32 exp, a sum, a quotient and a product: four roundings of dx.
    expected = ref.bnll_grad(x, dy)
    assert_close(dx, expected, expected, roundings=4)


def test_bnll_large_inputs():
    """Large inputs: forward is x itself (no overflow of exp), and far below -37 it is 0, as
    Caffe's log(1 + exp(x)) in double gives; backward's exp is clamped at 50, so the gradient
    is dy (not NaN from inf/inf)."""
    x = np.array([88.0, 100.0, 1e10, 3e38, -40.0, -1e10], dtype=F32)
    np.testing.assert_array_equal(_out(K.bnll_forward, x, like=x), np.where(x > 0, x, 0))
    dy = np.full_like(x, 3.0)
    np.testing.assert_array_equal(_out(K.bnll_backward, x, dy, like=x)[:4], 3.0)


# --- Power -------------------------------------------------------------------------------------
POWER_PARAMS = [
    pytest.param(2.0, 1.0, 0.0, id="square"),
    pytest.param(2.0, -0.5, 1.5, id="square_scale_shift"),
    pytest.param(3.0, 0.5, 0.0, id="cube_shift0"),
    pytest.param(0.5, 2.0, 10.0, id="sqrt_shifted"),
    pytest.param(-1.5, 1.0, 12.0, id="negative_power"),
    pytest.param(1.0, 3.0, -1.0, id="power1_affine"),
    pytest.param(-2.0, 1.0, 0.0, id="inverse_square_shift0"),
]


def _power_magnitude(x, y, power, scale, shift):
    """y's error: scale*x + shift rounded twice (relative to |scale x| + |shift| over |v|),
    amplified |power| times by the power, plus powf's own rounding."""
    sx = np.abs(np.float64(scale) * x)
    v = np.abs(np.float64(scale) * x + shift)
    # v = 0 gives 0 or inf exactly (no error to scale).
    cond = np.divide(sx + abs(shift) + v, v, out=np.zeros_like(v), where=v > 0)
    with np.errstate(invalid="ignore"):  # inf * 0 where y is inf: a special value, not compared
        return np.abs(y) * (1 + abs(power) * cond)


@pytest.mark.parametrize(("power", "scale", "shift"), POWER_PARAMS)
def test_power(power, scale, shift):
    x = _inputs(10, scale=2.0)[:-2]  # without +-1e30, whose powers overflow float64 too
    args = (F32(power), F32(scale), F32(shift))
    y = _out(K.power_forward, x, *args, like=x)
    y64 = ref.power(x, power, scale, shift)
    assert_close(y, y64, _power_magnitude(x, y64, power, scale, shift), roundings=3)
    if power == 1.0:
        return  # the layer writes the constant gradient `scale` itself
    g = _out(K.power_grad, x, y, *args, like=x)
    g64 = ref.power_grad(x, y64, power, scale, shift)
    # From the float32 y: its error, then at most four roundings (products, a quotient).
    assert_close(g, g64, _power_magnitude(x, g64, power, scale, shift) * 2, roundings=6)


def test_power_grad_shift0_is_nan_at_zero():
    """Caffe's shift-0 form ``power * y / x`` is 0/0 at x = 0 (power > 1), as in Caffe."""
    x = np.array([0.0, 2.0], dtype=F32)
    y = _out(K.power_forward, x, F32(3.0), F32(1.0), F32(0.0), like=x)
    g = _out(K.power_grad, x, y, F32(3.0), F32(1.0), F32(0.0), like=x)
    assert np.isnan(g[0]) and g[1] == 12.0


@pytest.mark.parametrize(("power", "scale", "shift", "value"),
                         [(0.0, 2.0, 3.0, 1.0), (2.0, 0.0, 3.0, 9.0), (0.5, 0.0, 4.0, 2.0)],
                         ids=["power0", "scale0", "scale0_sqrt"])
def test_power_forward_constant_cases(power, scale, shift, value):
    """When power * scale is 0 the output does not depend on x (Caffe writes the constant 1 or
    shift^power; the kernel gives the same for finite x)."""
    x = _inputs(11)[:-2]
    y = _out(K.power_forward, x, F32(power), F32(scale), F32(shift), like=x)
    np.testing.assert_array_equal(y, value)


@pytest.mark.parametrize(("power", "scale", "shift"), POWER_PARAMS[:5])
def test_power_in_place(power, scale, shift):
    """In place, Forward overwrites x with y, and Backward reads y as bottom data: the result
    is Caffe's formula evaluated with x := y (Caffe's in-place gradient, not the true one)."""
    x = _inputs(12, scale=2.0)[:-2]
    args = (F32(power), F32(scale), F32(shift))
    y = x.copy()
    K.power_forward(y, *args, y)
    np.testing.assert_array_equal(y, _out(K.power_forward, x, *args, like=x))
    g = _out(K.power_grad, y, y, *args, like=x)
    expected = ref.power_grad(y, y, power, scale, shift)
    assert_close(g, expected, _power_magnitude(y, expected, power, scale, shift) * 2, roundings=6)


# --- Exp, Log ----------------------------------------------------------------------------------
EXP_LOG_PARAMS = [
    pytest.param(-1.0, 1.0, 0.0, id="e"),
    pytest.param(-1.0, 0.5, 1.0, id="e_scale_shift"),
    pytest.param(2.0, 1.0, 0.0, id="base2"),
    pytest.param(10.0, -0.3, 2.0, id="base10_scale_shift"),
    pytest.param(0.5, 2.0, -1.0, id="base_half"),
]


def _exp_scales(base, scale, shift):
    """inner_scale and outer_scale as ExpLayer.layer_setup computes them (float32)."""
    log_base = F32(1.0) if base == -1 else F32(np.log(F32(base)))
    inner = log_base * F32(scale)
    if shift == 0:
        outer = F32(1.0)
    elif base == -1:
        outer = np.exp(F32(shift))
    else:
        outer = F32(base) ** F32(shift)
    return inner, outer


@pytest.mark.parametrize(("base", "scale", "shift"), EXP_LOG_PARAMS)
def test_exp(base, scale, shift):
    x = _inputs(13, scale=4.0)[:-6]  # without |x| >= 90, which overflow or underflow
    dy = _dy(x)
    inner, outer = _exp_scales(base, scale, shift)
    y = _out(K.exp_forward, x, inner, outer, like=x)
    y64 = ref.exp(x, base, scale, shift)
    # The rounding of inner_scale (ln(base) * scale) and of inner_scale * x is amplified by the
    # exponent z; expf, outer_scale and the product add a few roundings of y.
    z = np.abs(np.float64(inner) * x)
    assert_close(y, y64, np.abs(y64) * (1 + z), roundings=6)
    dx = _out(K.exp_backward, y, dy, inner, like=x)
    dx64 = ref.exp_grad_from_x(x, dy, base, scale, shift)
    assert_close(dx, dx64, np.abs(dx64) * (1 + z), roundings=10)


def test_exp_overflow_and_backward_in_place():
    inner, outer = _exp_scales(-1.0, 1.0, 0.0)
    x = np.array([90.0, -110.0, 0.0], dtype=F32)
    y = _out(K.exp_forward, x, inner, outer, like=x)
    np.testing.assert_array_equal(y, [np.inf, 0.0, 1.0])
    dy = np.array([2.0, 2.0, 2.0], dtype=F32)
    expected = _out(K.exp_backward, y, dy, inner, like=x)
    K.exp_backward(y, dy, inner, dy)  # reads the output: dx may be dy
    np.testing.assert_array_equal(dy, expected)


@pytest.mark.parametrize(("base", "scale", "shift"), EXP_LOG_PARAMS)
def test_log(base, scale, shift):
    x = _inputs(14, scale=3.0)[:-2]
    # Keep shift + scale * x > 0 (below it the result is NaN or -inf in both; see below).
    x = x[np.float64(shift) + np.float64(scale) * x > 1e-3]
    log_base = F32(1.0) if base == -1 else F32(np.log(F32(base)))
    base_scale = F32(1.0) / log_base
    num_scale = F32(scale) / log_base
    y = _out(K.log_forward, x, F32(scale), F32(shift), base_scale, like=x)
    y64 = ref.log(x, base, scale, shift)
    sx = np.abs(np.float64(scale) * x)
    v = np.abs(np.float64(scale) * x + shift)
    # ln passes v's relative error ((|scale x| + |v|) / |v| roundings) on as an absolute one,
    # scaled by 1/ln(base); plus the roundings of ln, of 1/ln(base) and of the product.
    cond = (sx + v) / v
    assert_close(y, y64, np.abs(y64) + abs(base_scale) * cond, roundings=4)
    g = _out(K.log_grad, x, F32(scale), F32(shift), num_scale, like=x)
    g64 = ref.log_grad(x, base, scale, shift)
    assert_close(g, g64, np.abs(g64) * (1 + cond), roundings=5)


def test_log_of_zero_and_negative():
    x = np.array([0.0, -1.0, 1.0], dtype=F32)
    y = _out(K.log_forward, x, F32(1.0), F32(0.0), F32(1.0), like=x)
    np.testing.assert_array_equal(y, [-np.inf, np.nan, 0.0])
    g = _out(K.log_grad, x, F32(1.0), F32(0.0), F32(1.0), like=x)
    np.testing.assert_array_equal(g, [np.inf, -1.0, 1.0])


# --- Threshold, Clip, Swish --------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.0, 0.5, -1.0])
def test_threshold_is_exact(t):
    x = np.concatenate([_inputs(15), np.array([t, np.nextafter(F32(t), F32(1))], F32)])
    np.testing.assert_array_equal(_out(K.threshold_forward, x, F32(t), like=x),
                                  ref.threshold(x, t))


@pytest.mark.parametrize(("lo", "hi"), [(-0.5, 0.5), (0.0, 6.0), (-1.0, -1.0)])
def test_clip_is_exact_and_passes_the_gradient_at_the_bounds(lo, hi):
    lo32, hi32 = F32(lo), F32(hi)
    x = np.concatenate([_inputs(16), np.array([lo, hi, np.nextafter(lo32, F32(-9)),
                                               np.nextafter(hi32, F32(9))], F32)])
    dy = _dy(x)
    np.testing.assert_array_equal(_out(K.clip_forward, x, lo32, hi32, like=x),
                                  ref.clip(x, lo, hi))
    dx = _out(K.clip_backward, x, dy, lo32, hi32, like=x)
    np.testing.assert_array_equal(dx, ref.clip_grad(x, dy, lo, hi))
    assert (dx[-4:-2] == dy[-4:-2]).all() and (dx[-2:] == 0).all()


@pytest.mark.parametrize("beta", [1.0, 0.5, 3.0])
def test_swish(beta):
    x = _inputs(17, scale=4.0)
    dy = _dy(x)
    b = F32(beta)
    sig = np.full_like(x, np.nan)
    y = _out(K.swish_forward, x, b, sig, like=x)
    y64, sig64 = ref.swish(x, beta)
    # The sigmoid as in test_sigmoid (a few units of 1, absolute); y = x * sigmoid.
    assert_close(sig, sig64, 1.0, roundings=3)
    assert_close(y, y64, np.abs(x) + np.abs(y64), roundings=4)
    dx = _out(K.swish_backward, y, sig, dy, b, like=x)
    # From the float32 y and sigmoid: beta*y carries y's error, then four roundings.
    bx = np.abs(np.float64(beta) * x)
    assert_close(dx, ref.swish_grad_from_x(x, dy, beta), np.abs(dy) * 2 * (1 + bx), roundings=8)


def test_swish_in_place():
    x = _inputs(18)
    dy = _dy(x)
    b = F32(1.5)
    sig = np.empty_like(x)
    expected_y = _out(K.swish_forward, x, b, sig, like=x)
    expected_dx = _out(K.swish_backward, expected_y, sig, dy, b, like=x)
    y = x.copy()
    K.swish_forward(y, b, sig, y)
    np.testing.assert_array_equal(y, expected_y)
    K.swish_backward(y, sig, dy, b, dy)
    np.testing.assert_array_equal(dy, expected_dx)


# --- NaN and infinity --------------------------------------------------------------------------
def _special_cases():
    """(kernel output, Caffe's value) for NaN, +-inf and ordinary inputs, per function."""
    x = SPECIAL
    dy = np.full_like(x, 2.0)
    # PReLU with one channel per value, so that each value's slope gradient shows on its own.
    x3 = x.reshape(1, -1, 1)
    dy3 = dy.reshape(1, -1, 1)
    slope = np.full(x.size, 0.25, F32)
    half = F32(0.5)
    sig = np.empty_like(x)
    cases = {
        "relu_forward": (_out(K.relu_forward, x, F32(0.1), like=x), ref.relu(x, 0.1)),
        "relu0_forward": (_out(K.relu_forward, x, F32(0.0), like=x), ref.relu(x, 0.0)),
        "relu_backward": (_out(K.relu_backward, x, dy, F32(0.1), like=x),
                          ref.relu_grad(x, dy, 0.1)),
        "relu6_forward": (_out(K.relu6_forward, x, F32(0.1), like=x), ref.relu6(x, 0.1)),
        "relu6_backward": (_out(K.relu6_backward, x, dy, F32(0.1), like=x),
                           ref.relu6_grad(x, dy, 0.1)),
        "prelu_forward": (_out(K.prelu_forward, x3, slope, False, like=x3),
                          ref.prelu(x3, slope, False)),
        "prelu_backward": (_out(K.prelu_backward, x3, dy3, slope, False, like=x3),
                           ref.prelu_grad(x3, dy3, slope, False)),
        "sigmoid_forward": (_out(K.sigmoid_forward, x, like=x), ref.sigmoid(x)),
        "tanh_forward": (_out(K.tanh_forward, x, like=x), np.tanh(x.astype(np.float64))),
        "elu_forward": (_out(K.elu_forward, x, F32(1.0), like=x), ref.elu(x, 1.0)),
        "elu_backward": (_out(K.elu_backward, x, ref.elu(x, 1.0).astype(F32), dy, F32(1.0),
                              like=x), ref.elu_grad(x, ref.elu(x, 1.0), dy, 1.0)),
        "bnll_forward": (_out(K.bnll_forward, x, like=x), ref.bnll(x)),
        "bnll_backward": (_out(K.bnll_backward, x, dy, like=x), ref.bnll_grad(x, dy)),
        "power_forward": (_out(K.power_forward, x, F32(2.0), half, F32(1.0), like=x),
                          ref.power(x, 2.0, 0.5, 1.0)),
        "exp_forward": (_out(K.exp_forward, x, half, F32(1.0), like=x),
                        ref.exp(x, -1, 0.5, 0.0)),
        "log_forward": (_out(K.log_forward, x, F32(1.0), F32(0.0), F32(1.0), like=x),
                        ref.log(x, -1, 1.0, 0.0)),
        "threshold_forward": (_out(K.threshold_forward, x, F32(0.0), like=x),
                              ref.threshold(x, 0.0)),
        "clip_forward": (_out(K.clip_forward, x, -half, half, like=x), ref.clip(x, -0.5, 0.5)),
        "clip_backward": (_out(K.clip_backward, x, dy, -half, half, like=x),
                          ref.clip_grad(x, dy, -0.5, 0.5)),
        "swish_forward": (_out(K.swish_forward, x, F32(1.0), sig, like=x), ref.swish(x, 1.0)[0]),
    }
    per_channel = np.zeros(x.size)
    K.prelu_slope_grad(x3, dy3, per_channel)
    cases["prelu_slope_grad"] = (per_channel, ref.prelu_slope_grad(x3, dy3))
    return cases


SPECIAL_NAMES = ["relu_forward", "relu0_forward", "relu_backward", "relu6_forward",
                 "relu6_backward", "prelu_forward",
                 "prelu_backward", "prelu_slope_grad", "sigmoid_forward", "tanh_forward",
                 "elu_forward", "elu_backward", "bnll_forward", "bnll_backward", "power_forward",
                 "exp_forward", "log_forward", "threshold_forward", "clip_forward",
                 "clip_backward", "swish_forward"]


@pytest.fixture(scope="module")
def special_cases():
    return _special_cases()


@pytest.mark.parametrize("name", SPECIAL_NAMES)
def test_nan_and_inf_as_in_caffe(special_cases, name):
    """NaN and +-inf inputs give Caffe's values: NaN where Caffe's arithmetic makes NaN (and
    only there), infinities with their sign, and finite values where Caffe's comparisons
    (std::max/min, the masks of the gradients) drop them."""
    actual, expected = special_cases[name]
    expected = np.asarray(expected, dtype=np.float64)
    assert_close(actual, expected, np.abs(expected), roundings=4)
