"""Gradient-check cases of the noise layers (see grad_case.py)."""

from __future__ import annotations

from tests.gradient_check import TEST
from tests.layers.grad_case import Case, NoGradient

N4 = (2, 3, 4, 5)


CASES: dict[str, list[Case] | NoGradient] = {
    "Dropout": [
        Case("train", 'type: "Dropout" bottom: "x" top: "y"', (N4,), mode="eltwise"),
        Case("train_ratio_0.2", 'type: "Dropout" bottom: "x" top: "y" dropout_param '
             "{ dropout_ratio: 0.2 }", (N4,), mode="eltwise"),
        Case("train_in_place", 'type: "Dropout" bottom: "x" top: "x"', (N4,), mode="eltwise"),
        Case("test", 'type: "Dropout" bottom: "x" top: "y"', (N4,), mode="eltwise",
             phase=TEST),
        Case("test_in_place", 'type: "Dropout" bottom: "x" top: "x"', (N4,), mode="eltwise",
             phase=TEST),
        # The forks' fields: Faster R-CNN's unscaled training / scaled test, Bayesian SegNet's
        # sampling at test.
        Case("train_no_scale", 'type: "Dropout" bottom: "x" top: "y" dropout_param '
             "{ scale_train: false }", (N4,), mode="eltwise"),
        Case("test_no_scale", 'type: "Dropout" bottom: "x" top: "y" dropout_param '
             "{ dropout_ratio: 0.3 scale_train: false }", (N4,), mode="eltwise", phase=TEST),
        Case("test_no_scale_in_place", 'type: "Dropout" bottom: "x" top: "x" dropout_param '
             "{ scale_train: false }", (N4,), mode="eltwise", phase=TEST),
        Case("test_sample_weights", 'type: "Dropout" bottom: "x" top: "y" dropout_param '
             "{ sample_weights_test: true }", (N4,), mode="eltwise", phase=TEST),
    ],
}
