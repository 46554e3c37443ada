"""ReLU, Sigmoid, TanH and Dropout: forward values, in-place use, Dropout's phases."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import TEST, TRAIN, blob_from, build_layer, setup_forward

X = np.array([[-2.0, -0.5, 0.0, 0.25, 3.0], [1e-3, -1e-3, 10.0, -10.0, 0.5]], np.float32)


def run(text: str, x, phase=TRAIN, in_place=False, seed=1701):
    layer = build_layer(text, phase, seed=seed)
    bottom = [blob_from(x)]
    top = bottom if in_place else [Blob()]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("slope", [0.0, 0.1, -0.5])
def test_relu_forward_backward(slope, in_place):
    text = f'type: "ReLU" bottom: "x" top: "y" relu_param {{ negative_slope: {slope} }}'
    layer, bottom, top = run(text, X, in_place=in_place)
    expected = np.maximum(X, 0) + np.float32(slope) * np.minimum(X, 0)
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-6)
    dy = np.arange(X.size, dtype=np.float32).reshape(X.shape) + 1
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    # Caffe: dy * ((x > 0) + slope * (x <= 0)); x = 0 takes the slope.
    grad = dy * np.where(X > 0, 1.0, np.float32(slope))
    if in_place and slope < 0:
        # In place the mask is read from the output, whose sign flips with a negative slope
        # (Caffe has the same limitation): negative inputs look positive.
        grad = dy * np.where((X > 0) | (X < 0), 1.0, np.float32(slope))
    np.testing.assert_allclose(bottom[0].diff, grad, rtol=1e-6)


def test_relu_zero_input_gets_the_slope_gradient():
    layer, bottom, top = run('type: "ReLU" relu_param { negative_slope: 0.25 }',
                             np.zeros((1, 3), np.float32))
    top[0].diff[...] = 4
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.ones((1, 3)))


def test_sigmoid_and_tanh_values():
    _, _, top = run('type: "Sigmoid"', X)
    np.testing.assert_allclose(top[0].data, 1 / (1 + np.exp(-X.astype(np.float64))), rtol=1e-6,
                               atol=1e-7)
    _, _, top = run('type: "TanH"', X)
    np.testing.assert_allclose(top[0].data, np.tanh(X.astype(np.float64)), rtol=1e-6,
                               atol=1e-7)


def test_sigmoid_saturates_without_overflow():
    x = np.array([[-1000.0, -90.0, 90.0, 1000.0]], np.float32)
    _, _, top = run('type: "Sigmoid"', x)
    np.testing.assert_allclose(top[0].data, [[0, 0, 1, 1]], atol=1e-30)
    assert np.isfinite(top[0].data).all()


@pytest.mark.parametrize("kind", ["Sigmoid", "TanH"])
def test_in_place_backward_uses_the_output(kind):
    layer, bottom, top = run(f'type: "{kind}"', X, in_place=True)
    y = top[0].data.copy()
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    expected = y * (1 - y) if kind == "Sigmoid" else 1 - y * y
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-6, atol=1e-7)


# --- Dropout --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.5, 0.2, 0.8])
def test_dropout_train_scales_kept_units(ratio):
    x = np.random.default_rng(0).uniform(1, 2, (64, 100)).astype(np.float32)
    layer, bottom, top = run(f'type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}', x)
    y = top[0].data
    kept = y != 0
    scale = np.float32(1.0) / np.float32(1.0 - np.float32(ratio))
    np.testing.assert_allclose(y[kept], x[kept] * scale, rtol=1e-6)
    # Each unit is kept with probability 1 - ratio.
    n = x.size
    assert abs(kept.mean() - (1 - ratio)) < 4 * np.sqrt(ratio * (1 - ratio) / n)
    # Backward applies the same mask and scale.
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, np.where(kept, scale, 0), rtol=1e-6)


def test_dropout_default_ratio_is_half():
    layer, _, top = run('type: "Dropout"', np.ones((100, 100), np.float32))
    assert set(np.unique(top[0].data)) == {0.0, 2.0}
    assert abs((top[0].data == 2).mean() - 0.5) < 0.02


def test_dropout_draws_a_new_mask_every_forward():
    layer, bottom, top = run('type: "Dropout"', np.ones((10, 10), np.float32))
    first = top[0].data.copy()
    layer.forward(bottom, top)
    assert not np.array_equal(first, top[0].data)


def test_dropout_same_seed_same_mask():
    a = run('type: "Dropout"', np.ones((10, 10), np.float32), seed=5)[2][0].data
    b = run('type: "Dropout"', np.ones((10, 10), np.float32), seed=5)[2][0].data
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("in_place", [False, True])
def test_dropout_test_phase_is_identity(in_place):
    layer, bottom, top = run('type: "Dropout" dropout_param { dropout_ratio: 0.7 }', X, TEST,
                             in_place=in_place)
    np.testing.assert_array_equal(top[0].data, X)
    top[0].diff[...] = 3
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.full(X.shape, 3))


def test_dropout_in_place_train():
    x = np.ones((20, 20), np.float32)
    layer, bottom, top = run('type: "Dropout"', x, in_place=True)
    assert top[0] is bottom[0]
    assert set(np.unique(bottom[0].data)) == {0.0, 2.0}


def test_dropout_ratio_zero_is_identity_in_train():
    _, _, top = run('type: "Dropout" dropout_param { dropout_ratio: 0 }', X)
    np.testing.assert_array_equal(top[0].data, X)


def test_dropout_ratio_one_is_rejected():
    with pytest.raises(PyforgeError, match="dropout_ratio"):
        run('type: "Dropout" dropout_param { dropout_ratio: 1 }', X)
