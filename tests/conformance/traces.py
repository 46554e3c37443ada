"""Reading Caffe's reference traces and pyforge's logs, and the pack's tolerance rule."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

TRAIN_LOSS = re.compile(r"^Iteration (\d+)(?: \(.*\))?, loss = (\S+)$")
LEARNING_RATE = re.compile(r"^Iteration (\d+), lr = (\S+)$")
TESTING = re.compile(r"^Iteration (\d+), Testing net \(#0\)$")
TEST_OUTPUT = re.compile(r"^    Test net output #\d+: (\S+) = (\S+)")


@dataclass
class Trace:
    loss: dict[int, float]
    lr: dict[int, float]
    tests: list[tuple[int, dict[str, float]]]


def parse_messages(messages: list[str]) -> Trace:
    """Losses, learning rates and test outputs from log messages (glog prefix removed)."""
    loss: dict[int, float] = {}
    lr: dict[int, float] = {}
    tests: list[tuple[int, dict[str, float]]] = []
    for message in messages:
        if m := TRAIN_LOSS.match(message):
            loss[int(m.group(1))] = float(m.group(2))
        elif m := LEARNING_RATE.match(message):
            lr[int(m.group(1))] = float(m.group(2))
        elif m := TESTING.match(message):
            tests.append((int(m.group(1)), {}))
        elif (m := TEST_OUTPUT.match(message)) and tests:
            tests[-1][1][m.group(1)] = float(m.group(2))
    return Trace(loss, lr, tests)


def load_reference(run_dir: Path) -> dict:
    return json.loads((run_dir / "trace.json").read_text())


def _as_trace(raw: dict) -> Trace:
    return Trace(
        loss={int(k): float(v) for k, v in raw["loss"].items()},
        lr={int(k): float(v) for k, v in raw["lr"].items()},
        tests=[(int(i), {k: float(v) for k, v in d.items()}) for i, d in raw["tests"]],
    )


def reference_traces(run_dir: Path) -> tuple[Trace, Trace, list[float]]:
    """(two-thread reference, resumed_from_30, envelope by iteration)."""
    raw = load_reference(run_dir)
    reference = _as_trace(raw["two_threads"])
    others = [_as_trace(raw["one_thread"])] + [_as_trace(r) for r in raw["perturbed_init"]]
    envelope = []
    running = 0.0
    for i in range(max(reference.loss) + 1):
        for other in others:
            if i in other.loss and i in reference.loss:
                gap = abs(other.loss[i] - reference.loss[i]) / abs(reference.loss[i])
                running = max(running, gap)
        envelope.append(running)
    return reference, _as_trace(raw["resumed_from_30"]), envelope


def loss_tolerance(envelope: list[float], i: int) -> float:
    """The pack's rule: relative max(1e-3, 3 x envelope_i)."""
    return max(1e-3, 3 * envelope[min(i, len(envelope) - 1)])


def accuracy_tolerance(envelope: list[float], i: int) -> float:
    return 0.011 + 3 * envelope[min(i, len(envelope) - 1)]


def compare(ours: Trace, reference: Trace, envelope: list[float]) -> list[str]:
    """Every disagreement beyond the tolerance, as readable lines (empty when all agree)."""
    problems = []
    for i, want in sorted(reference.loss.items()):
        got = ours.loss.get(i)
        if got is None:
            problems.append(f"iteration {i}: no training loss logged")
            continue
        rel = abs(got - want) / abs(want)
        if rel > loss_tolerance(envelope, i):
            problems.append(f"iteration {i}: loss {got} vs Caffe {want} (relative {rel:.2e} > "
                            f"{loss_tolerance(envelope, i):.2e})")
    for i, want in sorted(reference.lr.items()):
        got = ours.lr.get(i)
        if got is None or abs(got - want) / want > 1e-5:
            problems.append(f"iteration {i}: lr {got} vs Caffe {want}")
    if [i for i, _ in ours.tests] != [i for i, _ in reference.tests]:
        problems.append(f"tested at {[i for i, _ in ours.tests]}, Caffe at "
                        f"{[i for i, _ in reference.tests]}")
    for (i, got), (_, want) in zip(ours.tests, reference.tests):
        acc_tol = accuracy_tolerance(envelope, i)
        if abs(got["accuracy"] - want["accuracy"]) > acc_tol:
            problems.append(f"test at {i}: accuracy {got['accuracy']} vs Caffe "
                            f"{want['accuracy']} (tolerance {acc_tol:.3f})")
        rel = abs(got["loss"] - want["loss"]) / want["loss"]
        if rel > loss_tolerance(envelope, i):
            problems.append(f"test at {i}: loss {got['loss']} vs Caffe {want['loss']}")
    return problems
