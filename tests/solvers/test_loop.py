"""The training loop (Caffe's Solver::Solve / Step / Test / Snapshot / Restore): the order and
content of the log lines, loss smoothing, test scores, snapshots, resuming and the solver-level
parameter checks.

The nets are DummyData -> InnerProduct(num_output 1) -> EuclideanLoss. With constant data (all
inputs ``A``, all targets ``C``) every weight gets the same gradient, so the whole run can be
simulated by hand: ``pred = A * sum(w) + b``, ``loss = (pred - C)^2 / 2``,
``dL/dw_j = (pred - C) * A`` and ``dL/db = pred - C``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from pyforge.errors import SolverError, WeightsError
from pyforge.proto import caffe_pb2, read_binary_proto
from pyforge.solvers import SOLVERS, create_solver

TRAIN_A, TRAIN_C, TRAIN_N = 1.0, 2.0, 4
TEST_A, TEST_C, TEST_N = 2.0, 0.0, 2
K = 3  # inputs per item
W0 = 0.1

_CONST = 'type: "constant" value: %g'
_GAUSS = 'type: "gaussian" std: 1.0'


def _data_layer(phase: str | None, kind: str) -> str:
    """The DummyData layer of ``phase``'s data ("const" or "gauss"), with an include rule
    for that phase unless ``phase`` is None (then: the TRAIN data, no rule)."""
    n, a, c = (TEST_N, TEST_A, TEST_C) if phase == "TEST" else (TRAIN_N, TRAIN_A, TRAIN_C)
    fillers = (_CONST % a, _CONST % c) if kind == "const" else (_GAUSS, _GAUSS)
    include = f"include {{ phase: {phase} }}" if phase else ""
    return f"""
layer {{
  name: "data" type: "DummyData" top: "data" top: "target" {include}
  dummy_data_param {{
    shape {{ dim: {n} dim: {K} }} shape {{ dim: {n} dim: 1 }}
    data_filler {{ {fillers[0]} }} data_filler {{ {fillers[1]} }}
  }}
}}"""


def _body(weight_filler: str, extra_test_output: bool = False) -> str:
    text = f"""
layer {{
  name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param {{ num_output: 1 weight_filler {{ {weight_filler} }}
                         bias_filler {{ {_CONST % 0} }} }}
}}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }}
"""
    if extra_test_output:
        # A second, unweighted output whose name sorts before "loss": "aaa" = ip flattened.
        text += """
layer { name: "aaa" type: "Flatten" bottom: "ip" top: "aaa" include { phase: TEST } }
"""
    return text


def net_text(*, train_data: str = "const", test_data: str | None = "const",
             weight_filler: str = _CONST % W0, extra_test_output: bool = False) -> str:
    """The loop net, train and test phases selected by include rules. ``train_data`` /
    ``test_data``: "const" or "gauss"; ``test_data=None``: no TEST data layer."""
    text = 'name: "LoopNet"' + _data_layer("TRAIN", train_data)
    if test_data is not None:
        text += _data_layer("TEST", test_data)
    return text + _body(weight_filler, extra_test_output)


def single_phase_net_text(phase: str) -> str:
    """A net without include rules holding ``phase``'s constant data (train_net_param /
    test_net_param)."""
    layer = _data_layer(phase, "const").replace(f"include {{ phase: {phase} }}", "")
    return 'name: "LoopNet"' + layer + _body(_CONST % W0)


class Sim:
    """Float64 simulation of SGD on the constant-data net."""

    def __init__(self, lr: float, momentum: float = 0.0, wd: float = 0.0) -> None:
        self.lr, self.momentum, self.wd = lr, momentum, wd
        self.w = np.full(K, W0)
        self.b = 0.0
        self.hw = np.zeros(K)
        self.hb = 0.0

    def train_loss(self) -> float:
        return (TRAIN_A * self.w.sum() + self.b - TRAIN_C) ** 2 / 2

    def test_loss(self) -> float:
        return (TEST_A * self.w.sum() + self.b - TEST_C) ** 2 / 2

    def update(self, lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        r = TRAIN_A * self.w.sum() + self.b - TRAIN_C
        gw = r * TRAIN_A + self.wd * self.w
        gb = r + self.wd * self.b
        self.hw = self.momentum * self.hw + lr * gw
        self.hb = self.momentum * self.hb + lr * gb
        self.w = self.w - self.hw
        self.b = self.b - self.hb


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.count = 0

    def net_file(self, **net_options) -> Path:
        self.count += 1
        path = self.tmp / f"loop_net{self.count}.prototxt"
        path.write_text(net_text(**net_options))
        return path

    def param(self, net_options: dict | None = None, **fields) -> caffe_pb2.SolverParameter:
        stepvalues = fields.pop("stepvalue", ())
        defaults = dict(lr_policy="fixed", base_lr=0.01, random_seed=1701, display=0,
                        max_iter=5, snapshot_after_train=False)
        defaults.update(fields)
        param = caffe_pb2.SolverParameter(net=str(self.net_file(**(net_options or {}))),
                                          **defaults)
        param.stepvalue.extend(stepvalues)
        return param

    def solver(self, net_options: dict | None = None, **fields):
        return create_solver(self.param(net_options, **fields),
                             solver_file=str(self.tmp / "solver.prototxt"))


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(tmp_path)


# --- log-line matching ---------------------------------------------------------------------------

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|inf|nan|-nan)"
_TIMING = r"[-+.\deinaf]+ iter/s, [-+.\deinaf]+s/\d+ iters"
_KEEP = re.compile(r"^(Iteration \d+|    (Train|Test) net output|Snapshotting|Optimization|"
                   r"Test loss|Solving|Learning Rate Policy|Restoring|MultiStep|Gradient)")


def _key_lines(messages: list[str]) -> list[str]:
    return [m for m in messages if _KEEP.match(m)]


def _match_lines(got: list[str], expected: list[tuple[str, list[float]]]) -> None:
    """``expected``: (template, values); in a template "{}" is a number compared with the
    next value (relative 2e-5: the log prints 6 significant digits) and "{T}" the timing."""
    summary = "\n".join(got)
    assert len(got) == len(expected), f"got {len(got)} lines, expected {len(expected)}:\n{summary}"
    for line, (template, values) in zip(got, expected):
        pattern = re.escape(template).replace(r"\{T\}", _TIMING).replace(r"\{\}", _NUM)
        match = re.fullmatch(pattern, line)
        assert match, f"line {line!r} does not match {template!r}\n{summary}"
        numbers = [float(g) for g in match.groups()]
        assert len(numbers) == len(values), template
        for number, value in zip(numbers, values):
            assert number == pytest.approx(value, rel=2e-5, abs=1e-9), (
                f"line {line!r}: {number} != expected {value}")


def _train_display(it: int, loss: float, lr: float) -> list[tuple[str, list[float]]]:
    return [(f"Iteration {it} ({{T}}), loss = {{}}", [loss]),
            ("    Train net output #0: loss = {} (* 1 = {} loss)", [loss, loss]),
            (f"Iteration {it}, lr = {{}}", [lr])]


def _test_lines(it: int, loss: float) -> list[tuple[str, list[float]]]:
    return [(f"Iteration {it}, Testing net (#0)", []),
            ("    Test net output #0: loss = {} (* 1 = {} loss)", [loss, loss])]


def _snapshot_lines(prefix: str, it: int) -> list[tuple[str, list[float]]]:
    return [(f"Snapshotting to binary proto file {prefix}_iter_{it}.caffemodel", []),
            (f"Snapshotting solver state to binary proto file {prefix}_iter_{it}.solverstate",
             [])]


# --- the log of a whole run ----------------------------------------------------------------------

def test_log_sequence_of_a_full_run(run, pyforge_log, tmp_path):
    prefix = str(tmp_path / "loop")
    solver = run.solver(base_lr=0.01, momentum=0.9, weight_decay=0.0005, display=2,
                        test_interval=3, test_iter=[2], snapshot=4, snapshot_prefix=prefix,
                        snapshot_after_train=True, max_iter=6)
    solver.solve()
    sim = Sim(0.01, 0.9, 0.0005)
    losses, tests = [], []
    for _ in range(6):
        losses.append(sim.train_loss())
        tests.append(sim.test_loss())
        sim.update()
    final_loss, final_test = sim.train_loss(), sim.test_loss()
    expected = [("Solving LoopNet", []), ("Learning Rate Policy: fixed", [])]
    expected += _test_lines(0, tests[0])
    expected += _train_display(0, losses[0], 0.01)
    expected += _train_display(2, losses[2], 0.01)
    expected += _test_lines(3, tests[3])
    expected += _snapshot_lines(prefix, 4)  # after the 4th update, before iteration 4 runs
    expected += _train_display(4, losses[4], 0.01)
    expected += _snapshot_lines(prefix, 6)  # snapshot_after_train: 6 % 4 != 0
    expected += [("Iteration 6, loss = {}", [final_loss])]  # Solve's forward-only display
    expected += _test_lines(6, final_test)
    expected += [("Optimization Done.", [])]
    _match_lines(_key_lines(pyforge_log), expected)
    assert solver.iter == 6
    assert sorted(p.name for p in tmp_path.glob("loop_iter_*")) == [
        "loop_iter_4.caffemodel", "loop_iter_4.solverstate",
        "loop_iter_6.caffemodel", "loop_iter_6.solverstate"]
    w, b = solver.net.params["ip"]
    np.testing.assert_allclose(w.data.ravel(), sim.w, rtol=1e-5)
    np.testing.assert_allclose(b.data.ravel(), [sim.b], rtol=1e-5)


def test_no_test_at_iteration_0_without_test_initialization(run, pyforge_log):
    solver = run.solver(test_interval=2, test_iter=[1], test_initialization=False, max_iter=5)
    solver.solve()
    testing = [m for m in pyforge_log if "Testing net" in m]
    # 2 and 4 inside the loop; 5 is not a multiple of 2, so no final test.
    assert testing == ["Iteration 2, Testing net (#0)", "Iteration 4, Testing net (#0)"]
    assert pyforge_log[-1] == "Optimization Done."


def test_tests_at_multiples_of_test_interval_and_at_the_end(run, pyforge_log):
    solver = run.solver(test_interval=2, test_iter=[1], max_iter=4)
    solver.solve()
    testing = [m for m in pyforge_log if "Testing net" in m]
    assert testing == ["Iteration 0, Testing net (#0)", "Iteration 2, Testing net (#0)",
                       "Iteration 4, Testing net (#0)"]


def test_step_alone_does_not_run_the_final_test_or_display(run, pyforge_log):
    solver = run.solver(test_interval=2, test_iter=[1], display=2, max_iter=4)
    solver.step(4)
    keys = _key_lines(pyforge_log)
    assert [m for m in keys if "Testing net" in m] == ["Iteration 0, Testing net (#0)",
                                                       "Iteration 2, Testing net (#0)"]
    assert not [m for m in keys if re.match(r"Iteration \d+, loss = ", m)]
    assert "Optimization Done." not in keys


def test_no_display_lines_with_display_0(run, pyforge_log):
    run.solver(display=0, max_iter=3).solve()
    assert not [m for m in pyforge_log if re.match(r"^Iteration \d+ \(|.*lr = |.*net output", m)]
    assert pyforge_log[-1] == "Optimization Done."


def test_final_display_only_when_max_iter_is_a_multiple_of_display(run, pyforge_log):
    run.solver(display=2, max_iter=5).solve()
    assert not [m for m in pyforge_log if re.match(r"Iteration \d+, loss = ", m)]
    assert [m for m in pyforge_log if re.match(r"Iteration \d+, lr = ", m)] == [
        "Iteration 0, lr = 0.01", "Iteration 2, lr = 0.01", "Iteration 4, lr = 0.01"]


def test_lr_is_printed_and_used_before_the_increment(run, pyforge_log):
    """Iteration N's lr uses iter_ = N: with step policy (stepsize 2, gamma 0.1) iteration 1
    still uses base_lr, iteration 2 the first decayed rate."""
    solver = run.solver(lr_policy="step", base_lr=1.0, gamma=0.1, stepsize=2, display=1,
                        max_iter=5)
    solver.solve()
    lrs = [m for m in pyforge_log if re.match(r"Iteration \d+, lr = ", m)]
    assert lrs == ["Iteration 0, lr = 1", "Iteration 1, lr = 1", "Iteration 2, lr = 0.1",
                   "Iteration 3, lr = 0.1", "Iteration 4, lr = 0.01"]
    sim = Sim(1.0)
    displayed = []
    for it in range(5):
        displayed.append(sim.train_loss())
        sim.update(1.0 * 0.1 ** (it // 2))
    got = [float(m.rsplit("= ", 1)[1]) for m in pyforge_log
           if re.match(r"Iteration \d+ \(", m)]
    np.testing.assert_allclose(got, displayed, rtol=2e-5)
    w = solver.net.params["ip"][0].data.ravel()
    np.testing.assert_allclose(w, sim.w, rtol=1e-5)


def test_multistep_status_in_the_training_log(run, pyforge_log):
    solver = run.solver(lr_policy="multistep", base_lr=1.0, gamma=0.5, stepvalue=[1, 3],
                        display=1, max_iter=4)
    solver.solve()
    keys = [m for m in pyforge_log if re.match(r"MultiStep|Iteration \d+, lr = ", m)]
    assert keys == ["Iteration 0, lr = 1", "MultiStep Status: Iteration 1, step = 1",
                    "Iteration 1, lr = 0.5", "Iteration 2, lr = 0.5",
                    "MultiStep Status: Iteration 3, step = 2", "Iteration 3, lr = 0.25"]
    assert solver.lr_state.current_step == 2


# --- smoothed loss, output lines, tests ----------------------------------------------------------

@pytest.mark.parametrize("average_loss", [1, 3])
def test_average_loss_smoothing(run, pyforge_log, average_loss):
    solver = run.solver(display=1, average_loss=average_loss, max_iter=7, base_lr=0.05)
    solver.solve()
    sim = Sim(0.05)
    raw = []
    for _ in range(7):
        raw.append(sim.train_loss())
        sim.update()
    final = sim.train_loss()
    # Caffe's UpdateSmoothedLoss (start_iter 0), then Solve's final forward pass.
    losses, smoothed, expected = [], 0.0, []
    for it, loss in enumerate([*raw, final]):
        if len(losses) < average_loss:
            losses.append(loss)
            smoothed = (smoothed * (len(losses) - 1) + loss) / len(losses)
        else:
            idx = it % average_loss
            smoothed += (loss - losses[idx]) / average_loss
            losses[idx] = loss
        expected.append(smoothed)
    shown = [float(m.rsplit("= ", 1)[1]) for m in pyforge_log
             if re.match(r"Iteration \d+ \(.*\), loss = ", m)]
    final_line = [m for m in pyforge_log if re.match(r"Iteration 7, loss = ", m)]
    assert len(final_line) == 1
    shown.append(float(final_line[0].rsplit("= ", 1)[1]))
    np.testing.assert_allclose(shown, expected, rtol=2e-5)
    if average_loss > 1:  # the smoothing is visible
        assert not np.allclose(shown, [*raw, final], rtol=1e-3)
    # The "Train net output" lines show the raw loss of the iteration, not the smoothed one.
    outputs = [float(re.match(r"    Train net output #0: loss = (\S+) ", m).group(1))
               for m in pyforge_log if m.startswith("    Train net output")]
    np.testing.assert_allclose(outputs, raw, rtol=2e-5)


def test_average_loss_restarts_with_each_step_call(run, pyforge_log):
    """Step() clears the loss buffer: the first display of a new step() call is unsmoothed."""
    solver = run.solver(display=1, average_loss=4, max_iter=10, base_lr=0.05)
    solver.step(3)
    pyforge_log.clear()
    solver.step(1)
    sim = Sim(0.05)
    for _ in range(3):
        sim.update()
    shown = [float(m.rsplit("= ", 1)[1]) for m in pyforge_log
             if re.match(r"Iteration 3 \(", m)]
    assert shown == [pytest.approx(sim.train_loss(), rel=2e-5)]


def _record_test_losses(net) -> list[float]:
    values: list[float] = []
    forward = net.forward_loss

    def recording_forward(*args, **kwargs):
        loss = forward(*args, **kwargs)
        values.append(float(net.blobs["loss"].data.reshape(-1)[0]))
        return loss

    net.forward_loss = recording_forward
    return values


def test_test_scores_are_means_over_test_iter(run, pyforge_log):
    solver = run.solver(net_options={"test_data": "gauss", "weight_filler": _GAUSS},
                        test_interval=2, test_iter=[5], test_compute_loss=True, max_iter=2)
    assert len(solver.test_nets) == 1
    values = _record_test_losses(solver.test_nets[0])
    solver.solve()
    assert len(values) == 10  # iterations 0 and 2, five batches each
    assert len(set(values)) == 10  # gaussian data: every batch differs
    outputs = [m for m in pyforge_log if m.startswith("    Test net output")]
    test_losses = [m for m in pyforge_log if m.startswith("Test loss: ")]
    assert len(outputs) == 2 and len(test_losses) == 2
    for i, (out, tl) in enumerate(zip(outputs, test_losses)):
        mean = np.mean(values[5 * i: 5 * i + 5])
        match = re.fullmatch(r"    Test net output #0: loss = (\S+) \(\* 1 = (\S+) loss\)", out)
        assert match, out
        assert float(match.group(1)) == pytest.approx(mean, rel=2e-5)
        assert float(match.group(2)) == pytest.approx(mean, rel=2e-5)
        assert float(tl.split(": ")[1]) == pytest.approx(mean, rel=2e-5)
    # "Test loss" comes right after the forward passes, before the output lines.
    first_test_loss = pyforge_log.index(test_losses[0])
    assert pyforge_log[first_test_loss + 1] == outputs[0]


def test_no_test_loss_line_without_test_compute_loss(run, pyforge_log):
    run.solver(test_interval=2, test_iter=[1], max_iter=2).solve()
    assert not [m for m in pyforge_log if m.startswith("Test loss")]


def test_test_outputs_are_ordered_by_name_and_indexed_per_element(run, pyforge_log):
    """Outputs sorted by blob name ("aaa" before "loss"); the index runs over every element;
    an output without loss weight has no "(* w = ...)" part."""
    solver = run.solver(net_options={"extra_test_output": True}, test_interval=10,
                        test_iter=[2], max_iter=1)
    solver.test(0)
    pred = TEST_A * K * W0
    expected = [
        ("    Test net output #0: aaa = {}", [pred]),
        ("    Test net output #1: aaa = {}", [pred]),
        ("    Test net output #2: loss = {} (* 1 = {} loss)", [pred ** 2 / 2] * 2),
    ]
    _match_lines([m for m in pyforge_log if m.startswith("    Test net")], expected)


def test_test_net_uses_the_current_train_weights(run, pyforge_log):
    solver = run.solver(test_interval=1, test_iter=[3], max_iter=3, base_lr=0.05)
    solver.solve()
    sim = Sim(0.05)
    expected = []
    for it in range(4):
        expected += _test_lines(it, sim.test_loss())
        sim.update()
    _match_lines([m for m in _key_lines(pyforge_log)
                  if "Testing net" in m or "Test net output" in m], expected)


def test_test_net_param_and_train_net_param(run, pyforge_log, tmp_path):
    """Nets given inline: train_net_param for training, test_net_param for testing."""
    train = caffe_pb2.NetParameter()
    test = caffe_pb2.NetParameter()
    text_format.Parse(single_phase_net_text("TRAIN"), train)
    text_format.Parse(single_phase_net_text("TEST"), test)
    param = caffe_pb2.SolverParameter(lr_policy="fixed", base_lr=0.05, max_iter=2,
                                      test_interval=1, test_iter=[2], random_seed=1,
                                      snapshot_after_train=False)
    param.train_net_param.CopyFrom(train)
    param.test_net_param.add().CopyFrom(test)
    solver = create_solver(param, solver_file=str(tmp_path / "solver.prototxt"))
    assert "Creating training net specified in train_net_param." in pyforge_log
    assert "Creating test net (#0) specified by test_net_param" in pyforge_log
    assert solver.test_nets[0].blobs["data"].shape == (TEST_N, K)
    solver.solve()
    sim = Sim(0.05)
    expected = []
    for it in range(3):
        expected += _test_lines(it, sim.test_loss())
        sim.update()
    _match_lines([m for m in _key_lines(pyforge_log)
                  if "Testing net" in m or "Test net output" in m], expected)


def test_generic_net_gives_one_test_net_per_test_iter(run, pyforge_log):
    solver = run.solver(test_interval=5, test_iter=[1, 2], max_iter=1)
    assert len(solver.test_nets) == 2
    assert [m for m in pyforge_log if m.startswith("Creating test net")] == [
        f"Creating test net (#0) specified by net file: {solver.param.net}",
        f"Creating test net (#1) specified by net file: {solver.param.net}"]
    solver.solve()
    assert [m for m in pyforge_log if "Testing net" in m] == [
        "Iteration 0, Testing net (#0)", "Iteration 0, Testing net (#1)"]


# --- seeds ---------------------------------------------------------------------------------------

def _gauss_solver(run, seed):
    return run.solver(net_options={"train_data": "gauss", "test_data": None,
                                   "weight_filler": _GAUSS},
                      random_seed=seed, base_lr=0.01, momentum=0.9, max_iter=5)


def test_random_seed_gives_bitwise_identical_runs(run):
    a, b = _gauss_solver(run, 1701), _gauss_solver(run, 1701)
    assert np.array_equal(a.net.params["ip"][0].data, b.net.params["ip"][0].data)
    a.step(5)
    b.step(5)
    for x, y in zip(a.net.params["ip"], b.net.params["ip"]):
        assert np.array_equal(x.data, y.data)
    for x, y in zip(a.history, b.history):
        assert np.array_equal(x.data, y.data)
    c = _gauss_solver(run, 1702)
    c.step(5)
    assert not np.array_equal(a.net.params["ip"][0].data, c.net.params["ip"][0].data)


# --- snapshots -----------------------------------------------------------------------------------

def _weights_of(model_file: str) -> dict[str, list[np.ndarray]]:
    net = read_binary_proto(model_file, caffe_pb2.NetParameter())
    return {layer.name: [np.asarray(blob.data, dtype=np.float32).reshape(tuple(blob.shape.dim))
                         for blob in layer.blobs] for layer in net.layer}


def test_snapshot_files_and_contents(run, pyforge_log, tmp_path):
    prefix = str(tmp_path / "snap")
    solver = run.solver(snapshot=2, snapshot_prefix=prefix, snapshot_after_train=True,
                        momentum=0.9, lr_policy="multistep", stepvalue=[1, 3], gamma=0.5,
                        max_iter=5)
    solver.solve()
    assert sorted(p.name for p in tmp_path.glob("snap_iter_*")) == [
        f"snap_iter_{i}.{ext}" for i in (2, 4, 5) for ext in ("caffemodel", "solverstate")]
    lines = [m for m in pyforge_log if m.startswith("Snapshotting")]
    assert lines == [line for i in (2, 4, 5) for line, _ in _snapshot_lines(prefix, i)]
    # The iter_2 files hold the state after exactly 2 updates.
    other = run.solver(momentum=0.9, lr_policy="multistep", stepvalue=[1, 3], gamma=0.5,
                       max_iter=5)
    other.step(2)
    saved = _weights_of(f"{prefix}_iter_2.caffemodel")
    assert set(saved) >= {"ip"}
    for got, blob in zip(saved["ip"], other.net.params["ip"]):
        assert np.array_equal(got, blob.data)
    state = read_binary_proto(f"{prefix}_iter_2.solverstate", caffe_pb2.SolverState())
    assert state.iter == 2
    assert state.learned_net == f"{prefix}_iter_2.caffemodel"
    assert state.current_step == 1
    assert len(state.history) == 2
    for proto, blob in zip(state.history, other.history):
        assert tuple(proto.shape.dim) == blob.shape
        assert np.array_equal(np.asarray(proto.data, dtype=np.float32), blob.data.ravel())
    final = read_binary_proto(f"{prefix}_iter_5.solverstate", caffe_pb2.SolverState())
    assert final.iter == 5 and final.current_step == 2


def test_no_final_snapshot_when_the_last_iteration_wrote_one(run, pyforge_log, tmp_path):
    prefix = str(tmp_path / "snap")
    run.solver(snapshot=2, snapshot_prefix=prefix, snapshot_after_train=True,
               max_iter=4).solve()
    lines = [m for m in pyforge_log if m.startswith("Snapshotting")]
    assert lines == [line for i in (2, 4) for line, _ in _snapshot_lines(prefix, i)]


def test_snapshot_only_at_the_end_with_snapshot_0(run, pyforge_log, tmp_path):
    prefix = str(tmp_path / "end")
    run.solver(snapshot=0, snapshot_prefix=prefix, snapshot_after_train=True,
               max_iter=3).solve()
    assert sorted(p.name for p in tmp_path.glob("end_iter_*")) == [
        "end_iter_3.caffemodel", "end_iter_3.solverstate"]


def test_no_snapshot_without_snapshot_after_train(run, tmp_path):
    prefix = str(tmp_path / "none")
    run.solver(snapshot=0, snapshot_prefix=prefix, snapshot_after_train=False,
               max_iter=3).solve()
    assert not list(tmp_path.glob("none_iter_*"))


def test_snapshot_without_prefix_is_an_error(run):
    with pytest.raises(SolverError, match="snapshot_prefix"):
        run.solver(snapshot=2, max_iter=3)


# --- restore -------------------------------------------------------------------------------------

def _snapshotted(run, tmp_path, **fields):
    prefix = str(tmp_path / "rs")
    options = dict(momentum=0.9, lr_policy="multistep", stepvalue=[1, 2], gamma=0.5,
                   base_lr=0.05, net_options={"weight_filler": _GAUSS, "test_data": None})
    options.update(fields)
    solver = run.solver(snapshot=3, snapshot_prefix=prefix, max_iter=3, **options)
    solver.solve()
    return solver, prefix, options


def test_restore_brings_back_iter_history_weights_and_current_step(run, tmp_path):
    original, prefix, options = _snapshotted(run, tmp_path)
    fresh = run.solver(random_seed=99, max_iter=6, **options)
    assert not np.array_equal(fresh.net.params["ip"][0].data, original.net.params["ip"][0].data)
    fresh.restore(f"{prefix}_iter_3.solverstate")
    assert fresh.iter == 3
    assert fresh.lr_state.current_step == 2
    for a, b in zip(fresh.net.params["ip"], original.net.params["ip"]):
        assert np.array_equal(a.data, b.data)
    assert len(fresh.history) == len(original.history) == 2
    for a, b in zip(fresh.history, original.history):
        assert np.array_equal(a.data, b.data)
        assert np.abs(a.data).max() > 0
    # Constant data: continuing either gives bitwise the same weights.
    original.step(2)
    fresh.step(2)
    for a, b in zip(fresh.net.params["ip"], original.net.params["ip"]):
        assert np.array_equal(a.data, b.data)


def test_restore_from_a_caffemodel_uses_its_partner_solverstate(run, tmp_path, pyforge_log):
    original, prefix, options = _snapshotted(run, tmp_path)
    fresh = run.solver(random_seed=99, max_iter=6, **options)
    fresh.restore(f"{prefix}_iter_3.caffemodel")
    assert fresh.iter == 3
    assert fresh.lr_state.current_step == 2
    for a, b in zip(fresh.history, original.history):
        assert np.array_equal(a.data, b.data)
    for a, b in zip(fresh.net.params["ip"], original.net.params["ip"]):
        assert np.array_equal(a.data, b.data)


def test_restore_from_a_lone_caffemodel_points_to_weights(run, tmp_path):
    original, prefix, options = _snapshotted(run, tmp_path)
    lone = tmp_path / "lone.caffemodel"
    shutil.copy(f"{prefix}_iter_3.caffemodel", lone)
    fresh = run.solver(max_iter=6, **options)
    with pytest.raises(WeightsError, match="--weights"):
        fresh.restore(str(lone))
    assert fresh.iter == 0


def test_restore_history_count_mismatch(run, tmp_path):
    _, _, options = _snapshotted(run, tmp_path)
    state = caffe_pb2.SolverState(iter=1)
    for _ in range(3):
        blob = state.history.add()
        blob.shape.dim.append(1)
        blob.data.append(0.0)
    path = tmp_path / "three.solverstate"
    path.write_bytes(state.SerializeToString())
    fresh = run.solver(max_iter=6, **options)
    with pytest.raises(WeightsError) as info:
        fresh.restore(str(path))
    message = str(info.value)
    assert re.search(r"\b3\b", message) and re.search(r"\b2\b", message), message


def test_forced_resume_across_solver_types_is_stopped_by_the_history_count(run, tmp_path):
    """--force lets a pyforge state of another solver type through the compatibility check;
    the one history-count check then refuses Adam's two blobs per parameter for SGD."""
    _, prefix, options = _snapshotted(run, tmp_path, type="Adam", momentum=0.9,
                                      lr_policy="fixed")
    options.pop("type")
    sgd = run.solver(max_iter=6, **options)
    with pytest.raises(WeightsError) as info:
        sgd.restore(f"{prefix}_iter_3.solverstate", force=True)
    assert "holds 4 history blobs but a SGD solver on this net needs 2" in str(info.value)
    assert sgd.iter == 0


def test_restore_of_a_missing_file(run, tmp_path):
    solver = run.solver(max_iter=2)
    with pytest.raises(WeightsError):
        solver.restore(str(tmp_path / "missing.solverstate"))


def test_resumed_solve_tests_at_its_start_iteration(run, tmp_path, pyforge_log):
    """iter_ > 0 || test_initialization: a resumed run tests at its first iteration when it is
    a multiple of test_interval, even with test_initialization false."""
    original, prefix, options = _snapshotted(run, tmp_path)
    options["net_options"] = {"weight_filler": _GAUSS}  # with the TEST data layer
    resumed = run.solver(max_iter=5, test_interval=3, test_iter=[1],
                         test_initialization=False, display=1, **options)
    pyforge_log.clear()
    resumed.solve(resume_file=f"{prefix}_iter_3.solverstate")
    keys = _key_lines(pyforge_log)
    assert keys[:5] == ["Solving LoopNet", "Learning Rate Policy: multistep",
                        f"Restoring previous solver status from {prefix}_iter_3.solverstate",
                        "Iteration 3, Testing net (#0)", keys[4]]
    assert keys[4].startswith("    Test net output #0: loss = ")
    assert re.match(r"Iteration 3 \(", keys[5])
    assert resumed.iter == 5


# --- solver-level checks -------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "words"), [
    (dict(average_loss=0), ["average_loss"]),
    (dict(iter_size=0), ["iter_size"]),
    (dict(regularization_type="L3"), ["L3", "regularization_type"]),
    (dict(test_iter=[1], test_interval=0), ["test_interval"]),
    (dict(type="Fancy"), ["Fancy", "SGD"]),
    (dict(type="sgd"), ["sgd", "SGD"]),  # case-sensitive, as in Caffe
])
def test_solver_parameter_checks(run, fields, words):
    with pytest.raises(SolverError) as info:
        run.solver(**fields)
    message = str(info.value)
    if "type" in fields:
        words = [*words, *SOLVERS.names()]  # every registered solver type is listed
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_more_than_one_train_net_source(run, tmp_path):
    param = run.param()
    param.train_net = param.net
    with pytest.raises(SolverError, match="net"):
        create_solver(param)
    param = run.param()
    param.net_param.name = "inline"
    with pytest.raises(SolverError, match="net"):
        create_solver(param)


def test_no_train_net_at_all(tmp_path):
    param = caffe_pb2.SolverParameter(lr_policy="fixed", base_lr=0.1, max_iter=1,
                                      snapshot_after_train=False)
    with pytest.raises(SolverError, match="net"):
        create_solver(param)


def test_test_iter_without_test_nets(run):
    """With only a train_net (no generic net), test_iter must match the test nets (none)."""
    param = run.param(test_iter=[5], test_interval=1)
    param.train_net = param.net
    param.ClearField("net")
    with pytest.raises(SolverError, match="test_iter"):
        create_solver(param)


def test_fewer_test_iter_than_test_net_params(run):
    param = run.param(test_iter=[1], test_interval=1)
    for _ in range(2):
        param.test_net_param.add().CopyFrom(caffe_pb2.NetParameter(name="t"))
    with pytest.raises(SolverError, match="test_iter"):
        create_solver(param)


def test_test_state_count_must_match_the_test_nets(run):
    param = run.param(test_iter=[1, 1], test_interval=1)
    param.test_state.add()
    with pytest.raises(SolverError, match="test_state"):
        create_solver(param)


def test_bad_lr_policy_is_reported_at_construction(run):
    with pytest.raises(SolverError, match="stepsize"):
        run.solver(lr_policy="step", gamma=0.1, stepsize=0)
    with pytest.raises(SolverError, match="lr_policy"):
        run.solver(lr_policy="")
