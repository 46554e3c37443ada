"""Gradient-check cases of the recurrent layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient

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


CASES: dict[str, list[Case] | NoGradient] = {
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
}
