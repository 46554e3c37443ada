"""Gradient-check cases of the loss layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient


def _sce(extra: str = "") -> str:
    return f'name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" {extra}'


def _infogain(extra: str = "", tops: str = "") -> str:
    return (f'name: "loss" type: "InfogainLoss" bottom: "x" bottom: "label" bottom: "H" {tops} '
            f"{extra}")


def _hinge(extra: str = "") -> str:
    return f'name: "loss" type: "HingeLoss" bottom: "x" bottom: "label" {extra}'


def _contrastive(extra: str = "") -> str:
    return (f'name: "loss" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "sim" '
            f"contrastive_loss_param {{ {extra} }}")


MLL = 'name: "loss" type: "MultinomialLogisticLoss" bottom: "p" bottom: "label"'


#: MultinomialLogisticLoss takes probabilities, and the checker's data may be negative. With the
#: checker's seed (1701) these shapes and data kinds put a value >= 0.3 at every labelled entry,
#: the only entries the loss reads (test_losses.py checks that this still holds).
MLL_CASES = [
    Case("2d", MLL, ((2, 7), (2,)), check_bottom=(0,), labels={1: 7}, data="away"),
    Case("gaussian_6x5", MLL, ((6, 5), (6,)), check_bottom=(0,), labels={1: 5}),
    Case("4d_label_n111", MLL, ((1, 4, 1, 1), (1, 1, 1, 1)), check_bottom=(0,),
         labels={1: 4}, data="away"),
]


CASES: dict[str, list[Case] | NoGradient] = {
    "EuclideanLoss": [
        Case("both", 'type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"',
             ((3, 4, 2), (3, 4, 2))),
        Case("first", 'type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"',
             ((3, 5), (3, 5)), check_bottom=(0,)),
        Case("second_reshaped", 'type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"',
             ((3, 4), (3, 2, 2)), check_bottom=(1,)),
    ],
    "SigmoidCrossEntropyLoss": [
        Case("batch_size_default", _sce(), ((3, 4), (3, 4)), check_bottom=(0,), labels={1: 2}),
        Case("4d_full", _sce("loss_param { normalization: FULL }"), ((2, 2, 2, 2), (2, 2, 2, 2)),
             check_bottom=(0,), labels={1: 2}),
        # Targets of 2 are ignored (they are outside [0, 1], so a leak would show).
        Case("ignore_valid", _sce("loss_param { ignore_label: 2 normalization: VALID }"),
             ((3, 4), (3, 4)), check_bottom=(0,), labels={1: 3}),
        Case("loss_weight", _sce("loss_weight: 2.5 loss_param { normalization: NONE }"),
             ((2, 3), (2, 3)), check_bottom=(0,), labels={1: 2}),
    ],
    "MultinomialLogisticLoss": MLL_CASES,
    "InfogainLoss": [
        Case("axis1", _infogain(), ((3, 4), (3,), (4, 4)), check_bottom=(0,), labels={1: 4}),
        Case("axis2_spatial", _infogain("infogain_loss_param { axis: 2 }"),
             ((2, 2, 3, 2), (2, 2, 2), (3, 3)), check_bottom=(0,), labels={1: 3}),
        Case("ignore_full", _infogain("loss_param { ignore_label: 1 normalization: FULL }"),
             ((3, 3, 2), (3, 2), (1, 1, 3, 3)), check_bottom=(0,), labels={1: 3}),
        Case("prob_top", _infogain("loss_weight: 1 loss_weight: 0", 'top: "loss" top: "prob"'),
             ((3, 4), (3,), (4, 4)), check_bottom=(0,), labels={1: 4}, top_ids=(0,)),
    ],
    # The hinge has kinks where a margin is 0, i.e. at |x| = 1 (Caffe's test settings).
    "HingeLoss": [
        Case("l1", _hinge(), ((3, 4), (3,)), check_bottom=(0,), labels={1: 4},
             threshold=2e-3, kink=1.0, kink_range=0.01),
        Case("l2_4d", _hinge("hinge_loss_param { norm: L2 }"), ((3, 2, 2, 1), (3, 1, 1, 1)),
             check_bottom=(0,), labels={1: 4}, threshold=2e-3, kink=1.0, kink_range=0.01),
    ],
    # A margin of 3 keeps both similar and dissimilar pairs on either side of the hinge; the
    # dissimilar gradient divides by d + 1e-4 (Caffe), hence the threshold of Caffe's test.
    "ContrastiveLoss": [
        Case("margin3", _contrastive("margin: 3"), ((4, 2), (4, 2), (4,)),
             check_bottom=(0, 1), labels={2: 2}, threshold=1e-2),
        Case("legacy_4d", _contrastive("margin: 4 legacy_version: true"),
             ((4, 2, 1, 1), (4, 2, 1, 1), (4, 1, 1, 1)), check_bottom=(0, 1), labels={2: 2},
             threshold=1e-2),
    ],
}
