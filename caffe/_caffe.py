"""What pycaffe's compiled ``_caffe`` module holds besides Net and the solvers: the
process-wide switches, logging, the layer type list, ``Layer``, ``Timer`` and ``NCCL``.

pycaffe's ``set_mode_cpu``, ``set_device``, ``set_random_seed``, ``set_solver_count`` ...
change state inside the Caffe library that later calls read. This module keeps that state in
one object (:data:`SWITCHES`), the only global state of the API, so that the engine stays
free of globals: it receives everything (a random generator, a logger) explicitly.

What the state means:

- ``rng``: ``None`` until :func:`set_random_seed`; then one generator that every net built
  afterwards through this API draws its fillers from, in construction order, as Caffe's nets
  draw from its global generator. A solver whose prototxt sets ``random_seed`` uses that seed
  instead (its own generator); one without uses this generator when it is set.
- ``gpu_noted``: whether the one-time warning of :func:`set_mode_gpu`/:func:`set_device` was
  given. pyforge computes on the CPU; GPU requests are accepted, as the CLI's ``--gpu`` is.
- ``device``/``solver_count``/``solver_rank``/``multiprocess``: stored and returned, as Caffe
  does when it runs without NCCL; pyforge trains in one process (or with MPI from the CLI).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from pyforge import __version__
from pyforge.errors import PyforgeError
from pyforge.layers.python_layer import PythonLayerBase
from pyforge.log import configure, get_logger

#: pycaffe's base class of Python layers (``class MyLayer(caffe.Layer)``).
Layer = PythonLayerBase

__all__ = ["Layer", "NCCL", "Timer", "__version__", "has_nccl", "init_log", "layer_type_list",
           "log", "net_rng", "set_device", "set_mode_cpu", "set_mode_gpu", "set_multiprocess",
           "set_random_seed", "set_solver_count", "set_solver_rank", "solver_count",
           "solver_rank"]


@dataclass
class Switches:
    rng: np.random.Generator | None = None
    gpu_noted: bool = False
    device: int = 0
    solver_count: int = 1
    solver_rank: int = 0
    multiprocess: bool = False


SWITCHES = Switches()


def net_rng() -> np.random.Generator:
    """The generator a net built now should fill its weights from."""
    if SWITCHES.rng is not None:
        return SWITCHES.rng
    return np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Seed the weights of the nets built from now on (Caffe's ``Caffe::set_random_seed``)."""
    SWITCHES.rng = np.random.default_rng(int(seed))


def set_mode_cpu() -> None:
    """pyforge always computes on the CPU; kept for pycaffe scripts."""


def _note_gpu(what: str) -> None:
    if not SWITCHES.gpu_noted:
        SWITCHES.gpu_noted = True
        get_logger().warning("%s ignored: pyforge computes on the CPU", what)


def set_mode_gpu() -> None:
    """Accepted with a one-time warning (as the CLI's ``--gpu``): pyforge computes on the
    CPU, so a script written for a GPU runs unchanged, on the CPU."""
    _note_gpu("caffe.set_mode_gpu()")


def set_device(device_id: int) -> None:
    """Remembered and accepted with a one-time warning; pyforge has no GPU to select."""
    SWITCHES.device = int(device_id)
    _note_gpu(f"caffe.set_device({int(device_id)})")


def solver_count() -> int:
    return SWITCHES.solver_count


def set_solver_count(count: int) -> None:
    SWITCHES.solver_count = int(count)


def solver_rank() -> int:
    return SWITCHES.solver_rank


def set_solver_rank(rank: int) -> None:
    SWITCHES.solver_rank = int(rank)


def set_multiprocess(multiprocess: bool) -> None:
    SWITCHES.multiprocess = bool(multiprocess)


def has_nccl() -> bool:
    return False


class NCCL:
    """pycaffe's multi-GPU synchroniser. pyforge has no NCCL (:func:`has_nccl` is False, as in
    a Caffe built without it); train on several processes with ``mpiexec -n N pyforge
    train`` instead."""

    def __init__(self, solver=None, uid: str = "") -> None:
        raise PyforgeError("caffe.NCCL: pyforge has no NCCL (caffe.has_nccl() is False); "
                           "train on several processes with `mpiexec -n N pyforge train`")

    @staticmethod
    def new_uid() -> str:
        raise PyforgeError("caffe.NCCL.new_uid: pyforge has no NCCL (caffe.has_nccl() is "
                           "False)")


# glog's severities, as pycaffe's init_log(level) takes them.
_GLOG_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.CRITICAL}


def init_log(level: int = 0, stderr: bool = True) -> None:
    """Print pyforge's log lines (Caffe's, in glog format) on stderr from severity ``level``
    (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL). Without this call the API shows only warnings and
    errors. ``stderr`` is accepted for pycaffe's three-argument form; the lines always go to
    stderr."""
    configure(_GLOG_LEVELS.get(int(level), logging.INFO))


def log(message: str) -> None:
    """Log ``message`` at INFO, as pycaffe's ``caffe.log`` does."""
    get_logger().info("%s", message)


def layer_type_list() -> list[str]:
    """The layer types a net may use (Caffe's LayerRegistry::LayerTypeList), sorted."""
    from pyforge.layers import LAYERS

    return LAYERS.names()


class Timer:
    """Wall-clock timer with Caffe's interface: ``start()``, ``stop()``, ``ms``."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._elapsed = 0.0
        self._running = False

    def start(self) -> None:
        self._start = time.perf_counter()
        self._running = True

    def stop(self) -> None:
        if self._running and self._start is not None:
            self._elapsed = time.perf_counter() - self._start
            self._running = False

    @property
    def ms(self) -> float:
        """Milliseconds between the last start and stop (up to now while running)."""
        if self._running and self._start is not None:
            return (time.perf_counter() - self._start) * 1e3
        return self._elapsed * 1e3

    @property
    def seconds(self) -> float:
        return self.ms / 1e3
