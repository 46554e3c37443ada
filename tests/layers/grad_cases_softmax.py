"""Gradient-check cases of the softmax layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient


def _swl(extra: str = "", bottoms: str = 'bottom: "x" bottom: "label"') -> str:
    return f'name: "loss" type: "SoftmaxWithLoss" {bottoms} top: "loss" {extra}'


CASES: dict[str, list[Case] | NoGradient] = {
    # --- softmax and losses ------------------------------------------------------------------
    "Softmax": [
        Case("axis1", 'type: "Softmax" bottom: "x" top: "y"', ((2, 4, 2, 2),)),
        Case("axis2", 'type: "Softmax" bottom: "x" top: "y" softmax_param { axis: 2 }',
             ((2, 2, 3, 2),)),
        Case("axis-1", 'type: "Softmax" bottom: "x" top: "y" softmax_param { axis: -1 }',
             ((3, 5),)),
    ],
    "SoftmaxWithLoss": [
        # Caffe checks losses with threshold 1e-2; pyforge's float32 passes 1e-3.
        Case("default", _swl(), ((2, 5, 2, 3), (2, 1, 2, 3)), check_bottom=(0,),
             labels={1: 5}),
        Case("2d", _swl(), ((4, 5), (4,)), check_bottom=(0,), labels={1: 5}),
        Case("ignore_label", _swl("loss_param { ignore_label: 0 }"), ((3, 4, 2, 2), (3, 2, 2)),
             check_bottom=(0,), labels={1: 4}),
        Case("full", _swl("loss_param { normalization: FULL ignore_label: 1 }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("valid", _swl("loss_param { normalization: VALID ignore_label: 1 }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("batch_size", _swl("loss_param { normalization: BATCH_SIZE }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("none", _swl("loss_param { normalization: NONE }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("normalize_false", _swl("loss_param { normalize: false }"),
             ((3, 4, 2, 2), (3, 2, 2)), check_bottom=(0,), labels={1: 4}),
        Case("axis2", _swl("softmax_param { axis: 2 }"), ((2, 3, 4, 2), (2, 3, 2)),
             check_bottom=(0,), labels={1: 4}),
        # As in Caffe, the probability top is an output only: Backward reads top[0]'s diff.
        Case("prob_top", 'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" '
             'top: "loss" top: "prob" loss_weight: 1 loss_weight: 0',
             ((3, 4), (3,)), check_bottom=(0,), labels={1: 4}, top_ids=(0,)),
        Case("no_top", 'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label"',
             ((3, 4), (3,)), check_bottom=(0,), labels={1: 4}),
    ],
}
