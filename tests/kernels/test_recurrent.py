"""pyforge.kernels.recurrent against Caffe's LSTMUnit formulas in float64
(tests/reference/recurrent.py): the LSTM step forward and backward (all gradient flags), the
parallel and serial variants giving the same bits, Caffe's rounding quirks (its float-exp
sigmoid and double-precision tanh-via-sigmoid, and f = 0 exactly where cont is 0), and the
serial tanh kernels of the RNN step against the parallel ones in pyforge.kernels.neuron.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.kernels import neuron as KN
from pyforge.kernels import recurrent as KR
from tests.reference import recurrent as ref
from tests.reference.float32 import assert_close

F32 = np.float32
#: Double-precision rounding (2^-53 absolute in Caffe's tanh-via-sigmoid) in float32 U units.
DOUBLE = 2.0**-29

SHAPES = [(1, 1), (3, 4), (5, 7)]  # (N streams, D hidden)


def _step(n, d, seed, cont=None):
    rng = np.random.default_rng(seed)
    c_prev = (2 * rng.standard_normal((n, d))).astype(F32)
    x = (2 * rng.standard_normal((n, 4 * d))).astype(F32)
    if cont is None:
        cont = (np.arange(n) % 3 != 0).astype(F32)  # some sequences begin: cont 0
    return c_prev, x, np.asarray(cont, F32)


def _forward(kernel, c_prev, x, cont):
    c = np.full_like(c_prev, np.nan)
    h = np.full_like(c_prev, np.nan)
    kernel(c_prev, x, cont, c, h)
    return c, h


def _backward(kernel, c_prev, x, cont, c, dc, dh, want_c_prev=True, want_x=True):
    dc_prev = np.full_like(c_prev, np.nan)
    dx = np.full_like(x, np.nan)
    kernel(c_prev, x, cont, c, dc, dh, dc_prev, dx, want_c_prev, want_x)
    return dc_prev, dx


@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_unit_forward(shape):
    c_prev, x, cont = _step(*shape, seed=0)
    c, h = _forward(KR.lstm_unit_forward, c_prev, x, cont)
    exp_c, exp_h = ref.lstm_unit(c_prev, x, cont)
    mag_c, mag_h = ref.lstm_unit(c_prev, x, cont, magnitude=True)
    # Each gate: a float exp and a correctly rounded double division (3 roundings); c: two
    # products and a sum of them; h: c's error through tanh, tanh's and the product's.
    assert_close(c, exp_c, mag_c + DOUBLE, roundings=10)
    assert_close(h, exp_h, mag_h + DOUBLE, roundings=16)


@pytest.mark.parametrize("cont", [None, [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.5, 1.0, 0.0]],
                         ids=["mixed", "all_continue", "all_begin", "fractional"])
def test_lstm_unit_backward(cont):
    c_prev, x, cont = _step(3, 4, seed=1, cont=cont)
    rng = np.random.default_rng(2)
    dc = rng.standard_normal(c_prev.shape).astype(F32)
    dh = rng.standard_normal(c_prev.shape).astype(F32)
    c, _ = _forward(KR.lstm_unit_forward, c_prev, x, cont)
    dc_prev, dx = _backward(KR.lstm_unit_backward, c_prev, x, cont, c, dc, dh)
    exp_dc_prev, exp_dx = ref.lstm_unit_grad(c_prev, x, cont, dc, dh)
    mag_dc_prev, mag_dx = ref.lstm_unit_grad(c_prev, x, cont, dc, dh, magnitude=True)
    # From the float32 c (about 10 roundings) and gates (3 each), through a handful of products.
    assert_close(dc_prev, exp_dc_prev, mag_dc_prev + DOUBLE, roundings=24)
    assert_close(dx, exp_dx, mag_dx + DOUBLE, roundings=24)


@pytest.mark.parametrize(("want_c_prev", "want_x"), [(True, False), (False, True)])
def test_lstm_unit_backward_writes_only_what_is_asked(want_c_prev, want_x):
    c_prev, x, cont = _step(3, 2, seed=3)
    c, _ = _forward(KR.lstm_unit_forward, c_prev, x, cont)
    dc = np.ones_like(c)
    both = _backward(KR.lstm_unit_backward, c_prev, x, cont, c, dc, dc)
    dc_prev, dx = _backward(KR.lstm_unit_backward, c_prev, x, cont, c, dc, dc, want_c_prev,
                            want_x)
    for asked, got, full in ((want_c_prev, dc_prev, both[0]), (want_x, dx, both[1])):
        if asked:
            np.testing.assert_array_equal(got, full)
        else:
            assert np.isnan(got).all()  # not written


@pytest.mark.parametrize("shape", SHAPES + [(64, 33)])
def test_parallel_and_serial_variants_give_the_same_bits(shape):
    c_prev, x, cont = _step(*shape, seed=4)
    rng = np.random.default_rng(5)
    dc = rng.standard_normal(c_prev.shape).astype(F32)
    dh = rng.standard_normal(c_prev.shape).astype(F32)
    parallel = _forward(KR.lstm_unit_forward, c_prev, x, cont)
    serial = _forward(KR.lstm_unit_forward_serial, c_prev, x, cont)
    parallel += _backward(KR.lstm_unit_backward, c_prev, x, cont, parallel[0], dc, dh)
    serial += _backward(KR.lstm_unit_backward_serial, c_prev, x, cont, serial[0], dc, dh)
    for a, b in zip(parallel, serial):
        assert a.tobytes() == b.tobytes()


def test_caffe_tanh_via_double_sigmoid_rounds_tiny_values_to_zero():
    """Caffe's LSTMUnit tanh is ``2 * sigmoid(2x) - 1`` in double: for |x| below about 1e-17,
    exp(-2x) rounds to 1 and the result is exactly 0 (true tanh(1e-20) is 1e-20). With cont 0
    (f = 0) the cell is i * g, so exactly 0, where the true value is about 5e-21."""
    d = 1
    c_prev = np.ones((1, d), F32)
    x = np.array([[0.3, 0.0, 0.0, 1e-20]], F32)  # [i, f, o, g]
    c, h = _forward(KR.lstm_unit_forward, c_prev, x, np.zeros(1, F32))
    assert c[0, 0] == 0.0 and h[0, 0] == 0.0
    assert ref.lstm_unit(c_prev, x, np.zeros(1))[0][0, 0] > 1e-21  # the true cell


def test_caffe_sigmoid_with_float_exp_is_zero_far_below():
    """Caffe's LSTMUnit sigmoid is ``1. / (1. + exp(-x))`` with a float exp: below about -88.7
    exp(-x) overflows to inf and the gate is exactly 0 (true sigmoid(-95) is 5.5e-42)."""
    c_prev = np.ones((1, 1), F32)
    x = np.array([[-95.0, 0.0, 0.0, 1.0]], F32)
    c, _ = _forward(KR.lstm_unit_forward, c_prev, x, np.zeros(1, F32))
    assert c[0, 0] == 0.0
    assert ref.lstm_unit(c_prev, x, np.zeros(1))[0][0, 0] > 0


def test_zero_cont_gives_a_zero_forget_gate_whatever_its_input():
    """Where cont is 0, f is 0 exactly: a NaN or infinite forget-gate input does not reach c,
    and its gradient (and c_prev's) is 0; where cont is 1 the NaN goes through."""
    c_prev = np.array([[2.0], [2.0]], F32)
    x = np.array([[0.0, np.nan, 0.0, 1.0], [0.0, np.nan, 0.0, 1.0]], F32)
    cont = np.array([0.0, 1.0], F32)
    c, h = _forward(KR.lstm_unit_forward, c_prev, x, cont)
    exp_c, exp_h = ref.lstm_unit(c_prev, x, cont)
    assert_close(c[:1], exp_c[:1], np.abs(exp_c[:1]), roundings=4)
    assert np.isnan(c[1, 0]) and np.isnan(h[1, 0])
    dc_prev, dx = _backward(KR.lstm_unit_backward, c_prev, x, cont, c, np.ones_like(c),
                            np.ones_like(c))
    assert dc_prev[0, 0] == 0.0 and dx[0, 1] == 0.0


@pytest.mark.parametrize("size", [1, 7, 100])
def test_tanh_serial_variants(size):
    x = (3 * np.random.default_rng(6).standard_normal(size)).astype(F32)
    x[0] = 0.0
    y = np.full_like(x, np.nan)
    KR.tanh_forward_serial(x, y)
    parallel = np.full_like(x, np.nan)
    KN.tanh_forward(x, parallel)
    assert y.tobytes() == parallel.tobytes()  # one tanhf per element either way
    t = np.tanh(x.astype(np.float64))
    assert_close(y, t, t, roundings=4)  # tanhf: within 2 ulps
    dy = np.random.default_rng(7).standard_normal(size).astype(F32)
    dx = np.full_like(x, np.nan)
    KR.tanh_backward_serial(y, dy, dx)
    dx_parallel = np.full_like(x, np.nan)
    KN.tanh_backward(y, dy, dx_parallel)
    assert dx.tobytes() == dx_parallel.tobytes()
    assert_close(dx, dy * (1 - t * t), np.abs(dy) * (np.abs(1 - t * t) + t * t), roundings=8)
    # In place (the RNN step overwrites its pre-activations): x may be y, dy may be dx.
    KR.tanh_forward_serial(x, x)
    assert x.tobytes() == y.tobytes()
    KR.tanh_backward_serial(y, dy, dy)
    assert dy.tobytes() == dx.tobytes()
