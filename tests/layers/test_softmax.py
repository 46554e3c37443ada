"""Softmax and SoftmaxWithLoss."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyforge.errors import PyforgeError
from tests.layers.util import labels, rand, run
from tests.reference import naive


# --- SoftmaxWithLoss ------------------------------------------------------------------------------
def swl(extra: str, x, lab, tops: int = 1, top_names: str = 'top: "loss"'):
    text = f'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l" {top_names} {extra}'
    return run(text, x, lab, tops=tops)


MODES = [
    pytest.param("", "VALID", None, id="default_valid_no_ignore"),
    pytest.param("loss_param { ignore_label: 2 }", "VALID", 2, id="default_valid_ignore"),
    pytest.param("loss_param { normalization: FULL ignore_label: 2 }", "FULL", 2, id="full"),
    pytest.param("loss_param { normalization: VALID ignore_label: 0 }", "VALID", 0, id="valid"),
    pytest.param("loss_param { normalization: BATCH_SIZE ignore_label: 1 }", "BATCH_SIZE", 1,
                 id="batch_size"),
    pytest.param("loss_param { normalization: NONE }", "NONE", None, id="none"),
    pytest.param("loss_param { normalize: true ignore_label: 1 }", "VALID", 1,
                 id="normalize_true_is_valid"),
    pytest.param("loss_param { normalize: false }", "BATCH_SIZE", None,
                 id="normalize_false_is_batch_size"),
    pytest.param("loss_param { normalize: false normalization: FULL }", "FULL", None,
                 id="normalization_wins_over_normalize"),
]


# --- Softmax --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "axis"), [((3, 5), 1), ((2, 4, 3, 2), 1), ((2, 3, 4), 2),
                                             ((2, 3, 4), -1), ((4, 2, 3), 0)])
def test_softmax_forward(shape, axis):
    x = rand(*shape, scale=3)
    _, _, top = run(f'type: "Softmax" softmax_param {{ axis: {axis} }}', x)
    np.testing.assert_allclose(top[0].data, naive.softmax(x, axis), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(top[0].data.sum(axis=axis), 1, rtol=1e-5)


def test_softmax_is_stable_for_large_inputs():
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1000.0, -1000.0]], np.float32)
    _, _, top = run('type: "Softmax"', x)
    np.testing.assert_allclose(top[0].data, naive.softmax(x), rtol=1e-5)


def test_softmax_backward_formula():
    x = rand(3, 4)
    layer, bottom, top = run('type: "Softmax"', x)
    dy = rand(3, 4, seed=2)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    y = top[0].data.astype(np.float64)
    expected = (dy - (dy * y).sum(1, keepdims=True)) * y
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("extra", "mode", "ignore"), MODES)
def test_softmax_loss_normalization(extra, mode, ignore):
    x = rand(3, 4, 2, 5, scale=2)
    lab = labels((3, 2, 5), 4)
    layer, bottom, top = swl(extra, x, lab)
    loss, grad = naive.softmax_loss(x, lab, 1, ignore, mode)
    assert top[0].shape == ()
    assert top[0].data.item() == pytest.approx(loss, rel=1e-5)
    layer.backward(top, [True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff, grad, rtol=1e-5, atol=1e-7)


def test_softmax_loss_normalizers_differ_as_documented():
    """30 positions (3 items x 10), 9 of them ignored: FULL 30, VALID 21, BATCH_SIZE 3,
    NONE 1."""
    x = rand(3, 4, 10)
    lab = np.tile(np.array([0, 1, 2, 3, 2, 1, 0, 2, 3, 1], np.float32), (3, 1))
    raw = naive.softmax_loss(x, lab, 1, 2, "NONE")[0]
    for mode, norm in [("FULL", 30), ("VALID", 21), ("BATCH_SIZE", 3), ("NONE", 1)]:
        _, _, top = swl(f"loss_param {{ normalization: {mode} ignore_label: 2 }}", x, lab)
        assert top[0].data.item() == pytest.approx(raw / norm, rel=1e-5), mode


def test_softmax_loss_ignored_positions_get_zero_gradient():
    x = rand(4, 3)
    lab = np.array([0, 2, 2, 1], np.float32)
    layer, bottom, top = swl("loss_param { ignore_label: 2 }", x, lab)
    layer.backward(top, [True, False], bottom)
    assert (bottom[0].diff[1:3] == 0).all()
    assert (bottom[0].diff[[0, 3]] != 0).all()


def test_softmax_loss_all_ignored_is_zero_not_nan():
    x = rand(2, 3)
    lab = np.full(2, 1, np.float32)
    layer, bottom, top = swl("loss_param { ignore_label: 1 }", x, lab)
    assert top[0].data.item() == 0
    layer.backward(top, [True, False], bottom)
    assert (bottom[0].diff == 0).all()


@pytest.mark.parametrize("weight", [3.0, 0.5])
def test_softmax_loss_backward_is_scaled_by_the_top_diff(weight):
    """Caffe keeps the loss weight in the top's diff; Backward scales by top[0].diff[0]."""
    x = rand(3, 5)
    lab = labels((3,), 5)
    layer, bottom, top = swl(f"loss_weight: {weight}", x, lab)
    assert top[0].diff.item() == weight  # SetUp wrote the loss weight into the diff
    layer.backward(top, [True, False], bottom)
    _, grad = naive.softmax_loss(x, lab, loss_weight=weight)
    np.testing.assert_allclose(bottom[0].diff, grad, rtol=1e-5, atol=1e-7)
    top[0].diff[...] = 7
    layer.backward(top, [True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff, grad / weight * 7, rtol=1e-5, atol=1e-7)


def test_loss_layer_gets_an_implicit_loss_weight_of_one():
    layer, _, top = swl("", rand(2, 3), labels((2,), 3))
    assert list(layer.param.loss_weight) == [1.0]
    assert layer.loss_weights == [1.0]
    assert top[0].diff.item() == 1.0


def test_softmax_loss_axis():
    x = rand(2, 3, 4, 2, scale=2)  # softmax over axis 2 (4 classes); outer 6, inner 2
    lab = labels((2, 3, 2), 4)
    layer, bottom, top = swl("softmax_param { axis: 2 }", x, lab)
    loss, grad = naive.softmax_loss(x, lab, axis=2)
    assert top[0].data.item() == pytest.approx(loss, rel=1e-5)
    layer.backward(top, [True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff, grad, rtol=1e-5, atol=1e-7)


def test_softmax_loss_probability_top():
    x = rand(3, 4)
    lab = labels((3,), 4)
    layer, _, top = swl("loss_weight: 1 loss_weight: 0", x, lab, tops=2,
                        top_names='top: "loss" top: "prob"')
    np.testing.assert_allclose(top[1].data, naive.softmax(x), rtol=1e-5)
    assert top[1].shape == x.shape


def test_softmax_loss_clamps_probability_at_flt_min():
    x = np.array([[0.0, 200.0]], np.float32)  # p[label 0] underflows to 0
    _, _, top = swl("", x, np.zeros(1, np.float32))
    assert top[0].data.item() == pytest.approx(-math.log(float(naive.FLT_MIN)), rel=1e-6)
    assert np.isfinite(top[0].data).all()


def test_softmax_loss_refuses_to_backpropagate_to_labels():
    layer, bottom, top = swl("", rand(2, 3), labels((2,), 3))
    with pytest.raises(PyforgeError, match="(?i)label"):
        layer.backward(top, [True, True], bottom)
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)


def test_softmax_loss_label_count_must_match():
    with pytest.raises(PyforgeError, match="(?i)number of labels"):
        swl("", rand(2, 3, 4), labels((2, 3), 3))


def test_softmax_loss_label_out_of_range():
    with pytest.raises(PyforgeError, match="(?i)label"):
        swl("", rand(2, 3), np.array([0, 3], np.float32))


def test_softmax_loss_propagate_down_false_leaves_diff_alone():
    layer, bottom, top = swl("", rand(2, 3), labels((2,), 3))
    bottom[0].diff[...] = 5
    layer.backward(top, [False, False], bottom)
    assert (bottom[0].diff == 5).all()


def test_softmax_loss_with_a_probability_top_needs_two_loss_weights():
    """LossLayer adds one implicit loss_weight; with two tops Caffe then requires one per top."""
    with pytest.raises(PyforgeError, match="loss_weight"):
        swl("", rand(3, 4), labels((3,), 4), tops=2, top_names='top: "loss" top: "prob"')
