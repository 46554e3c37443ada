"""Gradient-check cases of the arithmetic layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient


def _reduction(extra: str) -> str:
    return f'name: "r" type: "Reduction" bottom: "x" top: "y" reduction_param {{ {extra} }}'


AXPY = 'type: "Axpy" bottom: "scale" bottom: "x" bottom: "y" top: "out"'


CASES: dict[str, list[Case] | NoGradient] = {
    "Eltwise": [
        Case("sum", 'type: "Eltwise" bottom: "a" bottom: "b" top: "c"',
             ((2, 3, 2), (2, 3, 2)), mode="eltwise"),
        Case("sum_coeff", 'type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "d" '
             "eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }",
             ((2, 3, 2), (2, 3, 2), (2, 3, 2)), mode="eltwise"),
        Case("prod", 'type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "d" '
             "eltwise_param { operation: PROD }", ((2, 3, 2),) * 3, mode="eltwise",
             data="away"),
        Case("prod_unstable", 'type: "Eltwise" bottom: "a" bottom: "b" top: "c" '
             "eltwise_param { operation: PROD stable_prod_grad: false }", ((2, 3, 2),) * 2,
             mode="eltwise", data="away"),
        Case("max", 'type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "d" '
             "eltwise_param { operation: MAX }", ((2, 3, 2),) * 3, data="distinct"),
        # Caffe's own MAX test settings.
        Case("max_caffe", 'type: "Eltwise" bottom: "a" bottom: "b" top: "c" '
             "eltwise_param { operation: MAX }", ((2, 3, 2),) * 2, stepsize=1e-4,
             threshold=1e-2),
    ],
    "Reduction": [
        Case("sum_all", _reduction(""), ((2, 3, 2),)),
        Case("sum_axis1_coeff", _reduction("axis: 1 coeff: -1.5"), ((3, 2, 2),)),
        Case("asum", _reduction("operation: ASUM axis: 1"), ((2, 3, 2),), data="away"),
        Case("sumsq", _reduction("operation: SUMSQ axis: 2 coeff: 0.5"), ((2, 2, 3),)),
        Case("mean", _reduction("operation: MEAN axis: -1 coeff: 2"), ((2, 3, 4),)),
    ],
    "Axpy": [
        Case("scale_nc11", AXPY, ((2, 3, 1, 1), (2, 3, 2, 3), (2, 3, 2, 3))),
        Case("scale_nc", AXPY, ((2, 3), (2, 3, 4), (2, 3, 4))),
        Case("in_place_on_y", AXPY.replace('top: "out"', 'top: "y"'),
             ((2, 2, 1, 1), (2, 2, 3, 2), (2, 2, 3, 2))),
        Case("only_scale", AXPY, ((2, 3, 1, 1), (2, 3, 2, 2), (2, 3, 2, 2)),
             check_bottom=(0,)),
    ],
}
