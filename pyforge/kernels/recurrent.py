"""Per-timestep kernels of the recurrent layers; forward next to backward.

The LSTM step is Caffe's LSTMUnit (lstm_unit_layer.cpp). Rows are the N independent streams of
one timestep; the gate input ``x`` holds, per row, the four pre-activations in Caffe's order
``[i, f, o, g]`` (input, forget, output gate, candidate), each ``D`` wide:
``c = cont * f * c_prev + i * g`` and ``h = o * tanh(c)``.

Rounding follows Caffe's CPU code: its LSTMUnit ``sigmoid`` is ``1. / (1. + exp(-x))`` (float
``exp``, double division) and its ``tanh`` is ``2. * sigmoid(2. * x) - 1.`` evaluated in double;
both round to float on return. Everything else is float arithmetic.

A recurrence runs one small step per timestep, so each kernel comes in a parallel and a serial
variant (the same row function): waking the thread pool costs more than a small step. Writes are
disjoint per row, so both give the same bits; the layer picks one by size.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange


@jit
def _sigmoid(x):
    e = np.exp(-x)  # float32 exp, as std::exp(float)
    return np.float32(1.0 / (1.0 + np.float64(e)))


@jit
def _tanh(x):
    s = 1.0 / (1.0 + np.exp(-2.0 * np.float64(x)))
    return np.float32(2.0 * s - 1.0)


# --- LSTMUnit ---------------------------------------------------------------------------------
@jit
def _lstm_forward_row(c_prev, x, cont, c, h, n):
    dim = c_prev.shape[1]
    zero = np.float32(0.0)
    flag = cont[n]
    for d in range(dim):
        i = _sigmoid(x[n, d])
        # Caffe: a zero cont gives f = 0 exactly, whatever the forget gate's input.
        f = zero if flag == zero else flag * _sigmoid(x[n, dim + d])
        o = _sigmoid(x[n, 2 * dim + d])
        g = _tanh(x[n, 3 * dim + d])
        value = f * c_prev[n, d] + i * g
        c[n, d] = value
        h[n, d] = o * _tanh(value)


@pjit
def lstm_unit_forward(c_prev, x, cont, c, h):
    """c_prev (N, D), x (N, 4D), cont (N,) -> c (N, D), h (N, D)."""
    for n in prange(c_prev.shape[0]):
        _lstm_forward_row(c_prev, x, cont, c, h, n)


@jit
def lstm_unit_forward_serial(c_prev, x, cont, c, h):
    for n in range(c_prev.shape[0]):
        _lstm_forward_row(c_prev, x, cont, c, h, n)


@jit
def _lstm_backward_row(c_prev, x, cont, c, dc, dh, dc_prev, dx, want_c_prev, want_x, n):
    dim = c_prev.shape[1]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    flag = cont[n]
    for d in range(dim):
        i = _sigmoid(x[n, d])
        f = zero if flag == zero else flag * _sigmoid(x[n, dim + d])
        o = _sigmoid(x[n, 2 * dim + d])
        g = _tanh(x[n, 3 * dim + d])
        tanh_c = _tanh(c[n, d])
        c_term = dc[n, d] + dh[n, d] * o * (one - tanh_c * tanh_c)
        if want_c_prev:
            dc_prev[n, d] = c_term * f
        if want_x:
            dx[n, d] = c_term * g * i * (one - i)
            dx[n, dim + d] = c_term * c_prev[n, d] * f * (one - f)
            dx[n, 2 * dim + d] = dh[n, d] * tanh_c * o * (one - o)
            dx[n, 3 * dim + d] = c_term * i * (one - g * g)


@pjit
def lstm_unit_backward(c_prev, x, cont, c, dc, dh, dc_prev, dx, want_c_prev, want_x):
    """Gradients of one step: ``dc``/``dh`` (N, D) into ``dc_prev`` (N, D) and ``dx`` (N, 4D).

    ``dc_prev`` and ``dx`` are overwritten (only those asked for). As in Caffe, the forget-gate
    derivative is ``f * (1 - f)`` with ``f`` already multiplied by ``cont``, which is exact
    for the binary ``cont`` values Caffe expects.
    """
    for n in prange(c_prev.shape[0]):
        _lstm_backward_row(c_prev, x, cont, c, dc, dh, dc_prev, dx, want_c_prev, want_x, n)


@jit
def lstm_unit_backward_serial(c_prev, x, cont, c, dc, dh, dc_prev, dx, want_c_prev, want_x):
    for n in range(c_prev.shape[0]):
        _lstm_backward_row(c_prev, x, cont, c, dc, dh, dc_prev, dx, want_c_prev, want_x, n)


# --- RNN step: tanh as Caffe's TanH layer computes it (float tanh) ------------------------------
@jit
def tanh_forward_serial(x, y):
    """``y = tanh(x)`` over flat float32 arrays (may be the same array)."""
    for i in range(x.size):
        y[i] = np.tanh(x[i])


@jit
def tanh_backward_serial(y, dy, dx):
    """``dx = dy * (1 - y^2)`` over flat float32 arrays."""
    one = np.float32(1.0)
    for i in range(y.size):
        dx[i] = dy[i] * (one - y[i] * y[i])
