"""The neuron layers: ReLU, Sigmoid, TanH, PReLU, ELU, AbsVal, BNLL, Power, Exp, Log, Threshold,
Clip and Swish."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import blob_from, build_layer
from tests.layers.util import f64, run

#: Inputs of the ReLU/Sigmoid/TanH tests: both signs, zero, a kink neighbourhood, saturation.
X_CORE = np.array([[-2.0, -0.5, 0.0, 0.25, 3.0], [1e-3, -1e-3, 10.0, -10.0, 0.5]], np.float32)


RNG = np.random.default_rng(1701)


X = np.array([[-3.0, -1.0, -0.25, 0.0, 0.5, 2.0], [1e-3, -1e-3, 7.0, -7.0, 1.0, -2.0]],
             np.float32)


X4 = RNG.standard_normal((2, 3, 2, 3)).astype(np.float32)


DY = RNG.standard_normal(X.shape).astype(np.float32)


def grad(layer, bottom, top, dy):
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    return bottom[0].diff.copy()


# --- Power ---------------------------------------------------------------------------------------
def power_ref(x, power, scale, shift):
    return (shift + scale * f64(x)) ** power


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("slope", [0.0, 0.1, -0.5])
def test_relu_forward_backward(slope, in_place):
    text = f'type: "ReLU" bottom: "x" top: "y" relu_param {{ negative_slope: {slope} }}'
    layer, bottom, top = run(text, X_CORE, in_place=in_place)
    expected = np.maximum(X_CORE, 0) + np.float32(slope) * np.minimum(X_CORE, 0)
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-6)
    dy = np.arange(X_CORE.size, dtype=np.float32).reshape(X_CORE.shape) + 1
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    # Caffe: dy * ((x > 0) + slope * (x <= 0)); x = 0 takes the slope.
    grad = dy * np.where(X_CORE > 0, 1.0, np.float32(slope))
    if in_place and slope < 0:
        # In place the mask is read from the output, whose sign flips with a negative slope
        # (Caffe has the same limitation): negative inputs look positive.
        grad = dy * np.where((X_CORE > 0) | (X_CORE < 0), 1.0, np.float32(slope))
    np.testing.assert_allclose(bottom[0].diff, grad, rtol=1e-6)


def test_relu_zero_input_gets_the_slope_gradient():
    layer, bottom, top = run('type: "ReLU" relu_param { negative_slope: 0.25 }',
                             np.zeros((1, 3), np.float32))
    top[0].diff[...] = 4
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.ones((1, 3)))


def test_sigmoid_and_tanh_values():
    _, _, top = run('type: "Sigmoid"', X_CORE)
    np.testing.assert_allclose(top[0].data, 1 / (1 + np.exp(-X_CORE.astype(np.float64))), rtol=1e-6,
                               atol=1e-7)
    _, _, top = run('type: "TanH"', X_CORE)
    np.testing.assert_allclose(top[0].data, np.tanh(X_CORE.astype(np.float64)), rtol=1e-6,
                               atol=1e-7)


def test_sigmoid_saturates_without_overflow():
    x = np.array([[-1000.0, -90.0, 90.0, 1000.0]], np.float32)
    _, _, top = run('type: "Sigmoid"', x)
    np.testing.assert_allclose(top[0].data, [[0, 0, 1, 1]], atol=1e-30)
    assert np.isfinite(top[0].data).all()


@pytest.mark.parametrize("kind", ["Sigmoid", "TanH"])
def test_in_place_backward_uses_the_output(kind):
    layer, bottom, top = run(f'type: "{kind}"', X_CORE, in_place=True)
    y = top[0].data.copy()
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    expected = y * (1 - y) if kind == "Sigmoid" else 1 - y * y
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-6, atol=1e-7)


# --- PReLU ---------------------------------------------------------------------------------------
def test_prelu_default_slope_and_forward():
    layer, bottom, top = run('type: "PReLU"', X4)
    assert layer.blobs[0].shape == (3,)
    np.testing.assert_array_equal(layer.blobs[0].data, np.full(3, 0.25, np.float32))
    np.testing.assert_allclose(top[0].data, np.where(X4 > 0, X4, 0.25 * f64(X4)), rtol=1e-7)


def test_prelu_per_channel_forward_and_backward():
    layer = build_layer('type: "PReLU"')
    bottom, top = [blob_from(X4)], [Blob()]
    layer.setup(bottom, top)
    slope = np.array([0.1, -0.5, 2.0], np.float32)
    layer.blobs[0].data[...] = slope
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    a = slope.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(top[0].data, np.maximum(X4, 0) + a * np.minimum(X4, 0),
                               rtol=1e-6)
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    dx = grad(layer, bottom, top, dy)
    np.testing.assert_allclose(dx, dy * np.where(X4 > 0, 1, a), rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[0].diff,
                               (f64(dy) * X4 * (X4 <= 0)).sum(axis=(0, 2, 3)), rtol=1e-5)
    # The slope diff accumulates.
    grad(layer, bottom, top, dy)
    np.testing.assert_allclose(layer.blobs[0].diff,
                               2 * (f64(dy) * X4 * (X4 <= 0)).sum(axis=(0, 2, 3)), rtol=1e-5)


def test_prelu_channel_shared_has_a_scalar_slope():
    layer, bottom, top = run('type: "PReLU" prelu_param { channel_shared: true filler '
                             '{ type: "constant" value: -0.3 } }', X4)
    assert layer.blobs[0].shape == ()
    np.testing.assert_allclose(top[0].data, np.where(X4 > 0, X4, -0.3 * f64(X4)), rtol=1e-6)
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    grad(layer, bottom, top, dy)
    np.testing.assert_allclose(layer.blobs[0].diff, (f64(dy) * X4 * (X4 <= 0)).sum(), rtol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_prelu_in_place_uses_a_copy_of_the_input(shared):
    text = f'type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} }}'
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    out = []
    for in_place in (False, True):
        layer, bottom, top = run(text, X4, in_place=in_place)
        y = top[0].data.copy()
        dx = grad(layer, bottom, top, dy)
        out.append((y, dx, layer.blobs[0].diff.copy()))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_prelu_needs_two_axes():
    with pytest.raises(PyforgeError, match="2 axes"):
        run('type: "PReLU"', np.zeros(5, np.float32))


# --- ELU, AbsVal, BNLL ---------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_elu(alpha):
    layer, bottom, top = run(f'type: "ELU" elu_param {{ alpha: {alpha} }}', X)
    x = f64(X)
    expected = np.where(x > 0, x, alpha * (np.exp(x) - 1))
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad(layer, bottom, top, DY),
                               DY * np.where(x > 0, 1, alpha * np.exp(x)), rtol=1e-6, atol=1e-7)


def test_elu_in_place_is_exact():
    layer, bottom, top = run('type: "ELU" elu_param { alpha: 0.4 }', X, in_place=True)
    x = f64(X)
    np.testing.assert_allclose(grad(layer, bottom, top, DY),
                               DY * np.where(x > 0, 1, 0.4 * np.exp(x)), rtol=1e-6, atol=1e-7)


def test_absval():
    layer, bottom, top = run('type: "AbsVal"', X)
    np.testing.assert_array_equal(top[0].data, np.abs(X))
    dx = grad(layer, bottom, top, DY)
    np.testing.assert_array_equal(dx, DY * np.sign(X))
    assert dx[0, 3] == 0  # sign(0) = 0


def test_absval_refuses_in_place():
    with pytest.raises(PyforgeError, match="in place"):
        run('type: "AbsVal"', X, in_place=True)


def test_bnll_is_stable_for_large_inputs():
    x = np.array([[-200.0, -30.0, -1.0, 0.0, 1.0, 30.0, 200.0]], np.float32)
    layer, bottom, top = run('type: "BNLL"', x)
    # Caffe's formula, in double precision: x + log(1 + exp(-x)) for x > 0, else log(1 + exp(x)).
    xd = f64(x)
    expected = np.maximum(xd, 0) + np.log(1 + np.exp(-np.abs(xd)))
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(top[0].data, np.logaddexp(0, xd), rtol=3e-3, atol=1e-30)
    assert np.isfinite(top[0].data).all()
    dy = np.ones_like(x)
    # The derivative is the logistic function; exp() is clamped at 50, so it stays finite.
    dx = grad(layer, bottom, top, dy)
    np.testing.assert_allclose(dx, 1 / (1 + np.exp(-f64(x))), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize(("power", "scale", "shift"), [
    (0.37, 0.83, 8.0), (2.0, 0.34, -2.4), (2.0, 1.0, 0.0), (3.0, 0.5, 0.0), (-1.0, 0.5, 4.0),
    (1.0, -2.0, 0.5), (0.5, 2.0, 15.0)])
def test_power_forward_backward(power, scale, shift):
    text = f'type: "Power" power_param {{ power: {power} scale: {scale} shift: {shift} }}'
    x = X[:, [0, 1, 2, 4, 5]] if shift == 0 else X  # leave out x = 0 where y/x is 0/0
    layer, bottom, top = run(text, x)
    np.testing.assert_allclose(top[0].data, power_ref(x, power, scale, shift), rtol=2e-6)
    dy = RNG.standard_normal(x.shape).astype(np.float32)
    expected = dy * power * scale * (shift + scale * f64(x)) ** (power - 1)
    np.testing.assert_allclose(grad(layer, bottom, top, dy), expected, rtol=5e-6, atol=1e-6)


@pytest.mark.parametrize(("params", "value"), [
    ("power: 0 scale: 3 shift: 2", 1.0),  # power 0: the constant 1
    ("power: 3 scale: 0 shift: 2", 8.0),  # scale 0: the constant shift^power
    ("power: 0 scale: 0 shift: 0", 1.0),
])
def test_power_constant_cases_have_zero_gradient(params, value):
    layer, bottom, top = run(f'type: "Power" power_param {{ {params} }}', X)
    np.testing.assert_array_equal(top[0].data, np.full(X.shape, value, np.float32))
    np.testing.assert_array_equal(grad(layer, bottom, top, DY), 0)


def test_power_one_has_the_constant_gradient_scale():
    layer, bottom, top = run('type: "Power" power_param { power: 1 scale: -1.5 shift: 2 }', X)
    np.testing.assert_allclose(top[0].data, 2 - 1.5 * f64(X), rtol=1e-6)
    np.testing.assert_allclose(grad(layer, bottom, top, DY), -1.5 * f64(DY), rtol=1e-6)


def test_power_without_shift_divides_by_x():
    """Caffe computes power * y / x when shift is 0: 0/0 = NaN at x = 0."""
    layer, bottom, top = run('type: "Power" power_param { power: 2.5 }', np.array(
        [[0.0, 4.0]], np.float32))
    dx = grad(layer, bottom, top, np.ones((1, 2), np.float32))
    assert np.isnan(dx[0, 0])
    np.testing.assert_allclose(dx[0, 1], 2.5 * 4.0**1.5, rtol=1e-6)


def test_power_default_is_the_identity():
    layer, bottom, top = run('type: "Power"', X)
    np.testing.assert_array_equal(top[0].data, X)
    np.testing.assert_array_equal(grad(layer, bottom, top, DY), DY)


def test_power_in_place_computes_what_caffe_computes():
    """In place Caffe's Backward reads the overwritten input (for power 2, ``g = 2 y``) and
    writes ``g`` over the top diff before multiplying by it: the result is ``g * g``."""
    layer, bottom, top = run('type: "Power" power_param { power: 2 }', X, in_place=True)
    y = top[0].data.copy()
    np.testing.assert_allclose(grad(layer, bottom, top, DY), (2 * f64(y)) ** 2, rtol=1e-6)


# --- Exp and Log ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("base", "scale", "shift"), [
    (-1.0, 1.0, 0.0), (2.0, 0.5, 1.0), (-1.0, -0.7, 0.3), (10.0, 0.2, -1.0), (0.5, 1.0, 0.0)])
def test_exp(base, scale, shift):
    text = f'type: "Exp" exp_param {{ base: {base} scale: {scale} shift: {shift} }}'
    layer, bottom, top = run(text, X)
    b = np.e if base == -1 else base
    expected = b ** (shift + scale * f64(X))
    np.testing.assert_allclose(top[0].data, expected, rtol=2e-6)
    np.testing.assert_allclose(grad(layer, bottom, top, DY), DY * expected * np.log(b) * scale,
                               rtol=5e-6)


def test_exp_in_place_is_exact():
    layer, bottom, top = run('type: "Exp" exp_param { base: 3 scale: 0.5 }', X, in_place=True)
    expected = 3.0 ** (0.5 * f64(X))
    np.testing.assert_allclose(grad(layer, bottom, top, DY), DY * expected * np.log(3) * 0.5,
                               rtol=5e-6)


@pytest.mark.parametrize(("base", "scale", "shift"), [
    (-1.0, 1.0, 8.0), (2.0, 0.5, 4.0), (10.0, -1.0, 8.0), (-1.0, 2.0, 15.0), (0.5, 1.0, 9.0)])
def test_log(base, scale, shift):
    text = f'type: "Log" log_param {{ base: {base} scale: {scale} shift: {shift} }}'
    layer, bottom, top = run(text, X)
    b = np.e if base == -1 else base
    arg = shift + scale * f64(X)
    np.testing.assert_allclose(top[0].data, np.log(arg) / np.log(b), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(grad(layer, bottom, top, DY), DY * scale / (np.log(b) * arg),
                               rtol=5e-6)


def test_log_of_a_positive_input_with_base_e():
    x = np.abs(X) + 0.5
    layer, bottom, top = run('type: "Log"', x)
    np.testing.assert_allclose(top[0].data, np.log(f64(x)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad(layer, bottom, top, DY), DY / f64(x), rtol=1e-6)


@pytest.mark.parametrize("text", [
    'type: "Exp" exp_param { base: 0 }', 'type: "Exp" exp_param { base: -2 }',
    'type: "Log" log_param { base: -0.5 }', 'type: "Log" log_param { base: 1 }'])
def test_exp_and_log_refuse_bad_bases(text):
    with pytest.raises(PyforgeError, match="base"):
        run(text, X)


# --- Threshold and Clip --------------------------------------------------------------------------
def test_threshold_boundary_is_exclusive():
    x = np.array([[-1.0, 0.0, 1e-7, 0.5, 0.5000001, 2.0]], np.float32)
    _, _, top = run('type: "Threshold"', x)
    np.testing.assert_array_equal(top[0].data, [[0, 0, 1, 1, 1, 1]])
    _, _, top = run('type: "Threshold" threshold_param { threshold: 0.5 }', x)
    np.testing.assert_array_equal(top[0].data, [[0, 0, 0, 0, 1, 1]])


def test_threshold_in_place():
    _, _, top = run('type: "Threshold" threshold_param { threshold: -0.5 }', X, in_place=True)
    np.testing.assert_array_equal(top[0].data, (X > -0.5).astype(np.float32))


def test_clip_forward_and_boundaries():
    x = np.array([[-2.0, -1.0, -0.999, 0.0, 0.5, 0.999, 1.0, 3.0]], np.float32)
    layer, bottom, top = run('type: "Clip" clip_param { min: -1 max: 1 }', x)
    np.testing.assert_array_equal(top[0].data, np.clip(x, -1, 1))
    dx = grad(layer, bottom, top, np.full(x.shape, 3.0, np.float32))
    # Caffe's Backward passes the gradient for min <= x <= max: the bounds count as inside.
    np.testing.assert_array_equal(dx, [[0, 3, 3, 3, 3, 3, 3, 0]])


def test_clip_in_place_passes_every_gradient_as_caffe_does():
    """In place the clipped output is read back, and it always lies within the bounds."""
    x = np.array([[-2.0, 0.0, 3.0]], np.float32)
    layer, bottom, top = run('type: "Clip" clip_param { min: -1 max: 1 }', x, in_place=True)
    np.testing.assert_array_equal(grad(layer, bottom, top, np.ones((1, 3), np.float32)), 1)


@pytest.mark.parametrize("text", ['type: "Clip"', 'type: "Clip" clip_param { }'])
def test_clip_needs_min_and_max(text):
    with pytest.raises(PyforgeError, match="min"):
        run(text, X)


# --- Swish ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("beta", "in_place"), [(1.0, False), (1.7, False), (0.6, True)])
def test_swish(beta, in_place):
    layer, bottom, top = run(f'type: "Swish" swish_param {{ beta: {beta} }}', X,
                             in_place=in_place)
    x = f64(X)
    sig = 1 / (1 + np.exp(-beta * x))
    # (Caffe's sigmoid, 0.5 * tanh(0.5 z) + 0.5, loses relative precision for z << 0.)
    np.testing.assert_allclose(top[0].data, x * sig, rtol=1e-6, atol=1e-6)
    expected = DY * (sig + beta * x * sig * (1 - sig))
    np.testing.assert_allclose(grad(layer, bottom, top, DY), expected, rtol=2e-6, atol=1e-6)


def test_swish_saturates_without_overflow():
    x = np.array([[-1000.0, -90.0, 90.0, 1000.0]], np.float32)
    layer, bottom, top = run('type: "Swish"', x)
    np.testing.assert_allclose(top[0].data, [[0, 0, 90, 1000]], atol=1e-30)
    dx = grad(layer, bottom, top, np.ones_like(x))
    np.testing.assert_allclose(dx, [[0, 0, 1, 1]], atol=1e-30)


# --- ReLU6 (MobileNet-SSD fork) ------------------------------------------------------------------
@pytest.mark.parametrize("in_place", [False, True])
def test_relu6_clips_at_0_and_6_and_passes_the_gradient_inside(in_place):
    x = np.array([[-3.0, -1e-3, 0.0, 1e-3, 2.5, 5.999, 6.0, 6.001, 40.0]], np.float32)
    layer, bottom, top = run('type: "ReLU6" bottom: "x" top: "y"', x, in_place=in_place)
    np.testing.assert_array_equal(top[0].data, np.clip(x, 0, 6))
    top[0].diff[...] = 5
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [[0, 0, 0, 5, 5, 5, 0, 0, 0]])


def test_relu6_negative_slope_of_the_addon_forks():
    x = np.array([[-4.0, -0.5, 0.0, 3.0, 9.0]], np.float32)
    layer, bottom, top = run('type: "ReLU6" bottom: "x" top: "y" '
                             "relu6_param { negative_slope: 0.1 }", x)
    np.testing.assert_allclose(top[0].data, [[-0.4, -0.05, 0.0, 3.0, 6.0]], rtol=1e-6)
    top[0].diff[...] = 2
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, [[0.2, 0.2, 0.2, 2.0, 0.0]], rtol=1e-6)
