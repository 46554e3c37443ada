"""Accuracy and ArgMax."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.errors import PyforgeError
from tests.gradient_check import TEST
from tests.layers.util import labels, rand, run
from tests.reference import naive


# --- Accuracy -------------------------------------------------------------------------------------
def acc(extra: str, scores, lab, tops: int = 1):
    text = f'type: "Accuracy" bottom: "s" bottom: "l" top: "a" accuracy_param {{ {extra} }}'
    return run(text, scores, lab, tops=tops, phase=TEST)


# --- ArgMax ---------------------------------------------------------------------------------------
def argmax(params: str, x):
    return run(f'type: "ArgMax" argmax_param {{ {params} }}', x)[2][0]


def test_accuracy_basic():
    scores = rand(50, 6)
    lab = labels((50,), 6)
    _, _, top = acc("", scores, lab)
    expected, _ = naive.accuracy(scores, lab)
    assert top[0].shape == ()
    assert top[0].data.item() == pytest.approx(expected)
    assert expected == pytest.approx(np.mean(scores.argmax(1) == lab))


def test_accuracy_ties_count_against():
    scores = np.array([[1.0, 1.0, 0.0],  # label 0 ties with class 1: wrong
                       [1.0, 1.0, 0.0],  # label 1 ties with class 0: wrong too
                       [0.0, 2.0, 2.0],  # label 2 ties with class 1: wrong
                       [3.0, 1.0, 0.0]], np.float32)  # clear win: right
    lab = np.array([0, 1, 2, 0], np.float32)
    _, _, top = acc("", scores, lab)
    assert top[0].data.item() == pytest.approx(0.25)
    _, _, top = acc("top_k: 2", scores, lab)
    assert top[0].data.item() == pytest.approx(1.0)  # 2 classes >= the true one: < top_k+1


def test_accuracy_all_equal_scores_are_never_correct_at_top1():
    scores = np.zeros((4, 5), np.float32)
    _, _, top = acc("", scores, labels((4,), 5))
    assert top[0].data.item() == 0
    _, _, top = acc("top_k: 5", scores, labels((4,), 5))
    assert top[0].data.item() == 1


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_accuracy_top_k(k):
    scores = rand(40, 5)
    lab = labels((40,), 5)
    _, _, top = acc(f"top_k: {k}", scores, lab)
    expected, _ = naive.accuracy(scores, lab, top_k=k)
    ranks = (scores >= scores[np.arange(40), lab.astype(int)][:, None]).sum(1)
    assert expected == pytest.approx(np.mean(ranks <= k))
    assert top[0].data.item() == pytest.approx(expected)


def test_accuracy_ignore_label_and_per_class_top():
    scores = rand(30, 4)
    lab = labels((30,), 4)
    _, _, top = acc("ignore_label: 3", scores, lab, tops=2)
    expected, per_class = naive.accuracy(scores, lab, ignore_label=3)
    assert top[0].data.item() == pytest.approx(expected)
    assert top[1].shape == (4,)
    np.testing.assert_allclose(top[1].data, per_class, rtol=1e-6)
    assert top[1].data[3] == 0  # the ignored class has no items


def test_accuracy_all_ignored_is_zero():
    _, _, top = acc("ignore_label: 1", rand(3, 2), np.ones(3, np.float32))
    assert top[0].data.item() == 0


def test_accuracy_spatial_and_axis():
    scores = rand(2, 4, 3)  # (N, C, H) with classes on axis 1
    lab = labels((2, 3), 4)
    _, _, top = acc("", scores, lab)
    assert top[0].data.item() == pytest.approx(naive.accuracy(scores, lab)[0])
    scores2 = rand(2, 3, 4, seed=4)  # classes on the last axis
    _, _, top = acc("axis: 2", scores2, lab)
    assert top[0].data.item() == pytest.approx(naive.accuracy(scores2, lab, axis=2)[0])


def test_accuracy_errors():
    with pytest.raises(PyforgeError, match="top_k"):
        acc("top_k: 4", rand(2, 3), labels((2,), 3))
    with pytest.raises(PyforgeError, match="(?i)label"):
        acc("", rand(2, 3, 2), labels((2,), 3))


def test_argmax_default_shape_and_values():
    x = rand(3, 2, 2, 2)
    top = argmax("", x)
    assert top.shape == (3, 1, 1, 1)  # (N, 1, top_k) padded to the bottom's 4 axes
    np.testing.assert_array_equal(top.data.reshape(3), x.reshape(3, -1).argmax(1))


def test_argmax_out_max_val_layout():
    """Without axis, out_max_val gives (N, 2, top_k): indices in row 0, values in row 1."""
    x = rand(2, 5)
    top = argmax("top_k: 3 out_max_val: true", x)
    assert top.shape == (2, 2, 3)
    order = np.argsort(-x, axis=1)[:, :3]
    np.testing.assert_array_equal(top.data[:, 0], order)
    np.testing.assert_array_equal(top.data[:, 1], np.take_along_axis(x, order, 1))


def test_argmax_small_bottoms_get_three_axes():
    assert argmax("top_k: 2", rand(4, 3)).shape == (4, 1, 2)
    assert argmax("", rand(4)).shape == (4, 1, 1)


@pytest.mark.parametrize("out_max_val", [False, True])
def test_argmax_along_axis(out_max_val):
    x = rand(2, 4, 3)
    top = argmax(f"axis: 1 top_k: 2 out_max_val: {str(out_max_val).lower()}", x)
    assert top.shape == (2, 2, 3)
    order = np.argsort(-x, axis=1)[:, :2]
    # With an axis, out_max_val gives only the values (no indices).
    expected = np.take_along_axis(x, order, 1) if out_max_val else order
    np.testing.assert_array_equal(top.data, expected)


def test_argmax_ties_rank_the_larger_index_first():
    """Caffe sorts (value, index) pairs with std::greater."""
    x = np.array([[1.0, 3.0, 3.0, 0.0, 3.0]], np.float32)
    top = argmax("top_k: 4 out_max_val: true", x)
    np.testing.assert_array_equal(top.data[0, 0], [4, 2, 1, 0])
    np.testing.assert_array_equal(top.data[0, 1], [3, 3, 3, 1])


def test_argmax_negative_axis_and_errors():
    x = rand(2, 3, 4)
    np.testing.assert_array_equal(argmax("axis: -1", x).data[..., 0], x.argmax(-1))
    with pytest.raises(PyforgeError, match="top_k"):
        argmax("top_k: 5", rand(2, 2, 2))
    with pytest.raises(PyforgeError, match="top_k"):
        argmax("axis: 1 top_k: 4", rand(2, 3, 5))
