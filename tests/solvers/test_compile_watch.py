"""Kernel compilation: said once, when Numba really compiles (a cache hit says nothing), and left
out of the display's speed figures."""

from __future__ import annotations

import h5py
import numba
import numpy as np
from numba.core import event as numba_event

from pyforge.log import get_logger
from pyforge.proto import caffe_pb2
from pyforge.solvers import create_solver
from pyforge.solvers.compile_watch import COMPILE_EVENT, CompileWatch
from tests.logcapture import capture_log

ANNOUNCEMENT = "Compiling kernels for this machine"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nested_compilations_count_once_and_the_note_is_said_once():
    clock = FakeClock()
    with capture_log() as log, CompileWatch(get_logger(), clock=clock) as watch:
        with numba_event.trigger_event(COMPILE_EVENT):
            clock.now += 2.0
            with numba_event.trigger_event(COMPILE_EVENT):  # a kernel called by the kernel
                clock.now += 1.0
            clock.now += 0.5
        clock.now += 10.0  # running, not compiling
        with numba_event.trigger_event(COMPILE_EVENT):
            clock.now += 4.0
    assert watch.seconds == 7.5 and watch.compilations == 2
    assert sum(m.startswith(ANNOUNCEMENT) for m in log.messages) == 1
    # Unregistered after the block: later events are not counted.
    with numba_event.trigger_event(COMPILE_EVENT):
        clock.now += 1.0
    assert watch.seconds == 7.5


def test_a_compilation_begun_before_registration_counts_from_registration():
    clock = FakeClock()
    watch = CompileWatch(get_logger(), clock=clock)
    numba_event.start_event(COMPILE_EVENT)  # a prefetch thread compiling since net setup
    clock.now = 5.0
    with watch:
        clock.now = 6.0
        with numba_event.trigger_event(COMPILE_EVENT):  # a kernel it calls
            clock.now = 8.0
        clock.now = 9.5
        numba_event.end_event(COMPILE_EVENT)
        clock.now = 20.0
        with numba_event.trigger_event(COMPILE_EVENT):
            clock.now = 21.0
    assert watch.seconds == 5.5  # 5.0 .. 9.5 and 20.0 .. 21.0


def test_a_real_compilation_is_seen_and_a_second_call_is_not():
    @numba.njit(cache=False)
    def twice(x):
        return 2 * x

    with capture_log() as log, CompileWatch(get_logger()) as watch:
        assert twice(3) == 6
        first = watch.compilations
        assert twice(4) == 8  # compiled already: no event
    assert first >= 1 and watch.compilations == first and watch.seconds > 0
    assert sum(m.startswith(ANNOUNCEMENT) for m in log.messages) == 1


def _solver(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"] = rng.standard_normal((4, 3)).astype(np.float32)
        f["label"] = rng.standard_normal((4, 1)).astype(np.float32)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'd.h5'}\n")
    (tmp_path / "net.prototxt").write_text(f"""
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{tmp_path / 'list.txt'}" batch_size: 2 }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param {{ num_output: 1 }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "label" top: "loss" }}""")
    param = caffe_pb2.SolverParameter(net=str(tmp_path / "net.prototxt"), base_lr=0.01,
                                      lr_policy="fixed", display=1, max_iter=2, snapshot=0,
                                      snapshot_after_train=False, random_seed=1)
    return create_solver(param, solver_file=str(tmp_path / "solver.prototxt"))


def test_compile_seconds_are_left_out_of_the_speed(tmp_path):
    """Iteration 0 takes 10 s, 7 of them compiling: the display says 3 s. Iteration 1 takes
    10 s without compiling."""
    solver = _solver(tmp_path)
    wall, compile_clock = FakeClock(), FakeClock()
    solver.clock = wall
    solver.compile_watch = CompileWatch(solver.logger, clock=compile_clock)

    def iteration_start():
        if solver.iter == 0:
            with numba_event.trigger_event(COMPILE_EVENT):
                compile_clock.now += 7.0
        wall.now += 10.0

    solver.on_iteration_start = iteration_start
    with capture_log() as log:
        solver.step(2)
    speed = [m.split(", loss")[0] for m in log.messages if m.startswith("Iteration ")
             and "iter/s" in m]
    assert speed == ["Iteration 0 (0 iter/s, 3s/1 iters)",
                     "Iteration 1 (0.1 iter/s, 10s/1 iters)"]
    assert sum(m.startswith(ANNOUNCEMENT) for m in log.messages) == 1
    solver.close()
