"""Solvers: the shared training loop, lr policies and the update rules."""

from .adadelta import AdaDeltaSolver
from .adagrad import AdaGradSolver
from .adam import AdamSolver
from .lr_policy import LR_POLICIES
from .nesterov import NesterovSolver
from .rmsprop import RMSPropSolver
from .sgd import SOLVERS, SGDSolver, register_solver
from .solver import Solver

__all__ = [
    "LR_POLICIES", "SOLVERS", "AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "NesterovSolver",
    "RMSPropSolver", "SGDSolver", "Solver", "create_solver", "register_solver",
]


def create_solver(param, solver_file=None, logger=None, action=None, comm=None) -> Solver:
    """Build the solver named by ``param.type`` (Caffe's SolverRegistry::CreateSolver)."""
    from ..errors import SolverError
    from ..registry import UnknownNameError

    try:
        cls = SOLVERS.get(param.type)
    except UnknownNameError as exc:
        where = f"{solver_file}: " if solver_file else ""
        raise SolverError(f"{where}{exc}") from None
    return cls(param, solver_file=solver_file, logger=logger, action=action, comm=comm)
