"""Learning-rate policies, keyed by Caffe's ``lr_policy`` strings.

Each policy is ``rate(solver_param, iter, state) -> float``, rounded as Caffe's float code
rounds it: ``inv`` and ``poly`` call ``powf`` on float arguments and ``sigmoid`` calls
``expf``; ``step``, ``exp`` and ``multistep`` raise a float to an *int* power, which C++
promotes to a double ``pow`` before the product is stored as float. A correctly rounded
``powf``/``expf`` is the double result rounded once, which is what ``_powf``/``_expf`` compute
(NumPy's float32 ``power`` is not correctly rounded and misses Caffe's printed rates).
``state`` carries ``current_step`` (multistep advances it by at most one per call, step
recomputes it). ``check(param)`` enforces Caffe's parameter checks up front.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import SolverError
from ..log import get_logger
from ..proto import caffe_pb2
from ..registry import Registry

f32 = np.float32


@dataclass
class LrState:
    current_step: int = 0
    #: Where multistep logs its "MultiStep Status" lines (the solver's logger).
    logger: logging.Logger | None = None


@dataclass(frozen=True)
class LrPolicy:
    rate: Callable[[caffe_pb2.SolverParameter, int, LrState], float]
    check: Callable[[caffe_pb2.SolverParameter], None]
    uses: tuple[str, ...]


LR_POLICIES: Registry[LrPolicy] = Registry("lr_policy")


def _powf(x, y) -> np.float32:
    return f32(math.pow(float(x), float(y)))


def _expf(x) -> np.float32:
    try:
        return f32(math.exp(float(x)))
    except OverflowError:
        return f32(np.inf)


def _times_int_power(base_lr: float, gamma: float, n: int) -> np.float32:
    """``base_lr * pow(gamma, n)`` with an int ``n``: computed in double, stored as float."""
    return f32(float(f32(base_lr)) * math.pow(float(f32(gamma)), n))


def _need(condition: bool, policy: str, what: str, found) -> None:
    if not condition:
        raise SolverError(f"lr_policy '{policy}' needs {what}, found {found}")


def _gamma_nonneg(policy: str):
    def check(p: caffe_pb2.SolverParameter) -> None:
        _need(p.gamma >= 0, policy, "gamma >= 0", f"gamma: {p.gamma:g}")

    return check


def _policy(name: str, uses: tuple[str, ...], check=None):
    def decorate(fn):
        LR_POLICIES.register(name)(LrPolicy(rate=fn, check=check or (lambda p: None), uses=uses))
        return fn

    return decorate


@_policy("fixed", ("base_lr",))
def fixed(p: caffe_pb2.SolverParameter, it: int, state: LrState) -> float:
    """``base_lr``."""
    return f32(p.base_lr)


def _check_step(p: caffe_pb2.SolverParameter) -> None:
    _need(p.stepsize > 0, "step", "stepsize > 0", f"stepsize: {p.stepsize}")
    _gamma_nonneg("step")(p)


@_policy("step", ("base_lr", "gamma", "stepsize"), _check_step)
def step(p: caffe_pb2.SolverParameter, it: int, state: LrState) -> float:
    """``base_lr * gamma ^ floor(iter / stepsize)``."""
    state.current_step = it // p.stepsize
    return _times_int_power(p.base_lr, p.gamma, state.current_step)


@_policy("exp", ("base_lr", "gamma"), _gamma_nonneg("exp"))
def exp(p: caffe_pb2.SolverParameter, it: int, state: LrState) -> float:
    """``base_lr * gamma ^ iter``."""
    return _times_int_power(p.base_lr, p.gamma, it)


@_policy("inv", ("base_lr", "gamma", "power"), _gamma_nonneg("inv"))
def inv(p: caffe_pb2.SolverParameter, it: int, state: LrState) -> float:
    """``base_lr * (1 + gamma * iter) ^ (-power)``."""
    return f32(p.base_lr) * _powf(f32(1) + f32(p.gamma) * f32(it), -f32(p.power))


def _check_multistep(p: caffe_pb2.SolverParameter) -> None:
    _gamma_nonneg("multistep")(p)
    values = list(p.stepvalue)
    if not values:
        # Caffe accepts this and keeps base_lr for the whole run; say so.
        get_logger().warning("lr_policy 'multistep' without stepvalue: the rate stays at base_lr")
    _need(all(b > a for a, b in zip(values, values[1:])), "multistep",
          "increasing stepvalues", values)


@_policy("multistep", ("base_lr", "gamma", "stepvalue"), _check_multistep)
def multistep(p: caffe_pb2.SolverParameter, it: int, state: LrState) -> float:
    """``base_lr * gamma ^ current_step``; current_step advances by at most one per call, when
    ``iter >= stepvalue[current_step]`` (Caffe's ``if``, not ``while``)."""
    if state.current_step < len(p.stepvalue) and it >= p.stepvalue[state.current_step]:
        state.current_step += 1
        (state.logger or get_logger()).info("MultiStep Status: Iteration %d, step = %d", it,
                                            state.current_step)
    return _times_int_power(p.base_lr, p.gamma, state.current_step)


def _check_poly(p: caffe_pb2.SolverParameter) -> None:
    _need(p.max_iter > 0, "poly", "max_iter > 0", f"max_iter: {p.max_iter}")


@_policy("poly", ("base_lr", "power", "max_iter"), _check_poly)
def poly(p: caffe_pb2.SolverParameter, it: int, state: LrState) -> float:
    """``base_lr * (1 - iter / max_iter) ^ power``."""
    return f32(p.base_lr) * _powf(f32(1) - f32(it) / f32(p.max_iter), f32(p.power))


def _check_sigmoid(p: caffe_pb2.SolverParameter) -> None:
    _gamma_nonneg("sigmoid")(p)
    _need(p.stepsize > 0, "sigmoid", "stepsize > 0", f"stepsize: {p.stepsize}")


@_policy("sigmoid", ("base_lr", "gamma", "stepsize"), _check_sigmoid)
def sigmoid(p: caffe_pb2.SolverParameter, it: int, state: LrState) -> float:
    """``base_lr / (1 + exp(-gamma * (iter - stepsize)))``."""
    e = _expf(-f32(p.gamma) * (f32(it) - f32(p.stepsize)))
    return f32(p.base_lr) * (f32(1) / (f32(1) + e))


def _check_plateau(p: caffe_pb2.SolverParameter) -> None:
    _need(0 < p.gamma < 1, "plateau", "0 < gamma < 1 (the factor of each cut)",
          f"gamma: {p.gamma:g}")
    _need(p.plateau_patience > 0, "plateau", "plateau_patience > 0 (test passes)",
          f"plateau_patience: {p.plateau_patience}")
    _need(p.plateau_min_lr >= 0, "plateau", "plateau_min_lr >= 0",
          f"plateau_min_lr: {p.plateau_min_lr:g}")


@_policy("plateau", ("base_lr", "gamma", "plateau_patience"), _check_plateau)
def plateau(p: caffe_pb2.SolverParameter, it: int, state: LrState) -> float:
    """pyforge-only: ``max(base_lr * gamma ^ cuts, plateau_min_lr)``; the solver counts the cuts
    in ``current_step`` as the watched test output stops improving."""
    rate = _times_int_power(p.base_lr, p.gamma, state.current_step)
    return max(rate, f32(p.plateau_min_lr))


def get_policy(param: caffe_pb2.SolverParameter) -> LrPolicy:
    if not param.lr_policy:
        raise SolverError(f"lr_policy is not set (known: {', '.join(LR_POLICIES.names())})")
    try:
        policy = LR_POLICIES.get(param.lr_policy)
    except Exception as exc:
        raise SolverError(str(exc)) from None
    policy.check(param)
    return policy
