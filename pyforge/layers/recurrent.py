"""Recurrent layers: RNN, LSTM (Caffe's RecurrentLayer family) and the LSTMUnit step.

Caffe builds RNN and LSTM as an internal "unrolled" net of InnerProduct, Scale, Eltwise, TanH /
LSTMUnit, Slice and Concat layers, one group per timestep, sharing their weights. pyforge
computes the same recurrence directly: the input transform of all timesteps is one GEMM, each
timestep is one small GEMM plus an elementwise step, and the weight gradients are one GEMM each.
The parameter blobs are the unrolled net's owner parameters in Caffe's order and shapes, so
.caffemodel weights load unchanged.

Semantics kept from Caffe:

- ``cont`` (T, N) says whether timestep t continues the sequence of stream n: the previous
  hidden state is multiplied by ``cont`` before it enters the recurrence (LSTM also gates the
  cell with it), so ``cont == 0`` starts a new sequence.
- Without ``expose_hidden`` the state at the last timestep of one forward pass is the initial
  state of the next (zero at first); that is how Caffe runs sequences longer than T. No gradient
  crosses a batch boundary.
- With ``expose_hidden`` the initial states are extra bottoms and the final states extra tops.
  As in Caffe, which shares only their data with the unrolled net, no gradient flows into those
  bottoms (their diffs are set to zero) and the diffs of those tops are ignored.
- ``cont`` gets no gradient (its diff is set to zero when asked for).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np

from ..blob import Blob
from ..kernels import neuron as KN
from ..kernels import recurrent as KR
from .base import Layer, register_layer
from .blas import accumulate_matmul, matmul_into

F32 = np.float32


#: Elements per step from which the parallel kernel variants pay off (waking the thread pool
#: costs more than a small step).
PARALLEL_MIN_ELEMENTS = 8192


def _parallel_for(elements: int) -> bool:
    return elements >= PARALLEL_MIN_ELEMENTS


def _tanh(x: np.ndarray, y: np.ndarray) -> None:
    """``y = tanh(x)`` (float tanh, as Caffe's TanH layer), over contiguous arrays."""
    x, y = x.reshape(-1), y.reshape(-1)
    (KN.tanh_forward if _parallel_for(x.size) else KR.tanh_forward_serial)(x, y)


def _tanh_backward(y: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> None:
    y, dy, dx = y.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    (KN.tanh_backward if _parallel_for(y.size) else KR.tanh_backward_serial)(y, dy, dx)


def _lstm_step(c_prev, x, cont, c, h) -> None:
    step = (KR.lstm_unit_forward if _parallel_for(c_prev.size)
            else KR.lstm_unit_forward_serial)
    step(c_prev, x, cont, c, h)


def _lstm_step_backward(c_prev, x, cont, c, dc, dh, dc_prev, dx, want_c_prev, want_x) -> None:
    step = (KR.lstm_unit_backward if _parallel_for(c_prev.size)
            else KR.lstm_unit_backward_serial)
    step(c_prev, x, cont, c, dc, dh, dc_prev, dx, want_c_prev, want_x)


class RecurrentLayer(Layer):
    """Shared set-up of RNN and LSTM (Caffe's RecurrentLayer).

    Bottoms: x (T, N, ...), cont (T, N), optional static input x_static (N, ...), then with
    ``expose_hidden`` the initial states (1, N, num_output) in ``recurrent_names`` order. Tops:
    the output (T, N, num_output), then with ``expose_hidden`` the final states.
    Params: recurrent_param { num_output, weight_filler, bias_filler, debug_info,
    expose_hidden }.
    """

    #: Names of the recurrent states (Caffe's RecurrentInputBlobNames), in bottom/top order.
    recurrent_names: ClassVar[tuple[str, ...]] = ()
    #: Rows of each weight matrix per output unit (LSTM: the four gates).
    gates: ClassVar[int] = 1

    def __init__(self, param, ctx) -> None:
        super().__init__(param, ctx)
        rp = param.recurrent_param
        self.expose_hidden = bool(rp.expose_hidden)
        self.num_exposed = len(self.recurrent_names) if self.expose_hidden else 0
        # Caffe's Min/MaxBottomBlobs and ExactNumTopBlobs depend on expose_hidden.
        self.min_bottom_blobs = 2 + self.num_exposed
        self.max_bottom_blobs = 3 + self.num_exposed
        self.exact_num_top_blobs = 1 + self.num_exposed
        #: The state carried from one forward pass to the next (without expose_hidden).
        self.carried: list[np.ndarray] | None = None
        self.n_streams = -1

    # --- set-up ------------------------------------------------------------------------------
    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        rp = self.param.recurrent_param
        if rp.num_output <= 0:
            raise self.error("recurrent_param.num_output must be given and positive")
        self.dim = int(rp.num_output)
        self._check_sequence_bottoms(bottom)
        t_steps, n = bottom[0].shape[:2]
        self.ctx.logger.info("Initializing recurrent layer: assuming input batch contains %d "
                             "timesteps of %d independent streams.", t_steps, n)
        self.static_input = len(bottom) > 2 + self.num_exposed
        self.input_dim = bottom[0].count_range(2)
        self.static_dim = bottom[2].count_range(1) if self.static_input else 0
        if rp.debug_info:
            self.ctx.logger.info("%s: recurrent_param.debug_info has no effect: pyforge computes "
                                 "the recurrence directly, without an unrolled net to print",
                                 self.where)
        if not self.blobs:
            self.blobs = [self.make_param(shape, filler, what)
                          for what, shape, filler in self.param_layout()]
        for index, name in self.caffe_param_indices():
            self.ctx.logger.info("Adding parameter %d: %s", index, name)
        self.param_propagate_down = [True] * len(self.blobs)

    @abc.abstractmethod
    def param_layout(self) -> list[tuple[str, tuple[int, ...], object]]:
        """(name, shape, filler) of each parameter blob, in Caffe's order."""

    def caffe_param_indices(self) -> list[tuple[int, str]]:
        """(index in the unrolled net, name) of each owner parameter, for Caffe's log lines.

        The owners come first in the unrolled net (the input transforms, then timestep 1's
        layers), so their indices are simply 0, 1, 2, ..."""
        return [(i, name) for i, (name, _, _) in enumerate(self.param_layout())]

    def _check_sequence_bottoms(self, bottom: list[Blob]) -> None:
        x, cont = bottom[0], bottom[1]
        if x.num_axes < 2:
            raise self.error(f"bottom[0] must have at least 2 axes -- (#timesteps, #streams, "
                             f"...), found shape {x.shape}")
        if cont.num_axes != 2 or cont.shape != x.shape[:2]:
            raise self.error(f"bottom[1] (cont) must have shape (#timesteps, #streams) = "
                             f"{x.shape[:2]}, found {cont.shape}")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self._check_sequence_bottoms(bottom)
        t_steps, n = bottom[0].shape[:2]
        if bottom[0].count_range(2) != self.input_dim:
            raise self.error(f"bottom[0] has {bottom[0].count_range(2)} values per timestep and "
                             f"stream (shape {bottom[0].shape}); the weights expect "
                             f"{self.input_dim}")
        if self.static_input:
            xs = bottom[2]
            if xs.num_axes < 1 or xs.shape[0] != n or xs.count_range(1) != self.static_dim:
                raise self.error(f"bottom[2] (static input) must have shape ({n}, ...) with "
                                 f"{self.static_dim} values per stream, found {xs.shape}")
        state_shape = (1, n, self.dim)
        offset = 2 + int(self.static_input)
        for j, b in enumerate(bottom[offset:]):
            if b.shape != state_shape:
                raise self.error(f"bottom[{offset + j}] ({self.recurrent_names[j]}) shape must "
                                 f"match hidden state input shape: {state_shape}, found "
                                 f"{b.shape}")
        if n != self.n_streams:
            # A new number of streams starts from a zero state.
            self.n_streams = n
            self.carried = None
        top[0].reshape((t_steps, n, self.dim))
        for t in top[1:]:
            t.reshape(state_shape)
        self.steps = t_steps
        self.allocate(t_steps, n)

    def allocate(self, t_steps: int, n: int) -> None:
        """Per-pass buffers for the timesteps (the recurrence needs them in backward)."""
        shape = (t_steps, n, self.dim)
        if getattr(self, "_buffer_shape", None) != shape:
            self._buffer_shape = shape
            self.pre = np.zeros((t_steps, n, self.gates * self.dim), F32)  # pre-activations
            self.conted = np.zeros(shape, F32)  # cont_t * h_{t-1}, what W_hh / W_hc multiply
            self.dpre = np.zeros_like(self.pre)

    def initial_states(self, bottom: list[Blob]) -> list[np.ndarray]:
        """h_0 (and c_0) as (N, D) arrays: exposed bottoms, or the carried state, or zeros."""
        n = bottom[0].shape[1]
        if self.expose_hidden:
            offset = 2 + int(self.static_input)
            return [b.data.reshape(n, self.dim) for b in bottom[offset:]]
        if self.carried is None:
            self.carried = [np.zeros((n, self.dim), F32) for _ in self.recurrent_names]
        return self.carried

    def allow_force_backward(self, bottom_index: int) -> bool:
        # The sequence continuation indicators never get a gradient.
        return bottom_index != 1

    # --- shared pieces of forward / backward -------------------------------------------------
    def input_transform(self, bottom: list[Blob], weight: np.ndarray,
                        bias: np.ndarray | None) -> None:
        """``xw[t] = W x_t (+ b)`` for all timesteps in one GEMM (Caffe's x_transform)."""
        rows = self.steps * self.n_streams
        x = bottom[0].data.reshape(rows, self.input_dim)
        out = self.xw.reshape(rows, -1)
        matmul_into(x, weight.T, out)
        if bias is not None:
            out += bias

    def static_transform(self, bottom: list[Blob], weight: np.ndarray) -> np.ndarray | None:
        if not self.static_input:
            return None
        xs = bottom[2].data.reshape(self.n_streams, self.static_dim)
        out = np.empty((xs.shape[0], weight.shape[0]), F32)
        matmul_into(xs, weight.T, out)
        return out

    def accumulate_input_grads(self, bottom: list[Blob], propagate_down: list[bool],
                               w_index: int, b_index: int | None,
                               ws_index: int | None) -> None:
        """Gradients of the input and static transforms from ``dpre`` (all timesteps)."""
        rows = self.steps * self.n_streams
        dpre = self.dpre.reshape(rows, -1)
        x = bottom[0].data.reshape(rows, self.input_dim)
        if self.param_propagate_down[w_index]:
            accumulate_matmul(dpre.T, x, self.blobs[w_index].diff)
        if b_index is not None and self.param_propagate_down[b_index]:
            self.blobs[b_index].diff += dpre.sum(axis=0, dtype=F32)
        if propagate_down[0]:
            matmul_into(dpre, self.blobs[w_index].data,
                        bottom[0].diff.reshape(rows, self.input_dim))
        if self.static_input and ws_index is not None:
            # The static transform feeds every timestep: its gradient is the sum over time.
            ds = self.dpre.sum(axis=0, dtype=F32)
            xs = bottom[2].data.reshape(self.n_streams, self.static_dim)
            if self.param_propagate_down[ws_index]:
                accumulate_matmul(ds.T, xs, self.blobs[ws_index].diff)
            if propagate_down[2]:
                matmul_into(ds, self.blobs[ws_index].data,
                            bottom[2].diff.reshape(self.n_streams, self.static_dim))
        # Caffe gives no gradient to cont nor (through the exposed bottoms) to the initial state.
        if propagate_down[1]:
            bottom[1].diff[...] = 0
        offset = 2 + int(self.static_input)
        for j in range(offset, len(bottom)):
            if propagate_down[j]:
                bottom[j].diff[...] = 0

    def needs_backward(self, propagate_down: list[bool]) -> bool:
        return any(propagate_down) or any(self.param_propagate_down)

    # --- exact resume ------------------------------------------------------------------------
    def get_state(self) -> dict | None:
        if self.expose_hidden or self.carried is None:
            return None
        return {"streams": self.n_streams,
                "state": [s.ravel().tolist() for s in self.carried]}

    def set_state(self, state: dict) -> None:
        n = int(state["streams"])
        self.n_streams = n
        self.carried = [np.asarray(s, dtype=F32).reshape(n, self.dim) for s in state["state"]]


@register_layer("RNN")
class RNNLayer(RecurrentLayer):
    """Caffe type ``RNN``: ``h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h
    [+ W_xh_static x_static])``, output ``o_t = tanh(W_ho h_t + b_o)``.

    Top o (T, N, num_output); with expose_hidden also bottom h_0 and top h_T (1, N, num_output).
    Params (Caffe's order): W_xh (D, K), b_h (D), [W_xh_static (D, K_static)], W_hh (D, D),
    W_ho (D, D), b_o (D), with D = num_output and K = x's values per timestep and stream.
    """

    recurrent_names = ("h_0",)

    def param_layout(self):
        rp = self.param.recurrent_param
        d = self.dim
        layout = [("W_xh", (d, self.input_dim), rp.weight_filler),
                  ("b_h", (d,), rp.bias_filler)]
        if self.static_input:
            layout.append(("W_xh_static", (d, self.static_dim), rp.weight_filler))
        layout += [("W_hh", (d, d), rp.weight_filler), ("W_ho", (d, d), rp.weight_filler),
                   ("b_o", (d,), rp.bias_filler)]
        return layout

    def allocate(self, t_steps: int, n: int) -> None:
        super().allocate(t_steps, n)
        if getattr(self, "_rnn_shape", None) != (t_steps, n):
            self._rnn_shape = (t_steps, n)
            self.xw = np.zeros((t_steps, n, self.dim), F32)
            self.hidden = np.zeros((t_steps, n, self.dim), F32)
            self.dhidden = np.zeros((t_steps, n, self.dim), F32)
            self.dout_pre = np.zeros((t_steps, n, self.dim), F32)

    def _indices(self) -> tuple[int, int, int | None, int, int, int]:
        s = int(self.static_input)
        return 0, 1, (2 if s else None), 2 + s, 3 + s, 4 + s

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        i_wx, i_bh, i_ws, i_whh, i_who, i_bo = self._indices()
        w_hh = self.blobs[i_whh].data
        self.input_transform(bottom, self.blobs[i_wx].data, self.blobs[i_bh].data)
        static = (self.static_transform(bottom, self.blobs[i_ws].data) if i_ws is not None
                  else None)
        cont = bottom[1].data
        (h_prev,) = self.initial_states(bottom)
        for t in range(self.steps):
            np.multiply(h_prev, cont[t][:, None], out=self.conted[t])
            pre = self.pre[t]
            matmul_into(self.conted[t], w_hh.T, pre)
            pre += self.xw[t]
            if static is not None:
                pre += static
            _tanh(pre, self.hidden[t])
            h_prev = self.hidden[t]
        rows = self.steps * self.n_streams
        out = top[0].data.reshape(rows, self.dim)
        matmul_into(self.hidden.reshape(rows, self.dim), self.blobs[i_who].data.T, out)
        out += self.blobs[i_bo].data
        _tanh(out, out)
        last = self.hidden[self.steps - 1]
        if self.expose_hidden:
            top[1].data[...] = last.reshape(top[1].shape)
        else:
            self.carried[0][...] = last

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not self.needs_backward(propagate_down):
            return
        i_wx, i_bh, i_ws, i_whh, i_who, i_bo = self._indices()
        rows = self.steps * self.n_streams
        # o = tanh(W_ho h + b_o), all timesteps at once.
        _tanh_backward(top[0].data, top[0].diff, self.dout_pre)
        dout = self.dout_pre.reshape(rows, self.dim)
        hidden = self.hidden.reshape(rows, self.dim)
        if self.param_propagate_down[i_who]:
            accumulate_matmul(dout.T, hidden, self.blobs[i_who].diff)
        if self.param_propagate_down[i_bo]:
            self.blobs[i_bo].diff += dout.sum(axis=0, dtype=F32)
        matmul_into(dout, self.blobs[i_who].data, self.dhidden.reshape(rows, self.dim))
        # Back through time; the state's gradient stops at t = 0 (Caffe: no cross-batch flow).
        w_hh = self.blobs[i_whh].data
        cont = bottom[1].data
        dh = np.zeros((self.n_streams, self.dim), F32)
        for t in range(self.steps - 1, -1, -1):
            dh += self.dhidden[t]
            _tanh_backward(self.hidden[t], dh, self.dpre[t])
            if t > 0:
                matmul_into(self.dpre[t], w_hh, dh)
                dh *= cont[t][:, None]
        if self.param_propagate_down[i_whh]:
            accumulate_matmul(self.dpre.reshape(rows, self.dim).T,
                              self.conted.reshape(rows, self.dim), self.blobs[i_whh].diff)
        self.accumulate_input_grads(bottom, propagate_down, i_wx, i_bh, i_ws)


@register_layer("LSTM")
class LSTMLayer(RecurrentLayer):
    """Caffe type ``LSTM``: gates ``[i, f, o, g] = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c
    [+ W_xc_static x_static]``, then Caffe's LSTMUnit: ``c_t = cont_t f c_{t-1} + i g``,
    ``h_t = o tanh(c_t)`` (i, f, o sigmoid; g tanh).

    Top h (T, N, num_output); with expose_hidden also bottoms h_0, c_0 and tops h_T, c_T
    (1, N, num_output), in that order. Params (Caffe's order): W_xc (4D, K), b_c (4D),
    [W_xc_static (4D, K_static)], W_hc (4D, D), with D = num_output.
    """

    recurrent_names = ("h_0", "c_0")
    gates = 4

    def param_layout(self):
        rp = self.param.recurrent_param
        g = 4 * self.dim
        layout = [("W_xc", (g, self.input_dim), rp.weight_filler),
                  ("b_c", (g,), rp.bias_filler)]
        if self.static_input:
            layout.append(("W_xc_static", (g, self.static_dim), rp.weight_filler))
        layout.append(("W_hc", (g, self.dim), rp.weight_filler))
        return layout

    def allocate(self, t_steps: int, n: int) -> None:
        super().allocate(t_steps, n)
        if getattr(self, "_lstm_shape", None) != (t_steps, n):
            self._lstm_shape = (t_steps, n)
            self.xw = np.zeros((t_steps, n, 4 * self.dim), F32)
            self.cells = np.zeros((t_steps, n, self.dim), F32)
            self.hidden = np.zeros((t_steps, n, self.dim), F32)
            self.c0 = np.zeros((n, self.dim), F32)

    def _indices(self) -> tuple[int, int, int | None, int]:
        s = int(self.static_input)
        return 0, 1, (2 if s else None), 2 + s

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        i_wx, i_bc, i_ws, i_whc = self._indices()
        w_hc = self.blobs[i_whc].data
        self.input_transform(bottom, self.blobs[i_wx].data, self.blobs[i_bc].data)
        static = (self.static_transform(bottom, self.blobs[i_ws].data) if i_ws is not None
                  else None)
        cont = bottom[1].data
        h_prev, c_prev = self.initial_states(bottom)
        # Backward needs c_0 after the carried state has moved on.
        self.c0[...] = c_prev
        c_prev = self.c0
        for t in range(self.steps):
            np.multiply(h_prev, cont[t][:, None], out=self.conted[t])
            pre = self.pre[t]
            # Caffe's Eltwise SUM order: W_hc h + W_xc x_t (+ static).
            matmul_into(self.conted[t], w_hc.T, pre)
            pre += self.xw[t]
            if static is not None:
                pre += static
            _lstm_step(c_prev, pre, cont[t], self.cells[t], self.hidden[t])
            h_prev, c_prev = self.hidden[t], self.cells[t]
        top[0].data[...] = self.hidden
        if self.expose_hidden:
            top[1].data[...] = h_prev.reshape(top[1].shape)
            top[2].data[...] = c_prev.reshape(top[2].shape)
        else:
            self.carried[0][...] = h_prev
            self.carried[1][...] = c_prev

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not self.needs_backward(propagate_down):
            return
        i_wx, i_bc, i_ws, i_whc = self._indices()
        rows = self.steps * self.n_streams
        w_hc = self.blobs[i_whc].data
        cont = bottom[1].data
        dtop = top[0].diff
        n, d = self.n_streams, self.dim
        dh = np.zeros((n, d), F32)
        dc = np.zeros((n, d), F32)  # c_T's diff is 0 (Caffe: no gradient across batches)
        dc_prev = np.zeros((n, d), F32)
        for t in range(self.steps - 1, -1, -1):
            dh += dtop[t]
            c_prev = self.cells[t - 1] if t > 0 else self.c0
            _lstm_step_backward(c_prev, self.pre[t], cont[t], self.cells[t], dc, dh, dc_prev,
                                self.dpre[t], True, True)
            dc, dc_prev = dc_prev, dc
            if t > 0:
                matmul_into(self.dpre[t], w_hc, dh)
                dh *= cont[t][:, None]
        if self.param_propagate_down[i_whc]:
            accumulate_matmul(self.dpre.reshape(rows, 4 * d).T, self.conted.reshape(rows, d),
                              self.blobs[i_whc].diff)
        self.accumulate_input_grads(bottom, propagate_down, i_wx, i_bc, i_ws)


@register_layer("LSTMUnit")
class LSTMUnitLayer(Layer):
    """Caffe type ``LSTMUnit``: one LSTM step, as the LSTM layer runs it per timestep.

    Bottoms: c_prev (1, N, D), gate input (1, N, 4D) ordered [i, f, o, g], cont (1, N).
    Tops: c (1, N, D), h (1, N, D). ``c = cont * sigmoid(f) * c_prev + sigmoid(i) * tanh(g)``,
    ``h = sigmoid(o) * tanh(c)``. No parameters; cont gets no gradient.
    """

    exact_num_bottom_blobs = 3
    exact_num_top_blobs = 2

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        n = bottom[0].shape[1] if bottom[0].num_axes > 1 else -1
        for i, b in enumerate(bottom):
            axes = 2 if i == 2 else 3
            if b.num_axes != axes or b.shape[0] != 1 or b.shape[1] != n:
                expected = "(1, N)" if i == 2 else "(1, N, D)" if i == 0 else "(1, N, 4D)"
                raise self.error(f"bottom[{i}] must have shape {expected} with N = {n} from "
                                 f"bottom[0] {bottom[0].shape}, found {b.shape}")
        self.dim = bottom[0].shape[2]
        if bottom[1].shape[2] != 4 * self.dim:
            raise self.error(f"bottom[1] (gate input) must have 4 * {self.dim} = "
                             f"{4 * self.dim} values per stream, found {bottom[1].shape}")
        self.n = n
        top[0].reshape_like(bottom[0])
        top[1].reshape_like(bottom[0])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        n, d = self.n, self.dim
        _lstm_step(bottom[0].data.reshape(n, d), bottom[1].data.reshape(n, 4 * d),
                   bottom[2].data.reshape(n), top[0].data.reshape(n, d),
                   top[1].data.reshape(n, d))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[2]:
            raise self.error("cannot backpropagate to the sequence indicators (bottom[2], cont)")
        if not (propagate_down[0] or propagate_down[1]):
            return
        n, d = self.n, self.dim
        _lstm_step_backward(bottom[0].data.reshape(n, d), bottom[1].data.reshape(n, 4 * d),
                            bottom[2].data.reshape(n), top[0].data.reshape(n, d),
                            top[0].diff.reshape(n, d), top[1].diff.reshape(n, d),
                            bottom[0].diff.reshape(n, d), bottom[1].diff.reshape(n, 4 * d),
                            bool(propagate_down[0]), bool(propagate_down[1]))

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != 2
