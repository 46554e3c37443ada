"""Solvers: the training loop, the update rules, lr policies, and building a solver.

- :mod:`.solver`: the loop (Caffe's Solver); :mod:`.sgd`: the update template and SGD, and one
  module per other update rule (Nesterov, AdaGrad, RMSProp, AdaDelta, Adam);
- :mod:`.registry`: the solver types by Caffe's ``type`` string; :mod:`.factory`: a solver and
  its nets from a SolverParameter (:func:`create_solver`);
- :mod:`.testing`, :mod:`.monitor`: test passes, early stopping / keep_best / plateau, metrics;
- :mod:`.divergence`: stopping at the first non-finite value; :mod:`.state`: snapshots and
  resuming; :mod:`.lr_policy`: the learning-rate policies.
"""

from .adadelta import AdaDeltaSolver
from .adagrad import AdaGradSolver
from .adam import AdamSolver
from .factory import build_nets, create_solver
from .lr_policy import LR_POLICIES
from .nesterov import NesterovSolver
from .registry import SOLVERS, register_solver, solver_class
from .rmsprop import RMSPropSolver
from .sgd import SGDSolver
from .solver import Solver

__all__ = [
    "LR_POLICIES", "SOLVERS", "AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "NesterovSolver",
    "RMSPropSolver", "SGDSolver", "Solver", "build_nets", "create_solver", "register_solver",
    "solver_class",
]
