"""pycaffe's solvers from Python: a training loop with callbacks, checked against Caffe's trace
and the CLI; snapshots, restore, solve and the solver classes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import caffe
from pyforge import api
from pyforge.errors import SolverError
from tests.caffe_api.conftest import INIT_WEIGHTS, LENET, write_solver
from tests.logcapture import capture_log


def _trace_losses(caffe_ref) -> dict[int, float]:
    trace = json.loads((caffe_ref / "runs" / "sgd_inv" / "trace.json").read_text())
    return {int(k): v for k, v in trace["two_threads"]["loss"].items()}


def test_solver_loop_with_callbacks_matches_caffe_and_the_cli(in_caffe_ref, tmp_path):
    solver_file = write_solver(tmp_path, max_iter=6, test_interval=3)
    solver = caffe.SGDSolver(solver_file)
    assert isinstance(solver.net, caffe.Net)
    assert all(isinstance(net, caffe.Net) for net in solver.test_nets)
    solver.net.copy_from(INIT_WEIGHTS)  # the pycaffe way to fine-tune
    events: list[tuple[str, int]] = []
    losses: list[float] = []

    def on_start():
        events.append(("start", solver.iter))

    def on_gradients():
        events.append(("gradients", solver.iter))
        losses.append(float(solver.net.blobs["loss"].data))
        # The gradients are there, the update not yet applied.
        assert solver.net.params["ip2"][0].diff.any()

    solver.add_callback(on_start, on_gradients)
    solver.test_nets[0].before_forward(
        lambda layer: events.append(("test", solver.iter)) if layer == 0 else None)
    solver.step(4)
    assert solver.iter == 4
    tests = [("test", 0)] * 2 + [("test", 3)] * 2  # test_iter 2, at iterations 0 and 3
    assert events == [tests[0], tests[1], ("start", 0), ("gradients", 0),
                      ("start", 1), ("gradients", 1), ("start", 2), ("gradients", 2),
                      tests[2], tests[3], ("start", 3), ("gradients", 3)]
    # Caffe's losses for the same weights and data (tolerance of the reference pack).
    caffe_losses = _trace_losses(in_caffe_ref)
    for i, loss in enumerate(losses):
        assert loss == pytest.approx(caffe_losses[i], rel=1e-3)
    # The CLI trains the same files to the same losses, bit for bit.
    with capture_log() as log:
        api.train(solver_file, weights=INIT_WEIGHTS)
    cli = [float(m.group(1)) for m in
           (re.fullmatch(r"Iteration \d+ \(.*\), loss = (\S+)", x) for x in log.messages) if m]
    assert [f"{np.float32(x):g}" for x in losses] == [f"{x:g}" for x in cli[:4]]


def test_nets_of_a_solver_run_from_python(in_caffe_ref, tmp_path):
    solver = caffe.SGDSolver(write_solver(tmp_path))
    solver.net.copy_from(INIT_WEIGHTS)
    first = float(solver.net.forward()["loss"])
    second = float(solver.net.forward()["loss"])
    assert first != second  # the train net's data cursor moves on
    tester = solver.test_nets[0]
    tester.share_with(solver.net)
    assert float(tester.forward()["loss"]) == pytest.approx(2.41096, abs=5e-6)
    separate = caffe.Net(LENET, caffe.TEST)
    solver.share_weights(separate)
    assert float(separate.forward()["loss"]) == pytest.approx(2.41096, abs=5e-6)


def test_snapshot_and_restore_continue_exactly(in_caffe_ref, tmp_path):
    solver_file = write_solver(tmp_path, max_iter=6)
    straight = caffe.SGDSolver(solver_file)
    straight.net.copy_from(INIT_WEIGHTS)
    straight.step(2)
    straight.snapshot()
    assert (tmp_path / "snap_iter_2.caffemodel").exists()
    assert (tmp_path / "snap_iter_2.solverstate").exists()
    straight.step(2)
    resumed = caffe.SGDSolver(solver_file)
    resumed.restore(str(tmp_path / "snap_iter_2.solverstate"))
    assert resumed.iter == 2
    resumed.step(2)
    for name in straight.net.params:
        for a, b in zip(straight.net.params[name], resumed.net.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


def test_solve_runs_to_max_iter_and_can_resume(in_caffe_ref, tmp_path):
    solver_file = write_solver(tmp_path, max_iter=3, extra="snapshot: 2")
    solver = caffe.get_solver(solver_file)
    starts = []
    solver.add_callback(lambda: starts.append(solver.iter), lambda: None)
    solver.solve()
    assert solver.iter == 3 and starts == [0, 1, 2]
    again = caffe.SGDSolver(solver_file)
    again.solve(str(tmp_path / "snap_iter_2.solverstate"))
    assert again.iter == 3


def test_solver_classes_and_get_solver(in_caffe_ref, tmp_path):
    sgd_file = write_solver(tmp_path)
    # The class decides the update rule, whatever type the file names (pycaffe's behaviour).
    adam = caffe.AdamSolver(sgd_file)
    assert adam.type_name == "Adam" and len(adam.history) == 2 * len(adam.net.learnable)
    for cls, name in ((caffe.NesterovSolver, "Nesterov"), (caffe.AdaGradSolver, "AdaGrad"),
                      (caffe.AdaDeltaSolver, "AdaDelta")):
        folder = tmp_path / name
        folder.mkdir()
        extra = "momentum: 0" if name == "AdaGrad" else ""
        path = write_solver(folder, extra=extra)
        if name == "AdaGrad":
            text = (folder / "solver.prototxt").read_text().replace("momentum: 0.9\n", "")
            (folder / "solver.prototxt").write_text(text)
        assert isinstance(cls(path), cls)
    rms_folder = tmp_path / "rms"
    rms_folder.mkdir()
    rms_file = write_solver(rms_folder, extra='type: "RMSProp"')
    text = (rms_folder / "solver.prototxt").read_text().replace("momentum: 0.9\n", "")
    (rms_folder / "solver.prototxt").write_text(text)
    assert isinstance(caffe.get_solver(rms_file), caffe.RMSPropSolver)
    bad_folder = tmp_path / "bad"
    bad_folder.mkdir()
    bad = write_solver(bad_folder, extra='type: "Momentum"')
    with pytest.raises(SolverError, match="unknown solver type 'Momentum'.*known: AdaDelta"):
        caffe.get_solver(bad)


def test_set_random_seed_seeds_solvers_without_their_own(in_caffe_ref, tmp_path):
    path = tmp_path / "solver.prototxt"
    write_solver(tmp_path)
    path.write_text(path.read_text().replace("random_seed: 1701\n", ""))
    caffe.set_random_seed(11)
    first = caffe.SGDSolver(str(path)).net.params["conv1"][0].data.copy()
    caffe.set_random_seed(11)
    second = caffe.SGDSolver(str(path)).net.params["conv1"][0].data.copy()
    np.testing.assert_array_equal(first, second)
    # A solver's own random_seed wins over the global one.
    seeded = write_solver(tmp_path)
    caffe.set_random_seed(11)
    own = caffe.SGDSolver(seeded).net.params["conv1"][0].data
    assert not np.array_equal(own, first)


def test_one_pycaffe_class_per_registered_solver_type():
    """pycaffe's classes are built from the solver registry, so a type registered there has
    its caffe.<Name>Solver: the same name, the update rule of the engine class, pycaffe's
    callbacks on top."""
    from caffe._solver import PYCAFFE_SOLVERS
    from pyforge.solvers import SOLVERS

    assert sorted(PYCAFFE_SOLVERS) == SOLVERS.names() == [
        "AdaDelta", "AdaGrad", "Adam", "Nesterov", "RMSProp", "SGD"]
    for type_name, cls in PYCAFFE_SOLVERS.items():
        engine = SOLVERS.get(type_name)
        assert cls.__name__ == engine.__name__ == f"{type_name}Solver"
        assert issubclass(cls, engine) and cls.type_name == type_name
        assert cls.compute_update_value is engine.compute_update_value
        assert hasattr(cls, "add_callback")
        # Reachable as pycaffe names it, and the very class get_solver builds.
        assert getattr(caffe, cls.__name__) is cls
        assert cls.__module__ == "caffe._solver"
