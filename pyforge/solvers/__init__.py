"""Solvers: the shared training loop, lr policies and the update rules."""

from .adadelta import AdaDeltaSolver
from .adagrad import AdaGradSolver
from .adam import AdamSolver
from .lr_policy import LR_POLICIES
from .nesterov import NesterovSolver
from .registry import SOLVERS, register_solver, solver_class
from .rmsprop import RMSPropSolver
from .sgd import SGDSolver
from .solver import Solver

__all__ = [
    "LR_POLICIES", "SOLVERS", "AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "NesterovSolver",
    "RMSPropSolver", "SGDSolver", "Solver", "create_solver", "register_solver", "solver_class",
]


def create_solver(param, solver_file=None, logger=None, action=None, comm=None) -> Solver:
    """Build the solver named by ``param.type`` (Caffe's SolverRegistry::CreateSolver)."""
    cls = solver_class(param.type, solver_file)
    return cls(param, solver_file=solver_file, logger=logger, action=action, comm=comm)
