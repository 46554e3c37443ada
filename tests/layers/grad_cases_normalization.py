"""Gradient-check cases of the normalization layers (see grad_case.py)."""

from __future__ import annotations

from tests.gradient_check import TEST
from tests.layers.grad_case import Case, NoGradient


def _bn(extra: str = "", in_place: bool = False) -> str:
    top = "x" if in_place else "y"
    return f'type: "BatchNorm" bottom: "x" top: "{top}" batch_norm_param {{ {extra} }}'


def _lrn(extra: str) -> str:
    return f'type: "LRN" bottom: "x" top: "y" lrn_param {{ {extra} }}'


def _mvn(extra: str = "", in_place: bool = False) -> str:
    top = "x" if in_place else "y"
    return f'type: "MVN" bottom: "x" top: "{top}" mvn_param {{ {extra} }}'


LRN_TOL = {"threshold": 1e-2}


PSP_FILLERS = ('slope_filler { type: "gaussian" std: 0.8 mean: 1 } '
               'bias_filler { type: "gaussian" std: 0.8 }')


SEG_FILLERS = ('scale_filler { type: "gaussian" std: 0.8 mean: 1 } '
               'shift_filler { type: "gaussian" std: 0.8 }')


def _fork_bn(extra: str, in_place: bool = False, tops: int = 1) -> str:
    names = ["x" if in_place else "y", "batch_mean", "batch_var"][:tops]
    top = " ".join(f'top: "{name}"' for name in names)
    return f'type: "BN" bottom: "x" {top} bn_param {{ {extra} }}'


def _normalize(across: bool, shared: bool, filler: str = 'type: "uniform" min: 0.5 max: 2') -> str:
    return (f'type: "Normalize" bottom: "x" top: "y" norm_param {{ across_spatial: '
            f"{str(across).lower()} channel_shared: {str(shared).lower()} "
            f"scale_filler {{ {filler} }} }}")


#: Per-channel scales all equal: the fork's bottom gradient is exact only then (it scales the
#: gradient of the unscaled normalisation per channel; test_detection.py checks that formula
#: with distinct scales). The scale gradient is exact either way.
EQUAL_SCALES = 'type: "constant" value: 1.7'


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
    "BN": [
        # PSPNet: batch statistics in TRAIN, the slope and bias learned.
        Case("pspnet_train", _fork_bn(f"{PSP_FILLERS} momentum: 0.9"), ((2, 3, 2, 3),)),
        Case("pspnet_train_in_place", _fork_bn(f"{PSP_FILLERS} eps: 0.01", True), ((3, 2, 2, 2),)),
        Case("pspnet_train_2_axes", _fork_bn(PSP_FILLERS), ((6, 3),)),
        # Frozen: stored statistics (mean 0, variance 1 at first); the fork gives the
        # parameters no gradient, on purpose.
        Case("pspnet_frozen", _fork_bn(f"{PSP_FILLERS} frozen: true"), ((2, 3, 2, 2),),
             check_params=False),
        Case("pspnet_frozen_test_in_place", _fork_bn(f"{PSP_FILLERS} frozen: true", True),
             ((2, 2, 3, 2),), check_params=False, phase=TEST),
        # SegNet LEARN: batch statistics in every phase; the mean and variance tops carry no
        # gradient in the fork.
        Case("segnet_learn", _fork_bn(SEG_FILLERS), ((2, 3, 2, 3),)),
        Case("segnet_learn_test_phase", _fork_bn(f"{SEG_FILLERS} bn_mode: LEARN"), ((3, 2, 2, 2),),
             phase=TEST),
        Case("segnet_learn_stat_tops", _fork_bn(SEG_FILLERS, tops=3), ((2, 2, 3, 2),),
             top_ids=(0,)),
        # SegNet INFERENCE: scale * x + shift.
        Case("segnet_inference", _fork_bn(f"{SEG_FILLERS} bn_mode: INFERENCE"), ((2, 3, 2, 2),)),
    ],
    "Normalize": [
        Case("across_shared", _normalize(True, True), ((2, 3, 2, 3),)),
        Case("across_per_channel", _normalize(True, False, EQUAL_SCALES), ((2, 3, 2, 3),)),
        Case("spatial_shared", _normalize(False, True), ((2, 3, 2, 3),)),
        Case("spatial_per_channel", _normalize(False, False, EQUAL_SCALES), ((2, 3, 2, 3),)),
        Case("two_axes", _normalize(False, True), ((3, 4),)),
    ],
}
