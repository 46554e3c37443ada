"""Gradient-check cases of the data layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient, no_bottoms

CASES: dict[str, list[Case] | NoGradient] = {
    # --- data producers: no bottoms, nothing to differentiate --------------------------------
    "Input": NoGradient("data layer: no bottoms; tops are set from outside",
                        no_bottoms("Input")),
    "DummyData": NoGradient("data layer: no bottoms; tops come from fillers",
                            no_bottoms("DummyData")),
    "Data": NoGradient("data layer: no bottoms; tops come from a database",
                       no_bottoms("Data")),
    "MemoryData": NoGradient("data layer: no bottoms; tops come from arrays given in Python",
                             no_bottoms("MemoryData")),
    "Parameter": [
        Case("shape_2x3", 'type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 3 } '
             "}", ()),
    ],
}
