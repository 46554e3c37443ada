"""The forks' BN layer: PSPNet's flavour (4 blobs, moving averages, frozen) and SegNet's (2
blobs, LEARN / INFERENCE, batch-statistics tops), against the forks' formulas."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import TEST, TRAIN, blob_from, build_layer, setup_forward
from tests.reference import forks as ref

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
def test_errors(params, tops, message):
    with pytest.raises(PyforgeError, match=message):
        bn(params, data(), tops=tops)


def test_a_one_axis_bottom_is_refused():
    with pytest.raises(PyforgeError, match=r"must be \(N, C, ...\)"):
        bn(PSP, np.zeros(5, F))
