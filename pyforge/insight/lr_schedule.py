"""A solver's learning-rate schedule, computed without building nets or training.

``pyforge lr solver.prototxt`` answers "which rate will iteration N use?" before a run starts
(user_needs rows 3 and 5). The rates come from the same policy functions the solver calls
(:mod:`pyforge.solvers.lr_policy`), in the same order from iteration 0, so ``multistep``'s
step counter advances exactly as in training, and each printed value is what training logs as
``Iteration N, lr = X``.

It also says which lr parameters the chosen policy ignores (``power`` with ``step``, say) and
which parameters it reads but the solver leaves at their default of 0 (``gamma`` with
``step`` makes the rate drop to 0 at the first step).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import PyforgeError
from ..log import fmt, get_logger
from ..proto import caffe_pb2
from ..solvers.lr_policy import LR_POLICIES, LrState, get_policy

#: Read by every run whatever the policy (max_iter ends training), so never "unused".
ALWAYS_USED = ("base_lr", "max_iter")
#: Parameters whose default of 0 is almost never what the user meant when a policy reads them.
ZERO_DEFAULT_TRAPS = ("base_lr", "gamma", "power")
#: Policies whose rate depends on test results, so it cannot be known before training.
DATA_DEPENDENT = ("plateau",)
#: Policies whose rate changes in steps; their change points are listed and drawn.
STEPPED = ("step", "multistep")


@dataclass
class LrSchedule:
    """The rate of every iteration in ``[start, stop)``."""

    policy: str
    start: int
    stop: int
    iters: np.ndarray
    rates: np.ndarray
    #: (iteration, step number, rate) where a step or multistep policy moves to its next step.
    changes: list[tuple[int, int, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The policy's parameters as ``name = value`` text.
    settings: str = ""


def policy_fields() -> list[str]:
    """Every SolverParameter field some lr policy reads (from the policies' ``uses``)."""
    fields: dict[str, None] = {}
    for name in LR_POLICIES.names():
        for used in LR_POLICIES.get(name).uses:
            if used not in ALWAYS_USED:
                fields.setdefault(used, None)
    return list(fields)


def _is_set(param: caffe_pb2.SolverParameter, name: str) -> bool:
    try:
        return param.HasField(name)
    except ValueError:  # a repeated field
        return len(getattr(param, name)) > 0


def _value(param: caffe_pb2.SolverParameter, name: str) -> str:
    value = getattr(param, name)
    if isinstance(value, float):
        return fmt(value)
    if isinstance(value, (int, str)):
        return str(value)
    return "[" + ", ".join(fmt(v) if isinstance(v, float) else str(v) for v in value) + "]"


def lr_parameter_warnings(param: caffe_pb2.SolverParameter, where: str = "") -> list[str]:
    """Lines about lr parameters that the solver's policy ignores, or reads but leaves at 0.

    ``where`` (the solver file) starts each line. Unknown policies give no lines here; building
    the policy reports them.
    """
    policy_name = param.lr_policy
    if policy_name not in LR_POLICIES:
        return []
    uses = LR_POLICIES.get(policy_name).uses
    prefix = f"{where}: " if where else ""
    lines = []
    for name in policy_fields():
        if name not in uses and _is_set(param, name):
            lines.append(f'{prefix}lr_policy "{policy_name}" does not use {name} '
                         f"({_value(param, name)}); it reads {', '.join(uses)}")
    for name in uses:
        if name in ZERO_DEFAULT_TRAPS and not _is_set(param, name):
            lines.append(f'{prefix}lr_policy "{policy_name}" reads {name}, which is not set and '
                         "defaults to 0")
    return lines


class _DropMultistepStatus(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("MultiStep Status:")


@contextlib.contextmanager
def _quiet_multistep():
    """multistep logs ``MultiStep Status`` when it advances, as Caffe does while training;
    here the change points are part of the printed schedule instead."""
    logger = get_logger()
    quiet = _DropMultistepStatus()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def parse_iters(text: str, max_iter: int) -> tuple[int, int]:
    """``"A:B"`` (either side may be empty) to ``(A, B)``: iterations A to B-1, as a slice.

    The defaults are 0 and the solver's max_iter."""
    if not text:
        start, stop = 0, max_iter
    else:
        left, sep, right = text.partition(":")
        try:
            if not sep:
                raise ValueError
            start = int(left) if left.strip() else 0
            stop = int(right) if right.strip() else max_iter
        except ValueError:
            raise PyforgeError(f'--iters expects A:B (iterations A to B-1, for example 0:10000), '
                               f'found "{text}"') from None
    if stop <= 0 and not text:
        raise PyforgeError("the solver sets no max_iter; give the range with --iters A:B")
    if not 0 <= start < stop:
        raise PyforgeError(f"--iters expects 0 <= A < B, found {start}:{stop}")
    return start, stop


def compute_schedule(param: caffe_pb2.SolverParameter, start: int = 0,
                     stop: int | None = None, where: str = "") -> LrSchedule:
    """The rate of each iteration in ``[start, stop)`` (default: 0 to max_iter).

    Rates are computed from iteration 0, as training computes them, so that policies with state
    (multistep) reach ``start`` in the state training would have.
    """
    if param.lr_policy in DATA_DEPENDENT:
        raise PyforgeError(f'{where + ": " if where else ""}lr_policy "{param.lr_policy}" '
                           "changes the rate when the test results stop improving, so its "
                           "schedule is only known during training; it starts at base_lr = "
                           f"{fmt(param.base_lr)}")
    policy = get_policy(param)
    stop = param.max_iter if stop is None else stop
    start, stop = parse_iters(f"{start}:{stop}", param.max_iter)
    state = LrState()
    rates = np.empty(stop - start, dtype=np.float64)
    changes: list[tuple[int, int, float]] = []
    with _quiet_multistep():
        for it in range(stop):
            before = state.current_step
            rate = float(np.float32(policy.rate(param, it, state)))
            if it >= start:
                rates[it - start] = rate
                if param.lr_policy in STEPPED and state.current_step != before:
                    changes.append((it, state.current_step, rate))
    return LrSchedule(policy=param.lr_policy, start=start, stop=stop,
                      iters=np.arange(start, stop, dtype=np.int64), rates=rates,
                      changes=changes, warnings=lr_parameter_warnings(param, where),
                      settings=", ".join(f"{name} = {_value(param, name)}"
                                         for name in policy.uses))


def schedule_lines(schedule: LrSchedule, param: caffe_pb2.SolverParameter,
                   every: int = 0) -> list[str]:
    """The schedule as text: a heading, then ``Iteration N, lr = X`` (Caffe's log line) for
    every ``every``-th iteration (default: the solver's display; with no display, about 20
    lines), the first and last iteration and each step change."""
    policy = LR_POLICIES.get(schedule.policy)
    formula = _formula(policy.rate.__doc__ or "")
    every = every or param.display or max(1, math.ceil((schedule.stop - schedule.start) / 20))
    lines = [f'lr_policy "{schedule.policy}": {formula}', f"  with {schedule.settings}",
             f"Iterations {schedule.start} to {schedule.stop - 1}, every {every} and where the "
             "rate steps:" if schedule.policy in STEPPED else
             f"Iterations {schedule.start} to {schedule.stop - 1}, every {every}:"]
    change_at = {it: step for it, step, _ in schedule.changes}
    first = schedule.start
    last = schedule.stop - 1
    shown = sorted({first, last, *change_at,
                    *range(first + (-first) % every, last + 1, every)})
    for it in shown:
        note = f"    <- step {change_at[it]} begins" if it in change_at else ""
        lines.append(f"Iteration {it}, lr = {fmt(schedule.rates[it - first])}{note}")
    return lines


def _formula(doc: str) -> str:
    """The first ````code```` span of a policy's docstring: its formula."""
    match = re.search(r"``(.+?)``", " ".join(doc.split()))
    return match.group(1) if match else doc.strip().split("\n")[0]


def plot_schedule(schedule: LrSchedule, output: str | os.PathLike | None = None,
                  title: str | None = None):
    """Draw the rate against the iteration; returns the Figure (writes a PNG if ``output``)."""
    from ._mpl import new_figure, save_png

    figure = new_figure("pyforge lr -o", figsize=(9, 4.5), layout="constrained")
    ax = figure.add_subplot()
    stepped = schedule.policy in STEPPED
    ax.plot(schedule.iters, schedule.rates, color="C0", lw=1.8,
            drawstyle="steps-post" if stepped else "default",
            label=f'lr_policy "{schedule.policy}" ({schedule.settings})')
    for k, (it, _, _) in enumerate(schedule.changes):
        ax.axvline(it, color="0.5", ls=":", lw=1,
                   label="step changes" if k == 0 else None)
    finite = schedule.rates[np.isfinite(schedule.rates)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 10:
        ax.set_yscale("log")
        ax.set_ylabel("learning rate (log scale)")
    else:
        ax.set_ylabel("learning rate")
        if finite.size and finite.min() >= 0 and finite.max() > 0:
            # From 0, so that a 1% decay does not look like a collapse.
            ax.set_ylim(0, float(finite.max()) * 1.08)
    ax.set_xlabel("iteration")
    ax.set_xlim(schedule.start, max(schedule.stop - 1, schedule.start + 1))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    ax.set_title(title or f'Learning-rate schedule, iterations {schedule.start} to '
                 f'{schedule.stop - 1}')
    if output is not None:
        save_png(figure, output)
    return figure


def lr_command(solver_file: str, iters: str = "", every: int = 0,
               output: str | None = None) -> tuple[LrSchedule, list[str]]:
    """What ``pyforge lr`` does: read the solver, compute its schedule, warn, and draw it if
    ``output`` is given. Returns the schedule and the text lines to print."""
    from ..proto import read_solver_param

    param = read_solver_param(solver_file)
    if every < 0:
        raise PyforgeError(f"--every must be positive, found {every}")
    start, stop = parse_iters(iters, param.max_iter)
    schedule = compute_schedule(param, start, stop, where=solver_file)
    for line in schedule.warnings:
        get_logger().warning("%s", line)
    lines = schedule_lines(schedule, param, every)
    if output:
        plot_schedule(schedule, output,
                      title=f"{os.path.basename(solver_file)}: lr_policy \"{schedule.policy}\", "
                            f"iterations {schedule.start} to {schedule.stop - 1}")
    return schedule, lines
