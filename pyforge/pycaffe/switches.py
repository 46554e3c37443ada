"""The process-wide switches of pycaffe's API, and nothing else global.

pycaffe's functions ``set_mode_cpu``, ``set_device``, ``set_random_seed``,
``set_solver_count`` ... change state inside the Caffe library that later calls read. pyforge
keeps that state here, in one object (:data:`SWITCHES`), so that the rest of pyforge stays free
of globals: the engine receives everything (a random generator, a logger) explicitly.

What the state means:

- ``rng``: ``None`` until :func:`set_random_seed`; then one generator that every net built
  afterwards through the pycaffe API draws its fillers from, in construction order, as Caffe's
  nets draw from its global generator. A solver whose prototxt sets ``random_seed`` uses that
  seed instead (its own generator); one without uses this generator when it is set.
- ``mode``/``device``: always the CPU; :func:`set_mode_gpu` is an error.
- ``solver_count``/``solver_rank``/``multiprocess``: stored and returned, as Caffe does when
  it runs without NCCL; pyforge trains in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PyforgeError


@dataclass
class Switches:
    rng: np.random.Generator | None = None
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


def set_mode_gpu() -> None:
    raise PyforgeError("caffe.set_mode_gpu(): pyforge has no GPU backend; it computes on the "
                       "CPU (remove the call, or call caffe.set_mode_cpu())")


def set_device(device_id: int) -> None:
    """Accepted and remembered; the device is only used by set_mode_gpu, which pyforge lacks."""
    SWITCHES.device = int(device_id)


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
