"""Dropout."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.errors import PyforgeError
from tests.gradient_check import TEST
from tests.layers.util import run

X = np.array([[-2.0, -0.5, 0.0, 0.25, 3.0], [1e-3, -1e-3, 10.0, -10.0, 0.5]], np.float32)


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
    layer, bottom, top = run('type: "Dropout" dropout_param { dropout_ratio: 0.7 }', X, phase=TEST,
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


# --- the forks' fields ----------------------------------------------------------------------------
def test_scale_train_false_keeps_units_unscaled_in_train_and_scales_at_test():
    x = np.random.default_rng(0).uniform(1, 2, (40, 50)).astype(np.float32)
    text = 'type: "Dropout" dropout_param { dropout_ratio: 0.3 scale_train: false }'
    layer, bottom, top = run(text, x)
    kept = top[0].data != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_array_equal(top[0].data[kept], x[kept])
    top[0].diff[...] = 2
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.where(kept, 2, 0))
    layer, bottom, top = run(text, x, phase=TEST)
    np.testing.assert_allclose(top[0].data, x * np.float32(0.7), rtol=1e-7)
    top[0].diff[...] = 2
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, np.full(x.shape, 1.4), rtol=1e-6)


def test_sample_weights_test_drops_at_test_with_a_new_mask_each_pass():
    x = np.ones((40, 50), np.float32)
    layer, bottom, top = run('type: "Dropout" dropout_param { sample_weights_test: true }', x,
                             phase=TEST)
    first = top[0].data.copy()
    assert set(np.unique(first)) == {0.0, 2.0}
    layer.forward(bottom, top)
    assert not np.array_equal(first, top[0].data)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, top[0].data)
