"""BatchNorm, LRN and MVN."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto
from tests.gradient_check import TEST, TRAIN, blob_from, build_layer
from tests.layers.util import backward_top0, f64, run

RNG = np.random.default_rng(20261125)


X4 = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)


# --- BatchNorm -----------------------------------------------------------------------------------
def bn_reference(x, mean, var, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (f64(x) - f64(mean).reshape(shape)) / np.sqrt(f64(var).reshape(shape) + eps)


def batch_stats(x):
    axes = (0,) + tuple(range(2, x.ndim))
    return f64(x).mean(axis=axes), f64(x).var(axis=axes)


NET = """
name: "bn"
layer { name: "data" type: "Input" top: "data" top: "target"
        input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"""


# --- LRN -----------------------------------------------------------------------------------------
def lrn_across_reference(x, n, alpha, beta, k):
    x = f64(x)
    sq = np.pad(x * x, ((0, 0), ((n - 1) // 2, (n - 1) // 2), (0, 0), (0, 0)))
    channels = x.shape[1]
    window = np.stack([sq[:, c:c + n].sum(axis=1) for c in range(channels)], axis=1)
    scale = k + alpha / n * window
    return x * scale**-beta, scale


def lrn_within_reference(x, n, alpha, beta):
    """The direct formula ``x * (1 + alpha/n^2 * sum over the n x n window of x^2)^-beta``,
    zero outside the image, dividing by n^2 even at the borders (Caffe's padded pool size)."""
    x = f64(x)
    pad = (n - 1) // 2
    sq = np.pad(x * x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h, w = x.shape[2:]
    total = sum(sq[:, :, i:i + h, j:j + w] for i in range(n) for j in range(n))
    return x * (1 + alpha / n**2 * total) ** -beta


# --- MVN -----------------------------------------------------------------------------------------
def mvn_reference(x, normalize_variance=True, across_channels=False, eps=1e-9):
    x4 = f64(x).reshape(x.shape + (1,) * (4 - x.ndim))
    axes = (1, 2, 3) if across_channels else (2, 3)
    centred = x4 - x4.mean(axis=axes, keepdims=True)
    if not normalize_variance:
        return centred
    # Caffe adds eps to the standard deviation.
    return centred / (np.sqrt((centred**2).mean(axis=axes, keepdims=True)) + eps)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (6, 4), (3, 2, 7)])
def test_batch_norm_train_forward_uses_batch_statistics(shape):
    x = RNG.standard_normal(shape).astype(np.float32) * 3 + 1
    _, _, top = run('type: "BatchNorm"', x)
    mean, var = batch_stats(x)
    np.testing.assert_allclose(top[0].data, bn_reference(x, mean, var, 1e-5), rtol=1e-4,
                               atol=1e-5)


def test_batch_norm_blobs_start_at_zero():
    layer, _, _ = run('type: "BatchNorm"', X4, phase=TEST)
    assert [b.shape for b in layer.blobs] == [(3,), (3,), (1,)]
    assert all((b.data == 0).all() for b in layer.blobs)


def test_batch_norm_global_stats_in_test_phase():
    layer = build_layer('type: "BatchNorm" batch_norm_param { eps: 0.01 }', TEST)
    bottom, top = [blob_from(X4)], [Blob()]
    layer.setup(bottom, top)
    mean_sum = np.array([0.5, -1.0, 2.0], np.float32)
    var_sum = np.array([4.0, 1.0, 0.25], np.float32)
    s = np.float32(2.5)
    layer.blobs[0].data[...] = mean_sum
    layer.blobs[1].data[...] = var_sum
    layer.blobs[2].data[...] = s
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, bn_reference(X4, mean_sum / s, var_sum / s, 0.01),
                               rtol=1e-5, atol=1e-6)
    # Global statistics are read, never updated.
    np.testing.assert_array_equal(layer.blobs[2].data, [s])
    np.testing.assert_array_equal(layer.blobs[0].data, mean_sum)
    # Backward treats them as constants: dx = dy / sqrt(var + eps).
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    backward_top0(layer, top, bottom, dy)
    np.testing.assert_allclose(bottom[0].diff,
                               f64(dy) / np.sqrt(f64(var_sum / s) + 0.01).reshape(1, 3, 1, 1),
                               rtol=1e-5)


@pytest.mark.parametrize(("phase", "flag", "global_stats"), [
    (TRAIN, None, False), (TEST, None, True), (TRAIN, True, True), (TEST, False, False)])
def test_batch_norm_use_global_stats_defaults_to_the_phase(phase, flag, global_stats):
    extra = "" if flag is None else f"use_global_stats: {str(flag).lower()}"
    layer, _, _ = run(f'type: "BatchNorm" batch_norm_param {{ {extra} }}', X4, phase=phase)
    assert layer.use_global_stats is global_stats
    # Only batch statistics update the running sums.
    assert layer.blobs[2].data[0] == (0 if global_stats else 1)


def test_batch_norm_train_backward_matches_the_formula():
    layer, bottom, top = run('type: "BatchNorm" batch_norm_param { eps: 0.001 }', X4)
    y = f64(top[0].data)
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    backward_top0(layer, top, bottom, dy)
    _, var = batch_stats(X4)
    axes = (0, 2, 3)
    g = f64(dy)
    expected = (g - g.mean(axis=axes, keepdims=True)
                - (g * y).mean(axis=axes, keepdims=True) * y) / np.sqrt(
        var.reshape(1, 3, 1, 1) + 0.001)
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-4, atol=1e-5)


def test_batch_norm_in_place_equals_out_of_place():
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    results = []
    for in_place in (False, True):
        layer, bottom, top = run('type: "BatchNorm"', X4, in_place=in_place)
        y = top[0].data.copy()
        backward_top0(layer, top, bottom, dy)
        results.append((y, bottom[0].diff.copy(), [b.data.copy() for b in layer.blobs]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    for a, b in zip(results[0][2], results[1][2]):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_adds_lr_mult_zero_param_specs():
    layer, _, _ = run('type: "BatchNorm"', X4)
    specs = list(layer.param.param)
    assert len(specs) == 3
    assert all(s.HasField("lr_mult") and s.lr_mult == 0 for s in specs)
    assert layer.param_propagate_down == [False, False, False]


def test_batch_norm_keeps_given_zero_lr_mult_and_completes_the_rest():
    layer, _, _ = run('type: "BatchNorm" param { lr_mult: 0 decay_mult: 0 }', X4)
    specs = list(layer.param.param)
    assert [s.lr_mult for s in specs] == [0, 0, 0]
    assert specs[0].decay_mult == 0 and not specs[1].HasField("decay_mult")


@pytest.mark.parametrize("params", ["param { lr_mult: 1 }", "param { lr_mult: 0 } param { }"])
def test_batch_norm_refuses_learnable_statistics(params):
    with pytest.raises(PyforgeError, match="lr_mult"):
        run(f'type: "BatchNorm" {params}', X4)


def test_batch_norm_shape_errors():
    with pytest.raises(PyforgeError, match="at least 2 axes"):
        run('type: "BatchNorm"', np.zeros(4, np.float32))
    layer, bottom, top = run('type: "BatchNorm"', X4)
    bottom[0].reshape((2, 4, 4, 5))
    with pytest.raises(PyforgeError, match="3 channels"):
        layer.reshape(bottom, top)


def test_batch_norm_in_a_net_has_lr_mult_zero_and_saves_its_param_specs():
    param = parse_text_proto(NET, caffe_pb2.NetParameter(), "<bn net>")
    param.state.phase = TRAIN
    net = Net(param, np.random.default_rng(1))
    bn = [p for p in net.learnable if p.layer == "bn"]
    assert [p.lr_mult for p in bn] == [0, 0, 0]
    scale = [p for p in net.learnable if p.layer == "scale"]
    assert [p.lr_mult for p in scale] == [1, 1] and scale[0].blob.shape == (4,)
    net.blobs["data"].data[...] = RNG.standard_normal((2, 3, 4, 4))
    net.forward_backward()
    assert np.abs(net.layer_by_name("scale").blobs[0].diff).sum() > 0
    # Every forward in TRAIN updates the statistics; the saved layer keeps the added specs.
    assert net.layer_by_name("bn").blobs[2].data[0] == 1
    saved = [lp for lp in net.to_proto().layer if lp.name == "bn"][0]
    assert [s.lr_mult for s in saved.param] == [0, 0, 0] and len(saved.blobs) == 3


@pytest.mark.parametrize(("n", "alpha", "beta", "k"), [
    (5, 1.0, 0.75, 1.0), (3, 0.5, 0.6, 2.0), (1, 2.0, 1.0, 1.0), (7, 1e-4, 0.75, 1.0)])
def test_lrn_across_channels_forward(n, alpha, beta, k):
    x = RNG.standard_normal((2, 6, 3, 4)).astype(np.float32)
    text = f'type: "LRN" lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} k: {k} }}'
    layer, _, top = run(text, x)
    expected, scale = lrn_across_reference(x, n, alpha, beta, k)
    np.testing.assert_allclose(top[0].data, expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(layer.state[0].reshape(x.shape), scale, rtol=2e-5)


def test_lrn_across_channels_backward():
    n, alpha, beta, k = 3, 0.7, 0.75, 1.5
    x = RNG.standard_normal((2, 5, 2, 3)).astype(np.float32)
    text = f'type: "LRN" lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} k: {k} }}'
    layer, bottom, top = run(text, x)
    dy = RNG.standard_normal(x.shape).astype(np.float32)
    backward_top0(layer, top, bottom, dy)
    y, scale = lrn_across_reference(x, n, alpha, beta, k)
    ratio = np.pad(f64(dy) * y / scale, ((0, 0), (1, 1), (0, 0), (0, 0)))
    window = np.stack([ratio[:, c:c + n].sum(axis=1) for c in range(5)], axis=1)
    expected = dy * scale**-beta - 2 * alpha * beta / n * f64(x) * window
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("n", "alpha", "beta"), [(3, 1.0, 0.75), (5, 2.0, 0.5), (1, 0.3, 1.2)])
def test_lrn_within_channel_forward(n, alpha, beta):
    x = RNG.standard_normal((2, 2, 5, 6)).astype(np.float32)
    text = (f'type: "LRN" lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} '
            "norm_region: WITHIN_CHANNEL }")
    _, _, top = run(text, x)
    np.testing.assert_allclose(top[0].data, lrn_within_reference(x, n, alpha, beta),
                               rtol=2e-5, atol=1e-6)


def test_lrn_within_channel_ignores_k():
    x = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    base = 'type: "LRN" lrn_param { local_size: 3 alpha: 2 norm_region: WITHIN_CHANNEL'
    _, _, a = run(base + " }", x)
    _, _, b = run(base + " k: 9 }", x)
    np.testing.assert_array_equal(a[0].data, b[0].data)


def test_lrn_within_channel_backward():
    n, alpha, beta = 3, 1.5, 0.75
    x = RNG.standard_normal((1, 2, 4, 5)).astype(np.float32)
    text = (f'type: "LRN" lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} '
            "norm_region: WITHIN_CHANNEL }")
    layer, bottom, top = run(text, x)
    dy = RNG.standard_normal(x.shape).astype(np.float32)
    backward_top0(layer, top, bottom, dy)
    xd = f64(x)
    pad = 1
    h, w = x.shape[2:]

    def box(a):
        p = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        return sum(p[:, :, i:i + h, j:j + w] for i in range(n) for j in range(n))

    s = 1 + alpha / n**2 * box(xd * xd)
    expected = dy * s**-beta + 2 * xd * box(dy * xd * -beta * alpha * s ** (-beta - 1)) / n**2
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("text", "x", "message"), [
    ('type: "LRN" lrn_param { local_size: 4 }', X4, "odd"),
    ('type: "LRN" lrn_param { local_size: 0 }', X4, "odd"),
    ('type: "LRN"', X4[0], "4 axes"),
])
def test_lrn_errors(text, x, message):
    with pytest.raises(PyforgeError, match=message):
        run(text, x)


def test_lrn_refuses_in_place():
    with pytest.raises(PyforgeError, match="in place"):
        run('type: "LRN"', X4, in_place=True)


@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("variance", [False, True])
def test_mvn_forward(variance, across):
    text = (f'type: "MVN" mvn_param {{ normalize_variance: {str(variance).lower()} '
            f"across_channels: {str(across).lower()} }}")
    _, _, top = run(text, X4 * 3 + 2)
    np.testing.assert_allclose(top[0].data, mvn_reference(X4 * 3 + 2, variance, across),
                               rtol=1e-5, atol=1e-5)


def test_mvn_adds_eps_to_the_standard_deviation():
    x = RNG.standard_normal((2, 3, 2, 2)).astype(np.float32)
    _, _, top = run('type: "MVN" mvn_param { eps: 0.5 }', x)
    np.testing.assert_allclose(top[0].data, mvn_reference(x, eps=0.5), rtol=1e-5, atol=1e-6)


def test_mvn_backward_is_caffes_formula():
    """dx = (dy - mean(dy) - mean(dy * y) * y) / (std + eps): with a large eps this is not the
    true gradient of the forward, but it is what Caffe computes."""
    eps = 0.3
    x = RNG.standard_normal((2, 3, 2, 2)).astype(np.float32)
    layer, bottom, top = run(f'type: "MVN" mvn_param {{ eps: {eps} }}', x)
    dy = RNG.standard_normal(x.shape).astype(np.float32)
    backward_top0(layer, top, bottom, dy)
    y = mvn_reference(x, eps=eps)
    g = f64(dy)
    centred = f64(x) - f64(x).mean(axis=(2, 3), keepdims=True)
    std = np.sqrt((centred**2).mean(axis=(2, 3), keepdims=True)) + eps
    expected = (g - g.mean(axis=(2, 3), keepdims=True)
                - (g * y).mean(axis=(2, 3), keepdims=True) * y) / std
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-5, atol=1e-6)


def test_mvn_mean_only_backward_subtracts_the_mean_diff():
    layer, bottom, top = run('type: "MVN" mvn_param { normalize_variance: false }', X4)
    dy = RNG.standard_normal(X4.shape).astype(np.float32)
    backward_top0(layer, top, bottom, dy)
    np.testing.assert_allclose(bottom[0].diff, dy - f64(dy).mean(axis=(2, 3), keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_mvn_gives_a_2_axis_bottom_a_legacy_4_axis_top():
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    _, _, top = run('type: "MVN"', x)
    assert top[0].shape == (3, 5, 1, 1)
    # Each (item, channel) has one value: its mean is itself, so everything becomes 0.
    np.testing.assert_array_equal(top[0].data, 0)
    _, _, top = run('type: "MVN" mvn_param { across_channels: true }', x)
    np.testing.assert_allclose(top[0].data, mvn_reference(x, across_channels=True), rtol=1e-5,
                               atol=1e-6)


def test_mvn_refuses_more_than_4_axes():
    with pytest.raises(PyforgeError, match="at most 4 axes"):
        run('type: "MVN"', np.zeros((1, 2, 2, 2, 2), np.float32))
