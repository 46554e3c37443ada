"""Caffe's LSTMUnit step (lstm_unit_layer.cpp) in float64: the gates from the pre-activations
``x`` (N, 4D) in Caffe's order [input, forget, output, candidate], ``c = f * c_prev + i * g`` with
``f = 0`` where ``cont`` is 0, ``h = o * tanh(c)``, and Caffe's backward formulas.

``magnitude=True`` evaluates the same formulas on absolute values with every subtraction made an
addition: the sum of the absolute terms, which is what a float32 evaluation's rounding errors
scale with (tests/reference/float32.py).
"""

from __future__ import annotations

import numpy as np

F64 = np.float64


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _gates(x: np.ndarray, cont: np.ndarray):
    x = np.asarray(x, F64)
    dim = x.shape[1] // 4
    i = _sigmoid(x[:, :dim])
    # Caffe: f is exactly 0 where cont is 0, whatever the forget gate's input.
    with np.errstate(invalid="ignore"):
        f = np.where(np.asarray(cont, F64)[:, None] == 0, 0.0,
                     np.asarray(cont, F64)[:, None] * _sigmoid(x[:, dim : 2 * dim]))
    o = _sigmoid(x[:, 2 * dim : 3 * dim])
    g = np.tanh(x[:, 3 * dim :])
    return i, f, o, g


def lstm_unit(c_prev: np.ndarray, x: np.ndarray, cont: np.ndarray,
              magnitude: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(c, h) of one step."""
    i, f, o, g = _gates(x, cont)
    c_prev = np.asarray(c_prev, F64)
    if magnitude:
        c = np.abs(f * c_prev) + np.abs(i * g)
        return c, np.abs(o) * c
    c = f * c_prev + i * g
    return c, o * np.tanh(c)


def lstm_unit_grad(c_prev: np.ndarray, x: np.ndarray, cont: np.ndarray, dc: np.ndarray,
                   dh: np.ndarray, magnitude: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(dc_prev (N, D), dx (N, 4D)) as Caffe's Backward_cpu computes them: with ``c_term = dc +
    dh * o * (1 - tanh(c)^2)``, ``dc_prev = c_term * f`` and the gate gradients ``c_term * g *
    i(1-i)``, ``c_term * c_prev * f(1-f)``, ``dh * tanh(c) * o(1-o)``, ``c_term * i * (1-g^2)``.
    The forget gate's uses ``f`` already multiplied by ``cont``: the true derivative for the
    binary ``cont`` Caffe expects, not for other values."""
    i, f, o, g = _gates(x, cont)
    c_prev, dc, dh = (np.asarray(a, F64) for a in (c_prev, dc, dh))
    c, _ = lstm_unit(c_prev, x, cont)
    t = np.tanh(c)
    if magnitude:
        def minus(a, b):
            return np.abs(a) + np.abs(b)
        c_prev, dc, dh, t = np.abs(c_prev), np.abs(dc), np.abs(dh), np.abs(t)
    else:
        def minus(a, b):
            return a - b
    c_term = dc + dh * o * minus(1.0, t * t)
    dx = np.concatenate([c_term * g * i * minus(1.0, i), c_term * c_prev * f * minus(1.0, f),
                         dh * t * o * minus(1.0, o), c_term * i * minus(1.0, g * g)], axis=1)
    if magnitude:
        return np.abs(c_term * f), np.abs(dx)
    return c_term * f, dx
