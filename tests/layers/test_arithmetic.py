"""Eltwise and Reduction."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import blob_from, build_layer, setup_forward
from tests.layers.util import backward, rand, run
from tests.reference import forks as ref

# --- Eltwise --------------------------------------------------------------------------------------
A = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]], np.float32)


B = np.array([[2.0, -2.0, -3.0], [0.5, 1.0, -4.0]], np.float32)


C = np.array([[-1.0, 5.0, 3.0], [0.25, 1.0, -0.5]], np.float32)


F = np.float32


AXPY = 'type: "Axpy" bottom: "s" bottom: "x" bottom: "y" top: "out"'


def test_eltwise_sum_default_and_coeff():
    _, _, top = run('type: "Eltwise"', A, B)
    np.testing.assert_array_equal(top[0].data, A + B)
    layer, bottom, top = run('type: "Eltwise" eltwise_param { operation: SUM coeff: 2 '
                             "coeff: -1 coeff: 0.5 }", A, B, C)
    np.testing.assert_allclose(top[0].data, 2 * A - B + 0.5 * C, rtol=1e-6)
    top[0].diff[...] = 3
    layer.backward(top, [True, True, True], bottom)
    for b, c in zip(bottom, [2, -1, 0.5], strict=True):
        np.testing.assert_allclose(b.diff, np.full(A.shape, 3 * c))


def test_eltwise_prod_stable_and_unstable():
    for extra in ("", "stable_prod_grad: false"):
        layer, bottom, top = run(f'type: "Eltwise" eltwise_param {{ operation: PROD {extra} }}',
                                 B, C)
        np.testing.assert_allclose(top[0].data, B * C, rtol=1e-6)
        top[0].diff[...] = 2
        layer.backward(top, [True, True], bottom)
        np.testing.assert_allclose(bottom[0].diff, 2 * C, rtol=1e-6)
        np.testing.assert_allclose(bottom[1].diff, 2 * B, rtol=1e-6)
    # The stable gradient does not divide: a zero input still gets the product of the others.
    layer, bottom, top = run('type: "Eltwise" eltwise_param { operation: PROD }', A, B, C)
    top[0].diff[...] = 1
    layer.backward(top, [True, True, True], bottom)
    np.testing.assert_allclose(bottom[0].diff, B * C, rtol=1e-6)
    assert bottom[0].diff[1, 1] == 1.0  # A is 0 there


def test_eltwise_max_values():
    _, _, top = run('type: "Eltwise" eltwise_param { operation: MAX }', A, B, C)
    np.testing.assert_array_equal(top[0].data, np.maximum(np.maximum(A, B), C))


def test_eltwise_max_later_bottoms_need_a_strictly_greater_value():
    """Bottoms 2, 3, ... replace the running max only when strictly greater (``>``), so on a
    tie with them the earlier bottom keeps the gradient."""
    a = np.array([[5.0, 1.0]], np.float32)
    b = np.array([[1.0, 2.0]], np.float32)
    c = np.array([[5.0, 2.0]], np.float32)  # ties the running max everywhere
    layer, bottom, top = run('type: "Eltwise" eltwise_param { operation: MAX }', a, b, c)
    top[0].diff[...] = 1
    layer.backward(top, [True, True, True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [[1, 0]])
    np.testing.assert_array_equal(bottom[1].diff, [[0, 1]])
    np.testing.assert_array_equal(bottom[2].diff, [[0, 0]])


def test_eltwise_max_tie_between_bottom_0_and_bottom_1_goes_to_bottom_1():
    """Caffe's EltwiseLayer::Forward_cpu (MAX) compares the first two bottoms with
    ``if (a[idx] > b[idx]) mask = 0; else mask = 1;`` (the GPU kernel does the same), so a tie
    between bottom 0 and bottom 1 routes the gradient to bottom 1; only bottoms 2+ use the
    strict ``>`` against the running max that keeps the earlier index."""
    layer, bottom, top = run('type: "Eltwise" eltwise_param { operation: MAX }', A, B, C)
    top[0].diff[...] = 1
    layer.backward(top, [True, True, True], bottom)
    # [0,0] B; [0,1] A=B=-2 -> B, then C=5 wins; [0,2] A=3 > B, C=3 is not > 3 -> A;
    # [1,0] A=B=0.5 -> B (the tie); [1,1] B=1, C=1 not > 1 -> B; [1,2] C.
    np.testing.assert_array_equal(bottom[0].diff, [[0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(bottom[1].diff, [[1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(bottom[2].diff, [[0, 1, 0], [0, 0, 1]])


def test_eltwise_errors():
    with pytest.raises(PyforgeError, match="coeff"):
        run('type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 1 }', A, B)
    with pytest.raises(PyforgeError, match="coeff"):
        run('type: "Eltwise" eltwise_param { coeff: 1 }', A, B)
    with pytest.raises(PyforgeError, match="shape"):
        run('type: "Eltwise"', A, A.T.copy())


# --- Reduction ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "shape", "axis", "op", "coeff"),
    [
        ("", (2, 3, 4), 0, "SUM", 1.0),
        ("operation: SUM axis: 1 coeff: -2", (2, 3, 4), 1, "SUM", -2.0),
        ("operation: ASUM axis: 2", (2, 3, 4), 2, "ASUM", 1.0),
        ("operation: SUMSQ axis: -1 coeff: 0.5", (3, 2, 4), 2, "SUMSQ", 0.5),
        ("operation: MEAN axis: 1 coeff: 3", (2, 3, 4), 1, "MEAN", 3.0),
        ("operation: MEAN", (5, 2), 0, "MEAN", 1.0),
    ],
)
def test_reduction_matches_numpy(params, shape, axis, op, coeff):
    x = rand(*shape)
    x.flat[0] = 0  # sign(0) = 0 in ASUM's gradient
    layer, bottom, top = run(f'type: "Reduction" reduction_param {{ {params} }}', x)
    assert top[0].shape == shape[:axis]  # axis 0 gives a scalar (Caffe logs "(1)")
    flat = x.reshape(int(np.prod(shape[:axis])), -1).astype(np.float64)
    values = {"SUM": flat.sum(1), "ASUM": np.abs(flat).sum(1), "SUMSQ": (flat**2).sum(1),
              "MEAN": flat.mean(1)}[op] * coeff
    np.testing.assert_allclose(top[0].data.reshape(-1), values, rtol=1e-5, atol=1e-5)
    dy = rand(*top[0].shape, seed=1)
    backward(layer, bottom, top, [dy])
    g = np.asarray(dy, np.float64).reshape(-1, 1) * coeff
    grads = {"SUM": np.ones_like(flat) * g, "ASUM": np.sign(flat) * g, "SUMSQ": 2 * flat * g,
             "MEAN": np.ones_like(flat) * g / flat.shape[1]}[op]
    np.testing.assert_allclose(bottom[0].diff.reshape(flat.shape), grads, rtol=1e-5, atol=1e-6)


def test_reduction_scalar_top_shape_string():
    _, _, top = run('type: "Reduction"', rand(2, 3))
    assert top[0].shape == () and top[0].shape_string() == "(1)"


@pytest.mark.parametrize("scale_shape", [(2, 3, 1, 1), (2, 3)])
def test_axpy_is_scale_times_x_plus_y(scale_shape):
    scale, x, y = rand(*scale_shape, seed=1), rand(2, 3, 4, 5, seed=2), rand(2, 3, 4, 5, seed=3)
    layer = build_layer(AXPY)
    bottom, top = [blob_from(scale), blob_from(x), blob_from(y)], [Blob()]
    setup_forward(layer, bottom, top)
    np.testing.assert_allclose(top[0].data, ref.axpy(scale, x, y), rtol=1e-6, atol=1e-6)
    top[0].diff[...] = rand(2, 3, 4, 5, seed=4)
    layer.backward(top, [True, True, True], bottom)
    np.testing.assert_allclose(bottom[0].diff.reshape(2, 3),
                               (top[0].diff * x).sum(axis=(2, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bottom[1].diff, top[0].diff * scale.reshape(2, 3, 1, 1),
                               rtol=1e-6)
    np.testing.assert_array_equal(bottom[2].diff, top[0].diff)


@pytest.mark.parametrize(("shapes", "top", "message"), [
    (((2, 3, 2, 1), (2, 3, 4, 4), (2, 3, 4, 4)), "out", r"must be \(N, C, 1, 1\)"),
    (((2, 4), (2, 3, 4, 4), (2, 3, 4, 4)), "out", r"bottom 0 \(the scale\) must be \(N, C\)"),
    (((2, 3), (2, 3, 4, 4), (2, 3, 4, 5)), "out", "x and y.* must have one shape"),
    (((2, 3), (2, 3, 4, 4), (2, 3, 4, 4)), "x", "cannot run in place on bottom 1"),
])
def test_axpy_errors(shapes, top, message):
    layer = build_layer(AXPY.replace('top: "out"', f'top: "{top}"'))
    bottom = [blob_from(np.zeros(shape, F)) for shape in shapes]
    tops = [bottom[1]] if top == "x" else [Blob()]
    with pytest.raises(PyforgeError, match=message):
        setup_forward(layer, bottom, tops)
