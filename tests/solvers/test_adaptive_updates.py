"""Closed-form checks of every solver type and every lr policy on the least-squares net.

After K iterations, the (K+1)-th update is computed by hand in float64 from the solver's weights,
its history and the next batch, with the formulas of Caffe's solvers; a fresh solver (same seed)
run K+1 iterations must agree (relative 1e-4 of the terms' size; Caffe's own test allows 1e-2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyforge.errors import SolverError
from tests.solvers.test_sgd_updates import Problem

TOL = 1e-4


@pytest.fixture
def problem(tmp_path) -> Problem:
    return Problem(tmp_path)


def params_of(solver):
    w, b = solver.net.params["innerprod"]
    return [w.data.reshape(-1).astype(np.float64), b.data.reshape(-1).astype(np.float64)]


def histories_of(solver):
    return [h.data.reshape(-1).astype(np.float64) for h in solver.history]


def gradient(params, x, y, wd):
    w, b = params
    resid = x @ w + b[0] - y
    gw = x.T @ resid / len(y) + wd * w
    gb = np.array([resid.sum() / len(y)]) + wd * b
    return [gw, gb]


def expected_step(kind, params, hist, grads, lr, p, t):
    """The update value u per parameter, and the new history (list of arrays)."""
    k = len(params)
    mu, delta = p.get("momentum", 0.0), p.get("delta", 1e-8)
    updates, new_hist = [], [h.copy() for h in hist]
    for i, g in enumerate(grads):
        h = new_hist[i]
        if kind == "SGD":
            h[:] = mu * h + lr * g
            u = h.copy()
        elif kind == "Nesterov":
            old = h.copy()
            h[:] = mu * h + lr * g
            u = (1 + mu) * h - mu * old
        elif kind == "AdaGrad":
            h[:] = h + g * g
            u = lr * g / (np.sqrt(h) + delta)
        elif kind == "RMSProp":
            rho = p.get("rms_decay", 0.99)
            h[:] = rho * h + (1 - rho) * g * g
            u = lr * g / (np.sqrt(h) + delta)
        elif kind == "AdaDelta":
            h2 = new_hist[k + i]
            h[:] = mu * h + (1 - mu) * g * g
            v = g * np.sqrt((h2 + delta) / (h + delta))
            h2[:] = mu * h2 + (1 - mu) * v * v
            u = lr * v
        elif kind == "Adam":
            b1, b2 = mu, p.get("momentum2", 0.999)
            v = new_hist[k + i]
            h[:] = b1 * h + (1 - b1) * g
            v[:] = b2 * v + (1 - b2) * g * g
            correction = math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            u = lr * correction * h / (np.sqrt(v) + delta)
        updates.append(u)
    return updates, new_hist


CASES = {
    "SGD": dict(momentum=0.9),
    "Nesterov": dict(momentum=0.9),
    "AdaGrad": dict(),
    "RMSProp": dict(rms_decay=0.95),
    "AdaDelta": dict(momentum=0.95, delta=1e-6),
    "Adam": dict(momentum=0.9, momentum2=0.999),
    # A large delta makes where it is added visible (Adam: to sqrt(v), not sqrt(v_hat)).
    "Adam/delta": dict(momentum=0.9, momentum2=0.999, delta=0.1),
    "AdaGrad/delta": dict(delta=0.1),
    "RMSProp/delta": dict(rms_decay=0.9, delta=0.1),
    "AdaDelta/delta": dict(momentum=0.9, delta=0.1),
}
LRS = {"SGD": 0.01, "Nesterov": 0.01, "AdaGrad": 0.01, "RMSProp": 0.01, "AdaDelta": 0.1,
       "Adam": 0.01}


def close(actual, expected, scale):
    return np.all(np.abs(actual - expected) <= TOL * np.maximum(scale, 1e-3) + 1e-7)


@pytest.mark.parametrize("wd", [0.0, 0.5])
@pytest.mark.parametrize("k", [0, 1, 3])
@pytest.mark.parametrize("kind", list(CASES))
def test_next_update_matches_the_formula(problem, kind, k, wd):
    settings = CASES[kind]
    kind = kind.split("/")[0]
    lr = LRS[kind]
    before = problem.solver(lr=lr, wd=wd, type=kind, **settings)
    before.step(k)
    params, hist = params_of(before), histories_of(before)
    assert len(hist) == (4 if kind in ("AdaDelta", "Adam") else 2)
    x, y = problem.batch(k)
    grads = gradient(params, x, y, wd)
    updates, new_hist = expected_step(kind, params, hist, grads, lr, settings, t=k + 1)
    after = problem.solver(lr=lr, wd=wd, type=kind, **settings)
    after.step(k + 1)
    for got, want, p0, u in zip(params_of(after), [p - u for p, u in zip(params, updates)],
                                params, updates):
        assert close(got, want, np.abs(p0) + np.abs(u)), (kind, k, wd)
    for got, want in zip(histories_of(after), new_hist):
        assert close(got, want, np.abs(want)), (kind, k, wd)


def lr_by_hand(policy, it, base_lr=0.01, gamma=0.5, power=0.75, stepsize=2, max_iter=10,
               stepvalues=(1, 3)):
    if policy == "fixed":
        return base_lr
    if policy == "step":
        return base_lr * gamma ** (it // stepsize)
    if policy == "exp":
        return base_lr * gamma ** it
    if policy == "inv":
        return base_lr * (1 + gamma * it) ** (-power)
    if policy == "multistep":
        return base_lr * gamma ** sum(1 for v in stepvalues if it >= v)
    if policy == "poly":
        return base_lr * (1 - it / max_iter) ** power
    if policy == "sigmoid":
        return base_lr / (1 + math.exp(-gamma * (it - stepsize)))
    raise ValueError(policy)


@pytest.mark.parametrize("policy", ["fixed", "step", "exp", "inv", "multistep", "poly",
                                    "sigmoid"])
def test_every_lr_policy_drives_the_update(problem, policy):
    """Plain SGD (no momentum): w_{k+1} = w_k - rate(k) * g_k with the policy's rate at the
    pre-increment iteration, for several consecutive steps."""
    fields = dict(gamma=0.5, power=0.75, stepsize=2, max_iter=10)
    solver = problem.solver(lr=0.01, lr_policy=policy, stepvalue=[1, 3], **fields)
    for k in range(5):
        params = params_of(solver)
        x, y = problem.batch(k)
        grads = gradient(params, x, y, 0.0)
        rate = lr_by_hand(policy, k)
        solver.step(1)
        for got, p, g in zip(params_of(solver), params, grads):
            assert close(got, p - rate * g, np.abs(p) + np.abs(rate * g)), (policy, k)


def test_adagrad_and_rmsprop_refuse_momentum(problem):
    for kind in ("AdaGrad", "RMSProp"):
        with pytest.raises(SolverError, match=f"momentum cannot be used with {kind}"):
            problem.solver(lr=0.01, type=kind, momentum=0.9)


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_rmsprop_decay_must_be_in_unit_interval(problem, decay):
    with pytest.raises(SolverError, match="rms_decay"):
        problem.solver(lr=0.01, type="RMSProp", rms_decay=decay)


def test_deprecated_solver_type_enum_selects_the_solver(tmp_path, problem):
    from pyforge.proto import read_solver_param
    from pyforge.solvers import create_solver

    net = problem.net_file()
    path = tmp_path / "old.prototxt"
    path.write_text(f'net: "{net}"\nsolver_type: ADAM\nbase_lr: 0.01\nlr_policy: "fixed"\n'
                    "momentum: 0.9\nmax_iter: 1\nsnapshot_after_train: false\n")
    param = read_solver_param(str(path))
    assert param.type == "Adam" and not param.HasField("solver_type")
    solver = create_solver(param, solver_file=str(path))
    assert solver.type_name == "Adam" and len(solver.history) == 4
