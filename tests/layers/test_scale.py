"""Scale and Bias."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import TEST, blob_from, build_layer
from tests.layers.util import backward_top0, f64, run

RNG = np.random.default_rng(20261125)


X4 = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)


def batch_stats(x):
    axes = (0,) + tuple(range(2, x.ndim))
    return f64(x).mean(axis=axes), f64(x).var(axis=axes)


# --- Scale and Bias ------------------------------------------------------------------------------
def _scale_blob(layer):
    return layer.blobs[0].data


def test_batch_norm_stores_unbiased_variance_and_scale_factor_after_n_forwards():
    maf, n_batches = 0.9, 4
    layer = build_layer(f'type: "BatchNorm" batch_norm_param {{ moving_average_fraction: {maf} }}')
    batches = [RNG.standard_normal((3, 2, 2, 3)).astype(np.float32) + i for i in range(n_batches)]
    bottom, top = [blob_from(batches[0])], [Blob()]
    layer.setup(bottom, top)
    for x in batches:
        bottom[0].data[...] = x
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
    m = 3 * 2 * 3  # count / channels
    expect_s = sum(maf**k for k in range(n_batches))
    expect_mean = sum(maf ** (n_batches - 1 - i) * batch_stats(x)[0]
                      for i, x in enumerate(batches))
    expect_var = sum(maf ** (n_batches - 1 - i) * batch_stats(x)[1] * m / (m - 1)
                     for i, x in enumerate(batches))
    mean_sum, var_sum, s = (b.data for b in layer.blobs)
    assert s.shape == (1,) and mean_sum.shape == (2,) and var_sum.shape == (2,)
    np.testing.assert_allclose(s[0], expect_s, rtol=1e-6)
    np.testing.assert_allclose(mean_sum, expect_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var_sum, expect_var, rtol=1e-5)


def test_batch_norm_zero_scale_factor_means_zero_statistics():
    layer = build_layer('type: "BatchNorm" batch_norm_param { eps: 0.04 }', TEST)
    bottom, top = [blob_from(X4)], [Blob()]
    layer.setup(bottom, top)
    layer.blobs[0].data[...] = 7  # ignored: s == 0 gives the factor 0, not a division by 0
    layer.blobs[1].data[...] = 9
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, X4 / np.float32(0.2), rtol=1e-6)


@pytest.mark.parametrize(("extra", "shape"), [
    ("", (3,)), ("axis: 0", (2,)), ("num_axes: 2", (3, 4)), ("num_axes: -1", (3, 4, 5)),
    ("num_axes: 0", ()), ("axis: -1", (5,)), ("axis: 2 num_axes: 2", (4, 5)),
])
def test_scale_learned_blob_shape_and_forward(extra, shape):
    text = f'type: "Scale" scale_param {{ {extra} filler {{ type: "gaussian" std: 1 }} }}'
    layer, _, top = run(text, X4)
    s = _scale_blob(layer)
    assert s.shape == shape
    axis = {"axis: 0": 0, "axis: -1": 3}.get(extra, 2 if "axis: 2" in extra else 1)
    if shape == ():
        axis = 0
    expanded = s.reshape((1,) * axis + shape + (1,) * (4 - axis - len(shape)))
    np.testing.assert_allclose(top[0].data, f64(X4) * expanded, rtol=1e-6)


def test_scale_default_fillers_are_the_identity():
    layer, _, top = run('type: "Scale" scale_param { bias_term: true }', X4)
    assert len(layer.blobs) == 2
    np.testing.assert_array_equal(layer.blobs[0].data, np.ones(3))
    np.testing.assert_array_equal(layer.blobs[1].data, np.zeros(3))
    np.testing.assert_array_equal(top[0].data, X4)


def test_scale_with_bias_forward_and_backward():
    text = ('type: "Scale" scale_param { bias_term: true filler { type: "gaussian" std: 1 } '
            'bias_filler { type: "gaussian" std: 1 } }')
    layer, bottom, top = run(text, X4)
    s = layer.blobs[0].data.reshape(1, 3, 1, 1)
    b = layer.blobs[1].data.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(top[0].data, f64(X4) * s + b, rtol=1e-6, atol=1e-7)
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    backward_top0(layer, top, bottom, dy)
    np.testing.assert_allclose(bottom[0].diff, f64(dy) * s, rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[0].diff, (f64(dy) * X4).sum(axis=(0, 2, 3)),
                               rtol=1e-5)
    np.testing.assert_allclose(layer.blobs[1].diff, f64(dy).sum(axis=(0, 2, 3)), rtol=1e-5)
    # Parameter diffs accumulate.
    backward_top0(layer, top, bottom, dy)
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * f64(dy).sum(axis=(0, 2, 3)), rtol=1e-5)


def test_scale_two_bottoms():
    s = RNG.standard_normal((3, 4)).astype(np.float32)
    layer, bottom, top = run('type: "Scale" scale_param { bias_term: true }', X4, s)
    assert [b.shape for b in layer.blobs] == [(3, 4)]  # only the bias is learned
    np.testing.assert_allclose(top[0].data, f64(X4) * s[None, :, :, None], rtol=1e-6)
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    bottom[1].diff[...] = 5
    backward_top0(layer, top, bottom, dy)
    # A bottom's diff is overwritten, not accumulated.
    np.testing.assert_allclose(bottom[1].diff, (f64(dy) * X4).sum(axis=(0, 3)), rtol=1e-5)
    np.testing.assert_allclose(bottom[0].diff, f64(dy) * s[None, :, :, None], rtol=1e-6)


def test_scale_in_place_keeps_the_input_for_backward():
    text = 'type: "Scale" scale_param { filler { type: "gaussian" std: 1 } }'
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    diffs = []
    for in_place in (False, True):
        layer, bottom, top = run(text, X4, in_place=in_place)
        backward_top0(layer, top, bottom, dy)
        diffs.append((layer.blobs[0].diff.copy(), bottom[0].diff.copy()))
    np.testing.assert_array_equal(diffs[0][0], diffs[1][0])
    np.testing.assert_array_equal(diffs[0][1], diffs[1][1])


@pytest.mark.parametrize(("text", "bottoms", "message"), [
    ('type: "Scale" scale_param { axis: 2 num_axes: 3 }', (X4,), "extends past"),
    ('type: "Scale" scale_param { num_axes: -2 }', (X4,), "num_axes"),
    ('type: "Scale" scale_param { axis: 4 }', (X4,), "out of range"),
    ('type: "Scale"', (X4, np.zeros(4, np.float32)), "does not match"),
    ('type: "Bias"', (X4, np.zeros((3, 5), np.float32)), "does not match"),
    ('type: "Bias" bias_param { axis: 1 num_axes: 4 }', (X4,), "extends past"),
])
def test_scale_and_bias_shape_errors(text, bottoms, message):
    with pytest.raises(PyforgeError, match=message):
        run(text, *bottoms)


@pytest.mark.parametrize(("extra", "shape"), [
    ("", (3,)), ("axis: 0 num_axes: 2", (2, 3)), ("num_axes: 0", ()), ("num_axes: -1", (3, 4, 5)),
])
def test_bias_forward_backward(extra, shape):
    text = f'type: "Bias" bias_param {{ {extra} filler {{ type: "gaussian" std: 1 }} }}'
    layer, bottom, top = run(text, X4)
    b = layer.blobs[0].data
    assert b.shape == shape
    axis = 0 if (shape == () or "axis: 0" in extra) else 1
    expanded = b.reshape((1,) * axis + shape + (1,) * (4 - axis - len(shape)))
    np.testing.assert_allclose(top[0].data, f64(X4) + expanded, rtol=1e-6, atol=1e-7)
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    backward_top0(layer, top, bottom, dy)
    np.testing.assert_array_equal(bottom[0].diff, dy)
    summed = tuple(i for i in range(4) if not axis <= i < axis + len(shape))
    np.testing.assert_allclose(layer.blobs[0].diff, f64(dy).sum(axis=summed), rtol=1e-5,
                               atol=1e-6)


def test_bias_default_filler_is_zero_and_two_bottoms_work():
    layer, _, top = run('type: "Bias"', X4)
    np.testing.assert_array_equal(layer.blobs[0].data, np.zeros(3))
    np.testing.assert_array_equal(top[0].data, X4)
    b = RNG.standard_normal(3).astype(np.float32)
    layer, bottom, top = run('type: "Bias"', X4, b)
    assert layer.blobs == []
    np.testing.assert_allclose(top[0].data, f64(X4) + b.reshape(1, 3, 1, 1), rtol=1e-6)
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    backward_top0(layer, top, bottom, dy)
    np.testing.assert_allclose(bottom[1].diff, f64(dy).sum(axis=(0, 2, 3)), rtol=1e-5)
