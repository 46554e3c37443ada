"""Gradient-check cases of the inner product layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient

IP = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 }'


FILL = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 }'


def _embed(extra: str) -> str:
    return (f'name: "embed" type: "Embed" bottom: "idx" top: "y" embed_param {{ {extra} '
            f"{FILL} }}")


CASES: dict[str, list[Case] | NoGradient] = {
    # --- parameterised layers ------------------------------------------------------------------
    "InnerProduct": [
        Case("default", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 4 {IP} }}", ((2, 3, 2, 2),)),
        Case("axis2", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 3 axis: 2 {IP} }}", ((2, 3, 4),)),
        Case("axis-1", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 3 axis: -1 {IP} }}", ((2, 2, 3),)),
        Case("transpose", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 4 transpose: true {IP} }}", ((2, 3, 2, 2),)),
        Case("no_bias", f'type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
             f"{{ num_output: 4 bias_term: false {IP} }}", ((3, 5),)),
        Case("transpose_no_bias", f'type: "InnerProduct" bottom: "x" top: "y" '
             f"inner_product_param {{ num_output: 2 transpose: true bias_term: false {IP} }}",
             ((3, 2, 3),)),
    ],
    "Embed": [
        Case("bias", _embed("num_output: 3 input_dim: 4"), ((2, 3),), check_bottom=(),
             labels={0: 4}),
        Case("no_bias_repeats", _embed("num_output: 2 input_dim: 3 bias_term: false"),
             ((7,),), check_bottom=(), labels={0: 3}),
    ],
}
