"""The watchers of test net #0's outputs on their own: the decisions of early stopping and
the plateau policy pass by pass, and their state, which a snapshot keeps and rank 0 sends to
the other ranks."""

from __future__ import annotations

import logging

import pytest

from pyforge.errors import SolverError
from pyforge.proto import caffe_pb2
from pyforge.solvers.lr_policy import LrState
from pyforge.solvers.testing import OutputWatchers

LOG = logging.getLogger("test_testing")


def watchers(**fields) -> OutputWatchers:
    return OutputWatchers(caffe_pb2.SolverParameter(**fields), ["accuracy", "loss"], LOG)


def test_early_stopping_after_patience_passes_without_a_better_value():
    w = watchers(early_stop_patience=2, early_stop_metric="loss")
    lr = LrState()
    decisions = [w.after_pass({"accuracy": 0.5, "loss": loss}, it, None, lr, lambda: 0.1)
                 for it, loss in enumerate([3.0, 2.0, 2.5, 1.0, 1.5, 1.2])]
    # min mode for a loss: 2.5 is one bad pass, 1.5 and 1.2 two.
    assert decisions == [False, False, False, False, False, True]
    assert (w.early.best, w.early.best_iter, w.early.bad_passes) == (1.0, 3, 2)


def test_plateau_cuts_the_lr_then_waits_its_cooldown():
    w = watchers(lr_policy="plateau", plateau_patience=2, plateau_cooldown=1)
    lr = LrState()

    def rate() -> float:
        return 0.1 * 0.5 ** lr.current_step

    steps = []
    for it, accuracy in enumerate([0.5, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3]):
        assert not w.after_pass({"accuracy": accuracy, "loss": 1.0}, it, None, lr, rate)
        steps.append(lr.current_step)
    # max mode for accuracy: a cut after 2 bad passes (pass 2), one pass of cooldown (3),
    # then 2 more bad passes (4, 5) before the next cut.
    assert steps == [0, 0, 1, 1, 1, 2, 2]


def test_state_round_trips_and_the_next_decision_is_the_same():
    w = watchers(lr_policy="plateau", plateau_patience=2, plateau_cooldown=3,
                 early_stop_patience=5)
    lr = LrState()
    for it in range(3):
        w.after_pass({"accuracy": 0.5, "loss": 1.0}, it, None, lr, lambda: 0.1)
    saved = w.state()
    assert set(saved) == {"early_watch", "plateau_watch", "plateau_cooldown"}
    fresh = watchers(lr_policy="plateau", plateau_patience=2, plateau_cooldown=3,
                     early_stop_patience=5)
    fresh.load(saved)
    assert fresh.state() == saved and fresh.plateau_cooldown == 3


def test_watchers_need_a_test_output_to_watch():
    with pytest.raises(SolverError, match="early stopping needs a test net"):
        OutputWatchers(caffe_pb2.SolverParameter(early_stop_patience=1), [], LOG)
    with pytest.raises(SolverError, match="early_stop_patience must be >= 0"):
        watchers(early_stop_patience=-1)
    none = watchers()
    assert none.early is None and none.plateau is None
    assert none.state() == {"early_watch": None, "plateau_watch": None, "plateau_cooldown": 0}
