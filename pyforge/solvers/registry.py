"""The solver types, keyed by Caffe's ``type`` strings (Caffe's SolverRegistry).

Each update rule registers its class with :func:`register_solver` when its module is imported;
importing :mod:`pyforge.solvers` imports all six, so :data:`SOLVERS` is complete once that
package is. pycaffe's solver classes (:mod:`pyforge.pycaffe.solver`) are built from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import SolverError
from ..registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from .solver import Solver

SOLVERS: Registry[type[Solver]] = Registry("solver type")


def register_solver(name: str) -> Callable[[type[Solver]], type[Solver]]:
    """Class decorator: register the class as solver type ``name`` (also its ``type_name``)."""

    def decorate(cls: type[Solver]) -> type[Solver]:
        cls.type_name = name
        SOLVERS.register(name)(cls)
        return cls

    return decorate


def solver_class(type_name: str, solver_file: str | None = None) -> type[Solver]:
    """The class of solver type ``type_name``; an unknown type is a SolverError naming the
    solver file and the known types (the check is case-sensitive, as Caffe's)."""
    try:
        return SOLVERS.get(type_name, solver_file or "")
    except UnknownNameError as exc:
        raise SolverError(str(exc)) from None
