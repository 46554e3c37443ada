"""Gradient-check cases of the scale layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient

G = 'filler { type: "gaussian" std: 0.8 }'


GB = 'bias_filler { type: "gaussian" std: 0.8 }'


def _scale(extra: str, bottoms: int = 1, in_place: bool = False) -> str:
    names = " ".join(f'bottom: "b{i}"' for i in range(bottoms))
    top = "b0" if in_place else "y"
    return f'type: "Scale" {names} top: "{top}" scale_param {{ {extra} }}'


def _bias(extra: str, bottoms: int = 1, in_place: bool = False) -> str:
    names = " ".join(f'bottom: "b{i}"' for i in range(bottoms))
    top = "b0" if in_place else "y"
    return f'type: "Bias" {names} top: "{top}" bias_param {{ {extra} }}'


CASES: dict[str, list[Case] | NoGradient] = {
    "Scale": [
        Case("axis1", _scale(G), ((2, 3, 2, 2),)),
        Case("bias_term", _scale(f"bias_term: true {G} {GB}"), ((2, 3, 2, 2),)),
        Case("num_axes2", _scale(f"num_axes: 2 {G}"), ((2, 3, 2, 2),)),
        Case("num_axes_all", _scale(f"num_axes: -1 {G}"), ((2, 3, 2),)),
        # One item: the scale is as large as the bottom (Caffe's "eltwise" branch).
        Case("num_axes_all_one_item", _scale(f"num_axes: -1 bias_term: true {G} {GB}"),
             ((1, 3, 2),)),
        Case("scalar", _scale(f"num_axes: 0 bias_term: true {G} {GB}"), ((2, 3, 2),)),
        Case("axis0", _scale(f"axis: 0 {G}"), ((2, 3, 2),)),
        Case("axis-1", _scale(f"axis: -1 {G}"), ((2, 3, 4),)),
        Case("in_place", _scale(f"bias_term: true {G} {GB}", in_place=True), ((2, 3, 2, 2),)),
        Case("two_bottoms", _scale("", 2), ((2, 3, 2, 2), (3,))),
        Case("two_bottoms_2_axes", _scale("", 2), ((2, 3, 2, 2), (3, 2))),
        Case("two_bottoms_axis0", _scale("axis: 0", 2), ((2, 3, 2), (2, 3))),
        Case("two_bottoms_scalar", _scale("", 2), ((2, 3, 2), ())),
        Case("two_bottoms_bias", _scale(f"bias_term: true {GB}", 2), ((2, 3, 2, 2), (3,))),
        Case("two_bottoms_in_place", _scale("", 2, in_place=True), ((2, 3, 2), (3,))),
        Case("two_bottoms_only_scale", _scale("", 2), ((2, 3, 2), (3,)), check_bottom=(1,)),
    ],
    "Bias": [
        Case("axis1", _bias(G), ((2, 3, 2, 2),)),
        Case("num_axes2", _bias(f"num_axes: 2 {G}"), ((2, 3, 2, 2),)),
        Case("num_axes_all", _bias(f"num_axes: -1 {G}"), ((2, 3, 2),)),
        Case("scalar", _bias(f"num_axes: 0 {G}"), ((2, 3, 2),)),
        Case("axis0", _bias(f"axis: 0 {G}"), ((2, 3, 2),)),
        Case("in_place", _bias(G, in_place=True), ((2, 3, 2, 2),)),
        Case("two_bottoms", _bias("", 2), ((2, 3, 2, 2), (3,))),
        Case("two_bottoms_2_axes", _bias("", 2), ((2, 3, 2, 2), (3, 2))),
        Case("two_bottoms_scalar", _bias("", 2), ((2, 3, 2), ())),
        Case("two_bottoms_in_place", _bias("", 2, in_place=True), ((2, 3, 2), (3,))),
    ],
}
