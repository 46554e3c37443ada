"""RNN, LSTM and LSTMUnit against NumPy references of Caffe's unrolled nets."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import NetError
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto
from tests.gradient_check import GradientChecker, blob_from, build_layer
from tests.logcapture import capture_log

FILLERS = ('weight_filler { type: "gaussian" std: 0.5 } '
           'bias_filler { type: "gaussian" std: 0.5 }')


# --- NumPy references (float64) of Caffe's unrolled nets ------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def rnn_reference(x, cont, blobs, h0=None, x_static=None):
    """RNN: h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static]),
    o_t = tanh(W_ho h_t + b_o). Returns (o, h_T)."""
    blobs = [b.astype(np.float64) for b in blobs]
    if x_static is not None:
        w_xh, b_h, w_static, w_hh, w_ho, b_o = blobs
    else:
        w_xh, b_h, w_hh, w_ho, b_o = blobs
    t_steps, n = cont.shape
    x = x.reshape(t_steps, n, -1).astype(np.float64)
    h = np.zeros((n, w_hh.shape[0])) if h0 is None else h0.reshape(n, -1).astype(np.float64)
    outputs = []
    for t in range(t_steps):
        pre = (h * cont[t][:, None]) @ w_hh.T + x[t] @ w_xh.T + b_h
        if x_static is not None:
            pre += x_static.reshape(n, -1) @ w_static.T
        h = np.tanh(pre)
        outputs.append(np.tanh(h @ w_ho.T + b_o))
    return np.stack(outputs), h


def lstm_reference(x, cont, blobs, h0=None, c0=None, x_static=None):
    """LSTM with Caffe's gate order [i, f, o, g]; c_t = cont_t f c_{t-1} + i g,
    h_t = o tanh(c_t). Returns (h, h_T, c_T)."""
    blobs = [b.astype(np.float64) for b in blobs]
    if x_static is not None:
        w_xc, b_c, w_static, w_hc = blobs
    else:
        w_xc, b_c, w_hc = blobs
    t_steps, n = cont.shape
    d = w_hc.shape[1]
    x = x.reshape(t_steps, n, -1).astype(np.float64)
    h = np.zeros((n, d)) if h0 is None else h0.reshape(n, d).astype(np.float64)
    c = np.zeros((n, d)) if c0 is None else c0.reshape(n, d).astype(np.float64)
    outputs = []
    for t in range(t_steps):
        gates = (h * cont[t][:, None]) @ w_hc.T + x[t] @ w_xc.T + b_c
        if x_static is not None:
            gates += x_static.reshape(n, -1) @ w_static.T
        i, f, o, g = (gates[:, k * d:(k + 1) * d] for k in range(4))
        c = cont[t][:, None] * _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs), h, c


def _layer(kind, num_output=3, static=False, expose=False, name=None):
    states = ["h_0", "c_0"] if kind == "LSTM" else ["h_0"]
    bottoms = ["x", "cont"] + (["x_static"] if static else []) + (states if expose else [])
    tops = ["y"] + ([s.replace("_0", "_T") for s in states] if expose else [])
    text = (f'name: "{name or kind.lower()}" type: "{kind}" '
            + " ".join(f'bottom: "{b}"' for b in bottoms) + " "
            + " ".join(f'top: "{t}"' for t in tops)
            + f" recurrent_param {{ num_output: {num_output} {FILLERS}"
            + (" expose_hidden: true" if expose else "") + " }")
    return build_layer(text)


def _run(layer, bottoms, n_tops=1):
    top = [Blob() for _ in range(n_tops)]
    layer.setup(bottoms, top)
    layer.reshape(bottoms, top)
    layer.forward(bottoms, top)
    return top


def _data(t_steps=4, n=3, shape=(5,), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t_steps, n) + shape).astype(np.float32)
    cont = np.ones((t_steps, n), np.float32)
    cont[0] = 0
    return x, cont


# --- parameter layout -----------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "static", "shapes"), [
    ("RNN", False, [(3, 10), (3,), (3, 3), (3, 3), (3,)]),
    ("RNN", True, [(3, 10), (3,), (3, 4), (3, 3), (3, 3), (3,)]),
    ("LSTM", False, [(12, 10), (12,), (12, 3)]),
    ("LSTM", True, [(12, 10), (12,), (12, 4), (12, 3)]),
])
def test_parameter_blobs_in_caffes_order(kind, static, shapes):
    """The unrolled net's owner parameters, in Caffe's order; x (T, N, 2, 5) gives K = 10."""
    x, cont = _data(shape=(2, 5))
    bottoms = [blob_from(x), blob_from(cont)]
    if static:
        bottoms.append(blob_from(np.ones((3, 2, 2))))
    layer = _layer(kind, static=static)
    with capture_log() as log:
        _run(layer, bottoms)
    assert [b.shape for b in layer.blobs] == shapes
    names = {"RNN": ["W_xh", "b_h", "W_xh_static", "W_hh", "W_ho", "b_o"],
             "LSTM": ["W_xc", "b_c", "W_xc_static", "W_hc"]}[kind]
    if not static:
        names = [n for n in names if not n.endswith("_static")]
    assert [m for m in log.messages if m.startswith("Adding parameter")] == [
        f"Adding parameter {i}: {n}" for i, n in enumerate(names)]
    assert ("Initializing recurrent layer: assuming input batch contains 4 timesteps of 3 "
            "independent streams.") in log.messages


# --- forward against the references -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
@pytest.mark.parametrize("static", [False, True])
def test_forward_matches_reference(kind, static):
    x, cont = _data(shape=(2, 3))
    cont[2, 1] = 0  # stream 1 starts a new sequence at t = 2
    xs = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)
    bottoms = [blob_from(x), blob_from(cont)] + ([blob_from(xs)] if static else [])
    layer = _layer(kind, static=static)
    (top,) = _run(layer, bottoms)
    blobs = [b.data for b in layer.blobs]
    ref = (rnn_reference if kind == "RNN" else lstm_reference)(
        x, cont, blobs, x_static=xs if static else None)[0]
    assert top.shape == (4, 3, 3)
    np.testing.assert_allclose(top.data, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_cont_zero_restarts_the_sequence(kind):
    """After cont = 0 at t = 2, stream 0 computes what a fresh sequence from t = 2 computes."""
    x, cont = _data(t_steps=5, n=2)
    cont[2, 0] = 0
    layer = _layer(kind)
    (top,) = _run(layer, [blob_from(x), blob_from(cont)])
    fresh = _layer(kind)  # same seed, same weights
    tail_cont = np.ones((3, 2), np.float32)
    tail_cont[0] = 0
    (tail,) = _run(fresh, [blob_from(x[2:]), blob_from(tail_cont)])
    np.testing.assert_allclose(top.data[2:, 0], tail.data[:, 0], rtol=1e-6, atol=1e-7)
    # Stream 1 kept its history, so it differs from a fresh start.
    assert not np.allclose(top.data[2:, 1], tail.data[:, 1], atol=1e-4)


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_state_carries_over_to_the_next_forward(kind):
    """Without expose_hidden the last state starts the next pass (Caffe's long sequences)."""
    x, cont = _data(t_steps=6, n=2)
    whole = _layer(kind)
    (full,) = _run(whole, [blob_from(x), blob_from(cont)])
    halves = _layer(kind)
    first = [blob_from(x[:3]), blob_from(cont[:3])]
    top = _run(halves, first)
    np.testing.assert_allclose(top[0].data, full.data[:3], rtol=1e-6, atol=1e-7)
    second = [blob_from(x[3:]), blob_from(cont[3:])]
    halves.reshape(second, top)
    halves.forward(second, top)
    np.testing.assert_allclose(top[0].data, full.data[3:], rtol=1e-5, atol=1e-6)
    # The state survives a snapshot (get_state/set_state) too.
    state = halves.get_state()
    other = _layer(kind)
    _run(other, first)
    other.set_state(state)
    again = [Blob()]
    other.reshape(second, again)
    other.forward(second, again)
    halves.forward(second, top)
    np.testing.assert_array_equal(again[0].data, top[0].data)


def test_lstm_expose_hidden_resumes_a_sequence():
    x, cont = _data(t_steps=6, n=2)
    full_h, _, _ = lstm_reference(x, cont, [b.data for b in _run_weights("LSTM")])
    layer = _layer("LSTM", expose=True)
    zeros = np.zeros((1, 2, 3), np.float32)
    top = _run(layer, [blob_from(x[:3]), blob_from(cont[:3]), blob_from(zeros),
                       blob_from(zeros)], n_tops=3)
    h_t, c_t = top[1].data.copy(), top[2].data.copy()
    assert h_t.shape == c_t.shape == (1, 2, 3)
    np.testing.assert_array_equal(h_t[0], top[0].data[2])
    again = _layer("LSTM", expose=True)
    top2 = _run(again, [blob_from(x[3:]), blob_from(cont[3:]), blob_from(h_t),
                        blob_from(c_t)], n_tops=3)
    np.testing.assert_allclose(top2[0].data, full_h[3:], rtol=1e-5, atol=1e-6)
    # Exposed initial states are used as given every pass: nothing carries over.
    again.forward([blob_from(x[3:]), blob_from(cont[3:]), blob_from(h_t), blob_from(c_t)],
                  top2)
    np.testing.assert_allclose(top2[0].data, full_h[3:], rtol=1e-5, atol=1e-6)
    assert again.get_state() is None


def test_rnn_expose_hidden_uses_h0():
    x, cont = _data(t_steps=3, n=2)
    cont[0] = 1  # continue from the given h_0
    h0 = np.random.default_rng(9).standard_normal((1, 2, 3)).astype(np.float32)
    layer = _layer("RNN", expose=True)
    top = _run(layer, [blob_from(x), blob_from(cont), blob_from(h0)], n_tops=2)
    ref, h_last = rnn_reference(x, cont, [b.data for b in layer.blobs], h0=h0)
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(top[1].data[0], h_last, rtol=1e-5, atol=1e-6)


def _run_weights(kind):
    x, cont = _data(t_steps=6, n=2)
    layer = _layer(kind)
    _run(layer, [blob_from(x), blob_from(cont)])
    return layer.blobs


# --- backward -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
@pytest.mark.parametrize("static", [False, True])
def test_gradient_through_time(kind, static):
    """cont = 0 only at t = 0 (so the carried state is multiplied away): every weight, x and
    x_static get exact gradients through the whole recurrence, including a reset mid-way."""
    x, cont = _data(t_steps=4, n=2, shape=(3,), seed=4)
    cont[2, 1] = 0
    bottoms = [blob_from(x), blob_from(cont)]
    check = [0]
    if static:
        bottoms.append(blob_from(np.random.default_rng(2).standard_normal((2, 2))))
        check.append(2)
    layer = _layer(kind, num_output=2, static=static)
    checker = GradientChecker(1e-2, 1e-3)
    checker.check_gradient_exhaustive(layer, bottoms, [Blob()], check_bottom=check)
    assert checker.checked > 0


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_no_gradient_into_cont_or_exposed_states(kind):
    n_states = 2 if kind == "LSTM" else 1
    x, cont = _data(t_steps=3, n=2)
    states = [blob_from(np.ones((1, 2, 3))) for _ in range(n_states)]
    bottoms = [blob_from(x), blob_from(cont)] + states
    layer = _layer(kind, expose=True)
    top = _run(layer, bottoms, n_tops=1 + n_states)
    for t in top:
        t.diff[...] = 1
    for b in bottoms:
        b.diff[...] = 5
    layer.backward(top, [True] * len(bottoms), bottoms)
    assert np.abs(bottoms[0].diff).sum() > 0
    for b in bottoms[1:]:
        assert (b.diff == 0).all()
    assert not layer.allow_force_backward(1) and layer.allow_force_backward(0)


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_param_diffs_accumulate_and_respect_param_propagate_down(kind):
    x, cont = _data()
    bottoms = [blob_from(x), blob_from(cont)]
    layer = _layer(kind)
    (top,) = _run(layer, bottoms)
    top.diff[...] = np.random.default_rng(1).standard_normal(top.shape)
    layer.backward([top], [True, False], bottoms)
    first = [b.diff.copy() for b in layer.blobs]
    dx = bottoms[0].diff.copy()
    assert all(np.abs(d).sum() > 0 for d in first)
    layer.param_propagate_down[0] = False
    layer.backward([top], [True, False], bottoms)
    np.testing.assert_array_equal(layer.blobs[0].diff, first[0])
    for blob, d in zip(layer.blobs[1:], first[1:]):
        np.testing.assert_allclose(blob.diff, 2 * d, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bottoms[0].diff, dx)


# --- errors ---------------------------------------------------------------------------------------
def test_errors_name_the_layer():
    x, cont = _data()
    with pytest.raises(NetError, match=r"layer 'lstm' \(LSTM\): recurrent_param.num_output"):
        _run(build_layer('name: "lstm" type: "LSTM" bottom: "x" bottom: "c" top: "y"'),
             [blob_from(x), blob_from(cont)])
    with pytest.raises(NetError, match=r"bottom\[1\] \(cont\) must have shape"):
        _run(_layer("RNN"), [blob_from(x), blob_from(cont[:, :2])])
    with pytest.raises(NetError, match="takes exactly 3 top blob"):
        _run(_layer("LSTM", expose=True), [blob_from(x), blob_from(cont), Blob((1, 3, 3)),
                                           Blob((1, 3, 3))])
    with pytest.raises(NetError, match=r"bottom\[3\] \(c_0\) shape must match"):
        _run(_layer("LSTM", expose=True), [blob_from(x), blob_from(cont), Blob((1, 3, 3)),
                                           Blob((1, 2, 3))], n_tops=3)
    layer = _layer("RNN")
    top = _run(layer, [blob_from(x), blob_from(cont)])
    with pytest.raises(NetError, match="the weights expect 5"):
        layer.reshape([blob_from(x[..., :4]), blob_from(cont)], top)


# --- LSTMUnit -------------------------------------------------------------------------------------
def test_lstm_unit_forward_and_cont():
    rng = np.random.default_rng(0)
    c_prev = rng.standard_normal((1, 3, 2)).astype(np.float32)
    gates = rng.standard_normal((1, 3, 8)).astype(np.float32)
    cont = np.array([[1, 0, 1]], np.float32)
    layer = build_layer('type: "LSTMUnit" bottom: "c0" bottom: "x" bottom: "cont" '
                        'top: "c" top: "h"')
    c, h = _run(layer, [blob_from(c_prev), blob_from(gates), blob_from(cont)], n_tops=2)
    g = gates[0].astype(np.float64)
    i, f, o, cand = _sigmoid(g[:, 0:2]), _sigmoid(g[:, 2:4]), _sigmoid(g[:, 4:6]), np.tanh(
        g[:, 6:8])
    ref_c = cont[0][:, None] * f * c_prev[0] + i * cand
    np.testing.assert_allclose(c.data[0], ref_c, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h.data[0], o * np.tanh(ref_c), rtol=1e-6, atol=1e-7)
    # cont = 0: the forget gate is exactly 0, so the previous cell is dropped, however large.
    c_prev[0, 1] = 1e30
    c2, _ = _run(layer, [blob_from(c_prev), blob_from(gates), blob_from(cont)], n_tops=2)
    np.testing.assert_allclose(c2.data[0, 1], (i * cand)[1], rtol=1e-6)


def test_lstm_unit_refuses_gradient_to_cont_and_checks_shapes():
    layer = build_layer('name: "u" type: "LSTMUnit" bottom: "c0" bottom: "x" bottom: "cont" '
                        'top: "c" top: "h"')
    bottoms = [Blob((1, 2, 3)), Blob((1, 2, 12)), Blob((1, 2))]
    top = _run(layer, bottoms, n_tops=2)
    assert top[0].shape == top[1].shape == (1, 2, 3)
    with pytest.raises(NetError, match="cannot backpropagate to the sequence indicators"):
        layer.backward(top, [True, True, True], bottoms)
    assert not layer.allow_force_backward(2)
    with pytest.raises(NetError, match=r"bottom\[1\] \(gate input\) must have 4 \* 3"):
        _run(layer, [Blob((1, 2, 3)), Blob((1, 2, 8)), Blob((1, 2))], n_tops=2)
    with pytest.raises(NetError, match=r"bottom\[2\] must have shape \(1, N\)"):
        _run(layer, [Blob((1, 2, 3)), Blob((1, 2, 12)), Blob((2,))], n_tops=2)


# --- in a net: weights in Caffe's layout round-trip -----------------------------------------------
LSTM_NET = f"""
name: "seq"
layer {{ name: "in" type: "Input" top: "x" top: "cont"
        input_param {{ shape {{ dim: 4 dim: 2 dim: 3 }} shape {{ dim: 4 dim: 2 }} }} }}
layer {{ name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
        recurrent_param {{ num_output: 3 {FILLERS} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "h" top: "y"
        inner_product_param {{ num_output: 2 axis: 2 {FILLERS} }} }}
"""


def test_lstm_in_a_net_saves_and_loads_its_weights():
    param = parse_text_proto(LSTM_NET, caffe_pb2.NetParameter(), "seq.prototxt")
    net = Net(param, rng=np.random.default_rng(1))
    x, cont = _data(n=2, shape=(3,))
    net.blobs["x"].data[...] = x
    net.blobs["cont"].data[...] = cont
    net.forward_loss()
    y = net.blobs["y"].data.copy()
    saved = net.to_proto()
    assert [tuple(b.shape.dim) for b in saved.layer[1].blobs] == [(12, 3), (12,), (12, 3)]
    other = Net(param, rng=np.random.default_rng(2))
    other.copy_trained_layers_from(saved, "seq.caffemodel")
    other.blobs["x"].data[...] = x
    other.blobs["cont"].data[...] = cont
    other.forward_loss()
    np.testing.assert_array_equal(other.blobs["y"].data, y)
