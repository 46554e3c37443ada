"""Signal requests reaching the loop (Caffe's SolverAction), acted on by one helper whether
they arrive between training iterations or during a test pass: SNAPSHOT writes a snapshot now,
STOP ends the run, SNAPSHOT_STOP ends it with a snapshot on the way out."""

from __future__ import annotations

import pytest

from pyforge.signals import NONE, SNAPSHOT, SNAPSHOT_STOP, STOP
from pyforge.solvers import create_solver
from tests.solvers.test_loop import Run


class Script:
    """An action answering the n-th poll with ``requests[n]`` (NONE otherwise).

    With test_interval 3, test_iter [2] and no test at iteration 0, the loop polls once after
    each update (polls 0, 1, 2 for iterations 0-2); the test pass of iteration 3 polls before
    each of its passes and again after each request until none is left (poll 3 onwards)."""

    def __init__(self, requests: dict[int, str]) -> None:
        self.requests = requests
        self.polls = 0

    def __call__(self) -> str:
        request = self.requests.get(self.polls, NONE)
        self.polls += 1
        return request


@pytest.fixture
def scripted(tmp_path):
    """Makes the loop net's solver with a scripted action; closes it after the test (a run
    stopped early leaves its metrics file open until then, as in ``pyforge train``)."""
    made = []

    def make(requests: dict[int, str]):
        run = Run(tmp_path)
        param = run.param(test_interval=3, test_iter=[2], test_initialization=False,
                          max_iter=6, snapshot_prefix=str(tmp_path / "snap"))
        made.append(create_solver(param, solver_file=str(tmp_path / "solver.prototxt"),
                                  action=Script(requests)))
        return made[-1]

    yield make
    for solver in made:
        solver.close()


def snapshots(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("snap_iter_*"))


def test_snapshot_during_a_test_pass_writes_one_and_the_pass_goes_on(scripted, tmp_path,
                                                                    pyforge_log):
    solver = scripted({3: SNAPSHOT})
    solver.solve()
    assert snapshots(tmp_path) == ["snap_iter_3.caffemodel", "snap_iter_3.solverstate"]
    at_3 = pyforge_log.index("Iteration 3, Testing net (#0)")
    assert pyforge_log[at_3 + 1].startswith("Snapshotting to binary proto file")
    assert any(m.startswith("    Test net output #0: loss = ") for m in pyforge_log[at_3:])
    assert "Test interrupted." not in pyforge_log
    assert solver.iter == 6 and pyforge_log[-1] == "Optimization Done."


def test_stop_during_a_test_pass_interrupts_it_and_ends_the_run(scripted, tmp_path,
                                                               pyforge_log):
    solver = scripted({4: STOP})  # before the second test pass
    solver.solve()
    assert solver.iter == 3 and snapshots(tmp_path) == []
    at_3 = pyforge_log.index("Iteration 3, Testing net (#0)")
    assert pyforge_log[at_3 + 1:] == ["Test interrupted.", "Optimization stopped early."]


def test_snapshot_stop_during_a_test_pass_snapshots_on_the_way_out(scripted, tmp_path,
                                                                  pyforge_log):
    solver = scripted({3: SNAPSHOT_STOP})
    solver.solve()
    assert solver.iter == 3
    assert snapshots(tmp_path) == ["snap_iter_3.caffemodel", "snap_iter_3.solverstate"]
    assert pyforge_log[-1] == "Optimization stopped early."
    assert "Test interrupted." in pyforge_log


def test_snapshot_stop_between_iterations_is_logged_and_snapshots(scripted, tmp_path,
                                                                  pyforge_log):
    solver = scripted({1: SNAPSHOT_STOP})  # after the update of iteration 1
    solver.solve()
    assert solver.iter == 2
    assert "Stop requested at iteration 2; snapshotting" in pyforge_log
    assert snapshots(tmp_path) == ["snap_iter_2.caffemodel", "snap_iter_2.solverstate"]
    assert pyforge_log[-1] == "Optimization stopped early."


def test_snapshot_between_iterations_keeps_training(scripted, tmp_path, pyforge_log):
    solver = scripted({0: SNAPSHOT})
    solver.solve()
    assert solver.iter == 6 and pyforge_log[-1] == "Optimization Done."
    assert snapshots(tmp_path) == ["snap_iter_1.caffemodel", "snap_iter_1.solverstate"]
    assert not any(m.startswith("Stop requested") for m in pyforge_log)
