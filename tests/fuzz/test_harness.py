"""The fuzz harness's hang alarm counts running time only: while Numba compiles a kernel (the
first input to reach it pays for that, more so on a loaded machine) the alarm waits."""

from __future__ import annotations

import time

import pytest
from numba.core import event as numba_event

from ._harness import Hang, hang_guard


def test_time_spent_compiling_is_not_counted():
    with hang_guard(0.3):
        with numba_event.trigger_event("numba:compile"):  # what Numba signals as it compiles
            with numba_event.trigger_event("numba:compile"):  # compiles nest
                time.sleep(0.5)
        time.sleep(0.1)  # running time: 0.1 s of the 0.3 s


def test_running_time_past_the_budget_is_a_hang():
    with pytest.raises(Hang, match="not counting Numba's compilation"):
        with hang_guard(0.3):
            with numba_event.trigger_event("numba:compile"):
                time.sleep(0.1)
            time.sleep(1.0)
