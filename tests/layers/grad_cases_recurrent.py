"""Gradient cases of the recurrent family (RNN, LSTM, LSTMUnit) and of the Python layer.

Without ``expose_hidden`` an RNN/LSTM carries its last state into the next forward pass, which
the checker's many forwards would see; those cases use ``cont`` all zero (every timestep starts
a sequence). The ``expose_hidden`` cases take the initial state as a bottom instead, with random
0/1 ``cont``; as in Caffe no gradient flows into those bottoms nor from the final-state tops, so
only the output top and x (and x_static) are checked. tests/layers/test_recurrent.py checks the
recurrence across timesteps with cont = 0 only at t = 0.
"""

from __future__ import annotations

import numpy as np

from pyforge.layers.python_layer import PythonLayerBase
from tests.layers.grad_case import Case

FILLERS = ('weight_filler { type: "gaussian" std: 0.5 } '
           'bias_filler { type: "gaussian" std: 0.5 }')


def _recurrent(kind: str, num_output: int = 2, static: bool = False,
               expose: bool = False) -> str:
    states = ("h_0", "c_0") if kind == "LSTM" else ("h_0",)
    bottoms = ['"x"', '"cont"'] + (['"x_static"'] if static else [])
    tops = ['"y"']
    if expose:
        bottoms += [f'"{s}"' for s in states]
        tops += [f'"{s[0]}_T"' for s in states]
    wiring = " ".join(f"bottom: {b}" for b in bottoms) + " " + " ".join(
        f"top: {t}" for t in tops)
    extra = " expose_hidden: true" if expose else ""
    return (f'name: "{kind.lower()}" type: "{kind}" {wiring} recurrent_param {{ '
            f"num_output: {num_output} {FILLERS}{extra} }}")


def _cases(kind: str) -> list[Case]:
    n_states = 2 if kind == "LSTM" else 1
    state = (1, 2, 2)
    return [
        Case("cont0", _recurrent(kind), ((3, 2, 3), (3, 2)), check_bottom=(0,),
             labels={1: 1}),
        Case("cont0_static", _recurrent(kind, static=True), ((3, 2, 3), (3, 2), (2, 2)),
             check_bottom=(0, 2), labels={1: 1}),
        Case("cont0_x4d", _recurrent(kind, num_output=1), ((2, 2, 2, 2), (2, 2)),
             check_bottom=(0,), labels={1: 1}),
        Case("expose_random_cont", _recurrent(kind, expose=True),
             ((3, 2, 3), (3, 2)) + (state,) * n_states, check_bottom=(0,), labels={1: 2},
             top_ids=(0,)),
        Case("expose_static", _recurrent(kind, static=True, expose=True),
             ((3, 2, 2), (3, 2), (2, 3)) + (state,) * n_states, check_bottom=(0, 2),
             labels={1: 2}, top_ids=(0,)),
    ]


class ScaledProductLayer(PythonLayerBase):
    """A Python layer with a learnable per-channel weight: ``y = s * w[c] * x`` and
    ``z = x * x``, with ``s`` read from param_str."""

    def setup(self, bottom, top):
        self.scale = np.float32(self.param_str or 1)
        self.blobs.add_blob(bottom[0].shape[1])
        self.blobs[0].data[...] = np.linspace(-1.5, 1.5, bottom[0].shape[1])

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)
        top[1].reshape(*bottom[0].shape)

    def _w(self, x):
        return self.blobs[0].data.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, bottom, top):
        x = bottom[0].data
        top[0].data[...] = self.scale * self._w(x) * x
        top[1].data[...] = x * x

    def backward(self, top, propagate_down, bottom):
        x = bottom[0].data
        dy, dz = top[0].diff, top[1].diff
        axes = (0,) + tuple(range(2, x.ndim))
        self.blobs[0].diff += (self.scale * dy * x).sum(axis=axes)
        if propagate_down[0]:
            bottom[0].diff[...] = self.scale * self._w(x) * dy + 2 * x * dz


def _python(param_str: str) -> str:
    return ('name: "py" type: "Python" bottom: "x" top: "y" top: "z" python_param { '
            'module: "tests.layers.grad_cases_recurrent" layer: "ScaledProductLayer" '
            f'param_str: "{param_str}" }}')


CASES = {
    "RNN": _cases("RNN"),
    "LSTM": _cases("LSTM"),
    "LSTMUnit": [
        Case("random_cont", 'type: "LSTMUnit" bottom: "c_prev" bottom: "gates" bottom: "cont" '
             'top: "c" top: "h"', ((1, 3, 2), (1, 3, 8), (1, 3)), check_bottom=(0, 1),
             labels={2: 2}),
        Case("wide", 'type: "LSTMUnit" bottom: "c_prev" bottom: "gates" bottom: "cont" '
             'top: "c" top: "h"', ((1, 2, 4), (1, 2, 16), (1, 2)), check_bottom=(0, 1),
             labels={2: 2}, mode="total"),
    ],
    "Python": [
        Case("scaled_product", _python("1.5"), ((2, 3, 2),)),
        Case("scaled_product_2d", _python("-0.5"), ((4, 2),), mode="total"),
    ],
}
