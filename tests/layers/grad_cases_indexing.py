"""Gradient-check cases of the indexing layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient

CASES: dict[str, list[Case] | NoGradient] = {
    # The first reshape gives every top all N items (Caffe's quirk), so the exhaustive mode,
    # which counts top elements right after setup, does not apply: the total objective does.
    "Filter": [
        Case("two_filtered", 'type: "Filter" bottom: "a" bottom: "b" bottom: "sel" top: "fa" '
             'top: "fb"', ((6, 3), (6, 2, 2), (6,)), check_bottom=(0, 1), mode="total",
             labels={2: 2}),
        Case("selector_n111", 'type: "Filter" bottom: "a" bottom: "sel" top: "fa"',
             ((5, 2, 3), (5, 1, 1, 1)), check_bottom=(0,), mode="total", labels={1: 2}),
    ],
    "BatchReindex": [
        Case("repeats", 'type: "BatchReindex" bottom: "x" bottom: "idx" top: "y"',
             ((3, 2, 2), (5,)), check_bottom=(0,), labels={1: 3}),
        Case("1d", 'type: "BatchReindex" bottom: "x" bottom: "idx" top: "y"', ((4,), (6,)),
             check_bottom=(0,), labels={1: 4}),
    ],
}
