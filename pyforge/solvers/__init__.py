"""Solvers: the shared training loop, lr policies and the update rules."""

from .lr_policy import LR_POLICIES
from .sgd import SOLVERS, SGDSolver, register_solver
from .solver import Solver

__all__ = ["LR_POLICIES", "SOLVERS", "SGDSolver", "Solver", "register_solver", "create_solver"]


def create_solver(param, solver_file=None, logger=None, action=None) -> Solver:
    """Build the solver named by ``param.type`` (Caffe's SolverRegistry::CreateSolver)."""
    from ..errors import SolverError
    from ..registry import UnknownNameError

    try:
        cls = SOLVERS.get(param.type)
    except UnknownNameError as exc:
        raise SolverError(str(exc)) from None
    return cls(param, solver_file=solver_file, logger=logger, action=action)
