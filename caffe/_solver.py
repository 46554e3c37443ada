"""pycaffe's solvers: ``caffe.SGDSolver(path)`` ... ``caffe.AdamSolver(path)``, ``get_solver``.

Each class is pyforge's solver of that type (one per entry of the solver registry,
:data:`pyforge.solvers.SOLVERS`), built from a solver prototxt path, whose nets are pycaffe
Nets (:func:`.net.adopt`). As in pycaffe, the class decides the update rule
(``caffe.AdamSolver(path)`` is an Adam solver whatever ``type`` the file names) while
``get_solver(path)`` picks the class from ``type``.

Callbacks (``add_callback(on_start, on_gradients)``) run where Caffe runs them in
``Solver::Step``: ``on_start()`` once per iteration, after the test pass of that iteration
and before its first forward pass; ``on_gradients()`` after the forward/backward passes (and
the display lines), before the update.

Files: a solver built here writes what Caffe's would (snapshots, and the ``.solverstate`` at
the end when ``snapshot_after_train`` is set), and pyforge's ``<prefix>.metrics.jsonl`` only
when asked for: with ``metrics_file`` in the solver prototxt, or ``solver.metrics_file =
path`` before ``solve()``. (``pyforge train`` writes it by default.)
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pyforge import solvers as _solvers
from pyforge.errors import SolverError
from pyforge.log import get_logger
from pyforge.proto import read_solver_param

from ._caffe import SWITCHES
from .pycaffe import Net, adopt


class _PycaffeSolver:
    """What pycaffe's Solver adds to one of pyforge's solver classes (mixed in first)."""

    net: Net
    test_nets: list[Net]

    def __init__(self, solver_file, _param=None) -> None:
        path = os.fspath(solver_file)
        param = _param if _param is not None else read_solver_param(path)
        self._callbacks: list[tuple[Callable[[], object], Callable[[], object]]] = []
        logger = get_logger()
        # Without its own random_seed, Caffe's solver fills from the global generator that
        # caffe.set_random_seed seeded.
        net, test_nets = _solvers.build_nets(type(self), param, path, logger,
                                             unseeded_rng=SWITCHES.rng)
        super().__init__(param, adopt(net), [adopt(test) for test in test_nets], logger=logger)
        # pycaffe writes no metrics file; the prototxt's metrics_file asks for one.
        self.metrics_override = None if param.metrics_file else os.devnull

    # --- pycaffe's properties ---------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate of the current iteration (SGDSolver::GetLearningRate)."""
        return float(self.learning_rate())

    @property
    def metrics_file(self) -> str | None:
        """Where ``solve()`` writes pyforge's JSON-lines metrics; None: nowhere."""
        return None if self.metrics_override == os.devnull else (
            self.metrics_override or self.param.metrics_file)

    @metrics_file.setter
    def metrics_file(self, path) -> None:
        self.metrics_override = os.fspath(path) if path else os.devnull

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


def _pycaffe_class(engine: type) -> type[_PycaffeSolver]:
    """pycaffe's class of one update rule: ``_PycaffeSolver`` mixed into the engine's class,
    under the same name (``SGDSolver`` ... ``AdamSolver``, as pycaffe names them)."""
    return type(engine.__name__, (_PycaffeSolver, engine), {
        "__module__": __name__,
        "__qualname__": engine.__name__,
        "__doc__": f"pycaffe's ``caffe.{engine.__name__}(solver_file)``: the {engine.type_name} "
                   f"update rule of :class:`{engine.__module__}.{engine.__qualname__}`, trained "
                   "from a solver prototxt path, with pycaffe's callbacks.",
    })


#: pycaffe's solver class of each registered solver type, by Caffe's ``type`` string.
PYCAFFE_SOLVERS: dict[str, type[_PycaffeSolver]] = {
    name: _pycaffe_class(_solvers.SOLVERS.get(name)) for name in _solvers.SOLVERS}
# The classes are this module's attributes, as pycaffe's are: caffe.SGDSolver, ...
globals().update({cls.__name__: cls for cls in PYCAFFE_SOLVERS.values()})
__all__ = [*(cls.__name__ for cls in PYCAFFE_SOLVERS.values()), "get_solver"]


def get_solver(solver_file) -> _PycaffeSolver:
    """The solver of the ``type`` the prototxt names (Caffe's SolverRegistry::CreateSolver)."""
    path = os.fspath(solver_file)
    param = read_solver_param(path)
    _solvers.solver_class(param.type, path)  # an unknown type: an error naming the known ones
    cls = PYCAFFE_SOLVERS.get(param.type)
    if cls is None:
        raise SolverError(f"{path}: solver type '{param.type}' was registered after "
                          "caffe._solver was imported, so it has no pycaffe class")
    return cls(path, _param=param)
