"""lr: every policy's schedule as training computes it, printed as Caffe logs it, the change
points of step and multistep, and the warnings about unused or unset lr parameters."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pyforge.cli import main
from pyforge.errors import PyforgeError, SolverError
from pyforge.insight.lr_schedule import (
    compute_schedule,
    lr_command,
    lr_parameter_warnings,
    parse_iters,
    plot_schedule,
    policy_fields,
    schedule_lines,
)
from pyforge.log import fmt
from pyforge.proto import caffe_pb2
from pyforge.solvers.lr_policy import LrState, get_policy
from tests.conformance.traces import reference_traces
from tests.conftest import REFERENCE
from tests.logcapture import capture_log

CAFFE_POLICIES = {
    "fixed": dict(base_lr=0.01),
    "step": dict(base_lr=0.01, gamma=0.1, stepsize=100),
    "exp": dict(base_lr=0.01, gamma=0.99),
    "inv": dict(base_lr=0.01, gamma=1e-4, power=0.75),
    "multistep": dict(base_lr=0.01, gamma=0.5, stepvalue=[50, 120, 121]),
    "poly": dict(base_lr=0.01, power=2.0),
    "sigmoid": dict(base_lr=0.01, gamma=0.05, stepsize=150),
}


def _param(policy: str, max_iter: int = 300, display: int = 25, **extra):
    fields = dict(CAFFE_POLICIES[policy], **extra)
    stepvalues = fields.pop("stepvalue", ())
    param = caffe_pb2.SolverParameter(lr_policy=policy, max_iter=max_iter, display=display,
                                      **fields)
    param.stepvalue.extend(stepvalues)
    return param


@pytest.mark.parametrize("policy", sorted(CAFFE_POLICIES))
def test_every_policy_gives_the_rates_training_uses(policy):
    param = _param(policy)
    schedule = compute_schedule(param)
    state = LrState()
    rate = get_policy(param).rate
    expected = [float(np.float32(rate(param, it, state))) for it in range(300)]
    assert schedule.rates.tolist() == expected
    assert schedule.iters.tolist() == list(range(300))
    lines = schedule_lines(schedule, param)
    assert lines[0].startswith(f'lr_policy "{policy}": base_lr')
    printed = {int(m.group(1)): m.group(2) for line in lines
               if (m := re.match(r"Iteration (\d+), lr = (\S+)", line))}
    # Every displayed iteration, the first and the last, each as Caffe prints it.
    for it in [*range(0, 300, 25), 299]:
        assert printed[it] == fmt(np.float32(expected[it]))
    assert not lr_parameter_warnings(param)


@pytest.mark.parametrize("run", ["sgd_inv", "sgd_step", "sgd_poly", "sgd_fixed_nomom"])
def test_rates_are_those_caffe_logged(run):
    reference, _, _ = reference_traces(REFERENCE / "runs" / run)
    from pyforge.proto import read_solver_param

    param = read_solver_param(REFERENCE / "runs" / run / "solver.prototxt")
    schedule = compute_schedule(param)
    for it, rate in reference.lr.items():
        assert fmt(np.float32(schedule.rates[it])) == fmt(rate)


def test_step_changes_are_listed_and_multistep_status_is_not_logged():
    param = _param("multistep")
    with capture_log() as log:
        schedule = compute_schedule(param, 0, 300)
    assert [(it, step) for it, step, _ in schedule.changes] == [(50, 1), (120, 2), (121, 3)]
    assert [rate for _, _, rate in schedule.changes] == pytest.approx([0.005, 0.0025, 0.00125])
    assert not [m for m in log.messages if m.startswith("MultiStep Status")]
    lines = schedule_lines(schedule, param)
    assert "Iteration 50, lr = 0.005    <- step 1 begins" in lines
    assert "Iteration 121, lr = 0.00125    <- step 3 begins" in lines
    step = compute_schedule(_param("step"), 150, 300)
    assert step.changes == [(200, 2, pytest.approx(1e-4))]
    assert compute_schedule(_param("inv")).changes == []


def test_a_range_starting_late_keeps_multisteps_state():
    param = _param("multistep")
    late = compute_schedule(param, 130, 140)
    assert late.rates.tolist() == compute_schedule(param).rates[130:140].tolist()
    assert late.changes == []


@pytest.mark.parametrize("text,expected", [
    ("", (0, 300)), ("100:200", (100, 200)), (":50", (0, 50)), ("10:", (10, 300)),
    ("0:1000", (0, 1000)),
])
def test_iteration_ranges(text, expected):
    assert parse_iters(text, 300) == expected


@pytest.mark.parametrize("text,message", [
    ("abc", "--iters expects A:B"), ("5:5", "expects 0 <= A < B, found 5:5"),
    ("-3:5", "expects 0 <= A < B"),
])
def test_bad_iteration_ranges(text, message):
    with pytest.raises(PyforgeError, match=re.escape(message)):
        parse_iters(text, 300)


def test_no_max_iter_needs_a_range():
    with pytest.raises(PyforgeError, match="sets no max_iter; give the range with --iters"):
        parse_iters("", 0)


def test_parameters_the_policy_ignores_are_named():
    assert set(policy_fields()) >= {"gamma", "power", "stepsize", "stepvalue"}
    warnings = lr_parameter_warnings(_param("step", power=0.75, stepvalue=[5]), "s.prototxt")
    assert warnings == [
        's.prototxt: lr_policy "step" does not use power (0.75); it reads base_lr, gamma, '
        "stepsize",
        's.prototxt: lr_policy "step" does not use stepvalue ([5]); it reads base_lr, gamma, '
        "stepsize",
    ]
    fixed = lr_parameter_warnings(_param("fixed", gamma=0.1, stepsize=10))
    assert [w.split(" does not use ")[1].split(" ")[0] for w in fixed] == ["gamma", "stepsize"]


def test_parameters_the_policy_reads_but_are_left_at_zero_are_named():
    param = caffe_pb2.SolverParameter(lr_policy="step", base_lr=0.1, stepsize=10, max_iter=30)
    assert lr_parameter_warnings(param) == [
        'lr_policy "step" reads gamma, which is not set and defaults to 0']
    schedule = compute_schedule(param)
    assert schedule.rates[9] == pytest.approx(0.1) and schedule.rates[10] == 0


def test_invalid_policy_parameters_are_caffes_checks():
    with pytest.raises(SolverError, match="stepsize > 0"):
        compute_schedule(caffe_pb2.SolverParameter(lr_policy="step", base_lr=0.1, gamma=0.1,
                                                   max_iter=10))
    with pytest.raises(SolverError, match="unknown lr_policy 'cosine'"):
        compute_schedule(caffe_pb2.SolverParameter(lr_policy="cosine", max_iter=10))


def test_plot_draws_the_schedule(tmp_path):
    pytest.importorskip("matplotlib")
    from tests.insight.test_plot import assert_png

    schedule = compute_schedule(_param("multistep"))
    figure = plot_schedule(schedule, tmp_path / "lr.png")
    assert_png(tmp_path / "lr.png")
    (ax,) = figure.axes
    assert ax.get_xlabel() == "iteration"
    assert ax.get_ylabel() == "learning rate"
    assert ax.get_ylim()[0] == 0
    line = ax.get_lines()[0]
    assert line.get_label().startswith('lr_policy "multistep" (base_lr = 0.01, gamma = 0.5')
    assert line.get_xdata().tolist() == list(range(300))
    assert line.get_ydata().tolist() == schedule.rates.tolist()
    changes = [line for line in ax.get_lines()[1:]]
    assert [c.get_xdata()[0] for c in changes] == [50, 120, 121]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[1] == "step changes"
    wide = plot_schedule(compute_schedule(_param("exp", max_iter=1000)))
    assert wide.axes[0].get_yscale() == "log"


def test_lr_command_prints_warns_and_plots(tmp_path, capsys):
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "step"\ngamma: 0.1\n'
                      'stepsize: 100\npower: 0.75\nmax_iter: 300\ndisplay: 100\n')
    with capture_log() as log:
        assert main(["lr", str(solver), "--iters", "50:250", "-o", str(tmp_path / "lr.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'lr_policy "step": base_lr * gamma ^ floor(iter / stepsize)'
    assert out[1] == "  with base_lr = 0.01, gamma = 0.1, stepsize = 100"
    assert out[3:] == ["Iteration 50, lr = 0.01", "Iteration 100, lr = 0.001    <- step 1 begins",
                       "Iteration 200, lr = 0.0001    <- step 2 begins",
                       "Iteration 249, lr = 0.0001"]
    assert (tmp_path / "lr.png").exists()
    assert any('does not use power (0.75)' in m for m in log.messages)
    _, lines = lr_command(str(solver), every=50)
    assert "Iteration 150, lr = 0.001" in lines


def test_lr_command_errors_are_one_line(tmp_path, capsys):
    solver = tmp_path / "solver.prototxt"
    solver.write_text('base_lr: 0.01\nlr_policy: "fixed"\n')
    assert main(["lr", str(solver)]) == 1
    assert "sets no max_iter" in capsys.readouterr().err
    assert main(["lr", str(solver), "--iters", "0:10"]) == 0
