"""BatchNorm, LRN, MVN, and the forks' BN (PSPNet, SegNet) and Normalize (SSD)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import NetError, PyforgeError
from pyforge.layers.ufunc_parts import MIN_PART
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto
from tests.gradient_check import TEST, TRAIN, blob_from, build_layer, setup_forward
from tests.layers.util import backward_top0, f64, rand, run
from tests.reference import forks as ref

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


F = np.float32


PSP = ('slope_filler { type: "gaussian" std: 0.5 mean: 1 } '
       'bias_filler { type: "gaussian" std: 0.5 }')


SEG = ('scale_filler { type: "gaussian" std: 0.5 mean: 1 } '
       'shift_filler { type: "gaussian" std: 0.5 }')


def bn(params: str, x, phase=TRAIN, tops: int = 1):
    names = " ".join(f'top: "t{i}"' for i in range(tops))
    layer = build_layer(f'name: "bn" type: "BN" bottom: "x" {names} bn_param {{ {params} }}',
                        phase)
    bottom, top = [blob_from(x)], [Blob() for _ in range(tops)]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def channels(blob: Blob) -> np.ndarray:
    return blob.data.reshape(-1)


def data(seed: int = 0, shape=(3, 4, 5, 6)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 2 + 1).astype(F)


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


def test_lrn_powers_on_several_threads_give_the_bits_of_one_pass():
    """The powers run on equal parts of the blob at once (UfuncParts): forward and backward
    give the bits of one NumPy pass over the whole blob, with an odd-sized blob."""
    x = RNG.standard_normal((5, 9, 61, 53)).astype(np.float32)
    dy = RNG.standard_normal(x.shape).astype(np.float32)
    text = 'type: "LRN" lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 k: 2 }'
    results = []
    calls: list[int] = []
    for split in (True, False):
        layer, bottom, top = run(text, x)
        if split:
            def counted(*parts, original=layer._scaled):
                calls.append(parts[0].size)
                original(*parts)

            layer._scaled = counted
            layer.forward(bottom, top)
        else:
            layer.parts.run = lambda function, *arrays: function(*arrays)
        backward_top0(layer, top, bottom, dy)
        results.append((top[0].data.copy(), bottom[0].diff.copy()))
        layer.close()
    parts = min(numba.get_num_threads(), x.size // MIN_PART)  # 2 on a 2-core machine
    assert len(calls) == 2 * parts and sum(calls) == 2 * x.size  # forward and backward
    for mine, whole in zip(*results):
        np.testing.assert_array_equal(mine.view(np.int32), whole.view(np.int32))


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


def test_pspnet_train_normalises_with_the_batch_and_updates_the_moving_averages():
    x = data()
    layer, _, top = bn(f"{PSP} momentum: 0.8 eps: 0.001", x)
    assert [b.shape for b in layer.blobs] == [(1, 4, 1, 1)] * 4
    slope, bias = channels(layer.blobs[0]), channels(layer.blobs[1])
    y, _, _, mean, var = ref.pspnet_bn_train(x, slope, bias, np.zeros(4, F), np.zeros(4, F),
                                             F(0.8), F(0.001))
    np.testing.assert_allclose(top[0].data, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(channels(layer.blobs[2]), mean, rtol=1e-6)
    np.testing.assert_allclose(channels(layer.blobs[3]), var, rtol=1e-6)
    # A second pass averages again: moving = 0.2 * batch + 0.8 * moving.
    layer.forward([blob_from(x)], top)
    np.testing.assert_allclose(channels(layer.blobs[2]), mean * F(1.8), rtol=1e-5)


def test_pspnet_test_phase_and_frozen_use_the_stored_statistics():
    x = data(1)
    for phase, extra in ((TEST, ""), (TRAIN, "frozen: true")):
        layer = build_layer(f'name: "bn" type: "BN" bottom: "x" top: "y" bn_param {{ {PSP} '
                            f"eps: 0.01 {extra} }}", phase)
        bottom, top = [blob_from(x)], [Blob()]
        layer.setup(bottom, top)
        mean, var = np.array([1, -1, 0.5, 2], F), np.array([4, 1, 0.25, 9], F)
        layer.blobs[2].data[...] = mean.reshape(1, 4, 1, 1)
        layer.blobs[3].data[...] = var.reshape(1, 4, 1, 1)
        layer.forward(bottom, top)
        slope, bias = channels(layer.blobs[0]), channels(layer.blobs[1])
        want = ((x - mean[None, :, None, None]) / np.sqrt(var + F(0.01))[None, :, None, None]
                * slope[None, :, None, None] + bias[None, :, None, None])
        np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(channels(layer.blobs[2]), mean)  # not updated


def test_pspnet_masks_the_statistics_and_a_frozen_layers_parameters():
    layer, _, _ = bn(f"{PSP}", data())
    assert [(p.lr_mult, p.decay_mult) for p in layer.param.param] == [(1, 1), (1, 1), (0, 0),
                                                                      (0, 0)]
    frozen, _, _ = bn(f"{PSP} frozen: true", data())
    assert [(p.lr_mult, p.decay_mult) for p in frozen.param.param] == [(0, 0)] * 4
    # A frozen layer starts from variance 1 (an unfrozen one from 0).
    np.testing.assert_array_equal(channels(frozen.blobs[3]), np.ones(4, F))
    assert (channels(layer.blobs[3]) != 0).all()  # updated by the forward pass


def test_pspnet_frozen_backward_is_slope_over_std_with_no_parameter_gradient():
    x = data(2)
    layer, bottom, top = bn(f"{PSP} frozen: true eps: 0.1", x, TEST)
    top[0].diff[...] = data(3)
    layer.backward(top, [True], bottom)
    factor = channels(layer.blobs[0]) / np.sqrt(F(1.1))
    np.testing.assert_allclose(bottom[0].diff, top[0].diff * factor[None, :, None, None],
                               rtol=1e-6)
    assert not any(b.diff.any() for b in layer.blobs)


def test_pspnet_test_phase_backward_keeps_the_forks_batch_formula():
    """Not frozen, in TEST: the forward uses the stored statistics but the fork's backward is
    still its batch-statistics formula (on those statistics). pyforge keeps the quirk."""
    x = data(4)
    layer, bottom, top = bn(f"{PSP} eps: 0.01", x, TEST)
    layer.blobs[3].data[...] = 2.0
    layer.forward(bottom, top)
    top[0].diff[...] = data(5)
    layer.backward(top, [True], bottom)
    x_norm = (x / np.sqrt(F(2.01))).astype(F)  # stored mean 0, variance 2
    dx, dslope, dbias = ref.bn_train_backward(top[0].diff, x_norm, channels(layer.blobs[0]),
                                              np.full(4, 1 / np.sqrt(F(2.01)), F))
    np.testing.assert_allclose(bottom[0].diff, dx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.blobs[0].diff.reshape(-1), dslope, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.blobs[1].diff.reshape(-1), dbias, rtol=1e-5, atol=1e-5)
    assert not np.allclose(dx, top[0].diff * channels(layer.blobs[0])[None, :, None, None]
                           / np.sqrt(F(2.01)), atol=1e-2)  # not the true gradient


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_segnet_learn_uses_the_batch_in_every_phase_and_writes_the_statistics(phase):
    x = data(6)
    layer, _, top = bn(SEG, x, phase, tops=3)
    assert len(layer.blobs) == 2
    y, mean, var, _ = ref.segnet_bn_learn(x, channels(layer.blobs[0]), channels(layer.blobs[1]))
    np.testing.assert_allclose(top[0].data, y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(top[1].data.reshape(-1), mean, rtol=1e-5)
    np.testing.assert_allclose(top[2].data.reshape(-1), var, rtol=1e-4)
    assert top[1].shape == top[2].shape == (1, 4, 1, 1)


def test_segnet_inference_is_scale_and_shift():
    x = data(7)
    layer, _, top = bn(f"{SEG} bn_mode: INFERENCE", x, TEST)
    scale, shift = channels(layer.blobs[0]), channels(layer.blobs[1])
    np.testing.assert_allclose(top[0].data, x * scale[None, :, None, None]
                               + shift[None, :, None, None], rtol=1e-6)


def test_segnet_inference_in_place_backward_reads_the_top_as_the_fork_does():
    """In place, the bottom's data is the top by backward time; the fork's scale gradient
    sums dy * (that data), and so does pyforge's."""
    x = data(8)
    layer = build_layer(f'name: "bn" type: "BN" bottom: "x" top: "x" bn_param {{ {SEG} '
                        "bn_mode: INFERENCE }")
    blob = blob_from(x)
    setup_forward(layer, [blob], [blob])
    blob.diff[...] = 1
    layer.backward([blob], [True], [blob])
    np.testing.assert_allclose(layer.blobs[0].diff.reshape(-1), blob.data.sum(axis=(0, 2, 3)),
                               rtol=1e-5)


@pytest.mark.parametrize(("params", "tops", "message"), [
    (f"{PSP} bn_mode: LEARN", 1, "mixes SegNet's fields"),
    (PSP, 2, "PSPNet's BN has one top"),
])
def test_bn_errors(params, tops, message):
    with pytest.raises(PyforgeError, match=message):
        bn(params, data(), tops=tops)


def test_a_one_axis_bottom_is_refused():
    with pytest.raises(PyforgeError, match=r"must be \(N, C, ...\)"):
        bn(PSP, np.zeros(5, F))


# --- Normalize ----------------------------------------------------------------------------------
@pytest.mark.parametrize("across, shared", [(True, True), (True, False), (False, True),
                                            (False, False)])
def test_normalize_forward(across, shared):
    x = rand(2, 3, 4, 5)
    text = (f'type: "Normalize" bottom: "x" top: "y" norm_param {{ across_spatial: '
            f'{str(across).lower()} channel_shared: {str(shared).lower()} eps: 0.01 '
            f'scale_filler {{ type: "gaussian" std: 3 }} }}')
    layer, _, top = run(text, x)
    scale = layer.blobs[0].data
    assert scale.shape == (() if shared else (3,))
    x64 = x.astype(np.float64)
    axes = (1, 2, 3) if across else (1,)
    norm = np.sqrt((x64 ** 2).sum(axis=axes, keepdims=True) + 0.01)
    k = scale if shared else scale.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(top[0].data, x64 / norm * k, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("across", [True, False])
def test_normalize_backward_is_the_forks(across):
    """The fork scales the gradient of the unscaled normalisation by each channel's scale: the
    true gradient when the scale is shared or equal, the fork's own otherwise."""
    x = rand(2, 3, 4, 5)
    layer, bottom, top = run(f'type: "Normalize" bottom: "x" top: "y" norm_param {{ '
                             f"across_spatial: {str(across).lower()} channel_shared: false "
                             f'scale_filler {{ type: "uniform" min: 0.5 max: 2 }} }}', x)
    dy = rand(2, 3, 4, 5, seed=9)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    x64, g = x.astype(np.float64), dy.astype(np.float64)
    scale = layer.blobs[0].data.astype(np.float64).reshape(1, 3, 1, 1)
    axes = (1, 2, 3) if across else (1,)
    norm = np.sqrt((x64 ** 2).sum(axis=axes, keepdims=True) + 1e-10)
    dot = (x64 * g).sum(axis=axes, keepdims=True)
    np.testing.assert_allclose(bottom[0].diff, (g - x64 * dot / norm ** 2) / norm * scale,
                               rtol=1e-4, atol=1e-6)
    # The scale gradient is exact: sum of (x / norm) * dy per channel.
    np.testing.assert_allclose(layer.blobs[0].diff, (x64 / norm * g).sum(axis=(0, 2, 3)),
                               rtol=1e-4)


def test_normalize_defaults_and_two_axis_bottom():
    layer, _, top = run('type: "Normalize" bottom: "x" top: "y"', np.array([[3.0, 4.0]]))
    assert layer.blobs[0].data.shape == () and layer.blobs[0].data == 1.0
    np.testing.assert_allclose(top[0].data, [[0.6, 0.8]], rtol=1e-6)


def test_normalize_scale_blob_must_fit():
    layer = build_layer('type: "Normalize" bottom: "x" top: "y" '
                        'norm_param { channel_shared: false }')
    layer.blobs = [blob_from(np.ones(2))]
    with pytest.raises(NetError, match="scale blob has 2 values; need one per channel"):
        setup_forward(layer, [blob_from(rand(1, 3, 2, 2))], [Blob()])
