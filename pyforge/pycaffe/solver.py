"""pycaffe's solvers: ``caffe.SGDSolver(path)`` ... ``caffe.AdamSolver(path)``, ``get_solver``.

Each class is pyforge's solver of that type, built from a solver prototxt path, whose nets are
pycaffe Nets (:func:`.net.adopt`). As in pycaffe, the class decides the update rule
(``caffe.AdamSolver(path)`` is an Adam solver whatever ``type`` the file names) while
``get_solver(path)`` picks the class from ``type``.

Callbacks (``add_callback(on_start, on_gradients)``) run where Caffe runs them in
``Solver::Step``: ``on_start()`` once per iteration, after the test pass of that iteration
and before its first forward pass; ``on_gradients()`` after the forward/backward passes (and
the display lines), before the update.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .. import solvers as _solvers
from ..errors import SolverError
from ..log import get_logger
from ..proto import read_solver_param
from ..registry import UnknownNameError
from .net import Net, adopt
from .switches import SWITCHES


class _PycaffeSolver:
    """What pycaffe's Solver adds to one of pyforge's solver classes (mixed in first)."""

    net: Net
    test_nets: list[Net]

    def __init__(self, solver_file, _param=None) -> None:
        path = os.fspath(solver_file)
        param = _param if _param is not None else read_solver_param(path)
        self._callbacks: list[tuple[Callable[[], object], Callable[[], object]]] = []
        super().__init__(param, solver_file=path, logger=get_logger())

    # --- nets -------------------------------------------------------------------------------
    def _init_train_net(self):
        seeded = self.param.HasField("random_seed") and self.param.random_seed >= 0
        if not seeded and SWITCHES.rng is not None:
            # Without its own random_seed, Caffe's solver fills from the global generator
            # that caffe.set_random_seed seeded.
            self.rng = SWITCHES.rng
        return adopt(super()._init_train_net())

    def _init_test_nets(self):
        return [adopt(net) for net in super()._init_test_nets()]

    # --- callbacks ------------------------------------------------------------------------------
    def add_callback(self, on_start: Callable[[], object],
                     on_gradients: Callable[[], object]) -> None:
        """Call ``on_start()`` at the start of every iteration and ``on_gradients()`` when
        its gradients are ready, before the update."""
        self._callbacks.append((on_start, on_gradients))

    def on_iteration_start(self) -> None:
        for on_start, _ in self._callbacks:
            on_start()

    def on_gradients_ready(self) -> None:
        for _, on_gradients in self._callbacks:
            on_gradients()

    def share_weights(self, net) -> None:
        """Make ``net`` use this solver's train-net weights, layer by layer name."""
        net.share_trained_layers_with(self.net)


class SGDSolver(_PycaffeSolver, _solvers.SGDSolver):
    """Stochastic gradient descent with momentum, from a solver prototxt path."""


class NesterovSolver(_PycaffeSolver, _solvers.NesterovSolver):
    """Nesterov's accelerated gradient, from a solver prototxt path."""


class AdaGradSolver(_PycaffeSolver, _solvers.AdaGradSolver):
    """AdaGrad, from a solver prototxt path."""


class RMSPropSolver(_PycaffeSolver, _solvers.RMSPropSolver):
    """RMSProp, from a solver prototxt path."""


class AdaDeltaSolver(_PycaffeSolver, _solvers.AdaDeltaSolver):
    """AdaDelta, from a solver prototxt path."""


class AdamSolver(_PycaffeSolver, _solvers.AdamSolver):
    """Adam, from a solver prototxt path."""


_BY_TYPE = {cls.type_name: cls for cls in (SGDSolver, NesterovSolver, AdaGradSolver,
                                            RMSPropSolver, AdaDeltaSolver, AdamSolver)}


def get_solver(solver_file) -> _PycaffeSolver:
    """The solver of the ``type`` the prototxt names (Caffe's SolverRegistry::CreateSolver)."""
    path = os.fspath(solver_file)
    param = read_solver_param(path)
    cls = _BY_TYPE.get(param.type)
    if cls is None:
        try:
            _solvers.SOLVERS.get(param.type, path)
        except UnknownNameError as exc:
            raise SolverError(str(exc)) from None
        raise SolverError(f"{path}: solver type '{param.type}' has no pycaffe class")
    return cls(path, _param=param)
