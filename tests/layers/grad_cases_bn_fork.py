"""Gradient-check cases of the forks' BN layer (pyforge/layers/bn_fork.py), both flavours."""

from __future__ import annotations

from tests.gradient_check import TEST
from tests.layers.grad_case import Case

PSP_FILLERS = ('slope_filler { type: "gaussian" std: 0.8 mean: 1 } '
               'bias_filler { type: "gaussian" std: 0.8 }')
SEG_FILLERS = ('scale_filler { type: "gaussian" std: 0.8 mean: 1 } '
               'shift_filler { type: "gaussian" std: 0.8 }')


def _bn(extra: str, in_place: bool = False, tops: int = 1) -> str:
    names = ["x" if in_place else "y", "batch_mean", "batch_var"][:tops]
    top = " ".join(f'top: "{name}"' for name in names)
    return f'type: "BN" bottom: "x" {top} bn_param {{ {extra} }}'


CASES: dict[str, list[Case]] = {
    "BN": [
        # PSPNet: batch statistics in TRAIN, the slope and bias learned.
        Case("pspnet_train", _bn(f"{PSP_FILLERS} momentum: 0.9"), ((2, 3, 2, 3),)),
        Case("pspnet_train_in_place", _bn(f"{PSP_FILLERS} eps: 0.01", True), ((3, 2, 2, 2),)),
        Case("pspnet_train_2_axes", _bn(PSP_FILLERS), ((6, 3),)),
        # Frozen: stored statistics (mean 0, variance 1 at first); the fork gives the
        # parameters no gradient, on purpose.
        Case("pspnet_frozen", _bn(f"{PSP_FILLERS} frozen: true"), ((2, 3, 2, 2),),
             check_params=False),
        Case("pspnet_frozen_test_in_place", _bn(f"{PSP_FILLERS} frozen: true", True),
             ((2, 2, 3, 2),), check_params=False, phase=TEST),
        # SegNet LEARN: batch statistics in every phase; the mean and variance tops carry no
        # gradient in the fork.
        Case("segnet_learn", _bn(SEG_FILLERS), ((2, 3, 2, 3),)),
        Case("segnet_learn_test_phase", _bn(f"{SEG_FILLERS} bn_mode: LEARN"), ((3, 2, 2, 2),),
             phase=TEST),
        Case("segnet_learn_stat_tops", _bn(SEG_FILLERS, tops=3), ((2, 2, 3, 2),),
             top_ids=(0,)),
        # SegNet INFERENCE: scale * x + shift.
        Case("segnet_inference", _bn(f"{SEG_FILLERS} bn_mode: INFERENCE"), ((2, 3, 2, 2),)),
    ],
}
