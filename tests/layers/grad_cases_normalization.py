"""Gradient-check cases of the normalization layers: BatchNorm, Scale, Bias, LRN, MVN.

Merged into ``GRAD_CASES`` by ``tests/layers/test_gradients.py``. Settings follow Caffe's own
tests where they exist (LRN: threshold 1e-2; the others 1e-3).
"""

from __future__ import annotations

from tests.gradient_check import TEST
from tests.layers.grad_case import Case, NoGradient

G = 'filler { type: "gaussian" std: 0.8 }'
GB = 'bias_filler { type: "gaussian" std: 0.8 }'


def _bn(extra: str = "", in_place: bool = False) -> str:
    top = "x" if in_place else "y"
    return f'type: "BatchNorm" bottom: "x" top: "{top}" batch_norm_param {{ {extra} }}'


def _scale(extra: str, bottoms: int = 1, in_place: bool = False) -> str:
    names = " ".join(f'bottom: "b{i}"' for i in range(bottoms))
    top = "b0" if in_place else "y"
    return f'type: "Scale" {names} top: "{top}" scale_param {{ {extra} }}'


def _bias(extra: str, bottoms: int = 1, in_place: bool = False) -> str:
    names = " ".join(f'bottom: "b{i}"' for i in range(bottoms))
    top = "b0" if in_place else "y"
    return f'type: "Bias" {names} top: "{top}" bias_param {{ {extra} }}'


def _lrn(extra: str) -> str:
    return f'type: "LRN" bottom: "x" top: "y" lrn_param {{ {extra} }}'


def _mvn(extra: str = "", in_place: bool = False) -> str:
    top = "x" if in_place else "y"
    return f'type: "MVN" bottom: "x" top: "{top}" mvn_param {{ {extra} }}'


LRN_TOL = {"threshold": 1e-2}

CASES: dict[str, list[Case] | NoGradient] = {
    "BatchNorm": [
        Case("train", _bn(), ((2, 3, 2, 3),)),
        Case("train_in_place", _bn(in_place=True), ((2, 3, 2, 3),)),
        Case("train_2_axes", _bn(), ((5, 3),)),
        Case("train_eps", _bn("eps: 0.1 moving_average_fraction: 0.5"), ((3, 2, 4),)),
        # Zero statistics: mean 0, var 0, so y = x / sqrt(eps), with the stats as constants.
        Case("global_stats", _bn("use_global_stats: true eps: 0.25"), ((2, 3, 2),)),
        Case("test_phase", _bn("eps: 0.25"), ((2, 3, 2),), phase=TEST),
        Case("test_phase_in_place", _bn("eps: 0.25", in_place=True), ((2, 3, 2),),
             phase=TEST),
    ],
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
    "LRN": [
        Case("across", _lrn("local_size: 3 alpha: 0.8"), ((2, 5, 2, 3),), **LRN_TOL),
        Case("across_default", _lrn(""), ((1, 7, 2, 2),), **LRN_TOL),
        Case("across_k_beta", _lrn("local_size: 5 alpha: 2 beta: 0.5 k: 2"), ((1, 6, 2, 3),),
             **LRN_TOL),
        Case("across_size1", _lrn("local_size: 1 alpha: 1.5"), ((2, 2, 2, 2),), **LRN_TOL),
        Case("within", _lrn("local_size: 3 alpha: 2 norm_region: WITHIN_CHANNEL"),
             ((2, 2, 3, 4),), **LRN_TOL),
        Case("within_default", _lrn("norm_region: WITHIN_CHANNEL"), ((1, 2, 5, 4),),
             **LRN_TOL),
        Case("within_k_ignored", _lrn("local_size: 3 alpha: 0.6 beta: 1.5 k: 7 "
                                      "norm_region: WITHIN_CHANNEL"), ((1, 2, 4, 4),),
             **LRN_TOL),
    ],
    "MVN": [
        Case("default", _mvn(), ((2, 3, 2, 3),)),
        Case("across_channels", _mvn("across_channels: true"), ((2, 3, 2, 2),)),
        Case("mean_only", _mvn("normalize_variance: false"), ((2, 3, 2, 3),)),
        Case("mean_only_across", _mvn("normalize_variance: false across_channels: true"),
             ((2, 3, 2, 2),)),
        # Caffe's mean-only backward is exact in place (the variance one is not).
        Case("mean_only_in_place", _mvn("normalize_variance: false", in_place=True),
             ((2, 3, 2, 2),)),
        Case("two_axes", _mvn(), ((3, 5),)),
        # (A large eps is not checked here: Caffe's gradient treats std + eps as the standard
        # deviation, which is only close to the true gradient for a tiny eps; test_normalization
        # compares it with Caffe's formula instead.)
    ],
}
