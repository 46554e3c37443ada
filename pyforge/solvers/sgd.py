"""SGD with momentum, and the solver registry keyed by Caffe's ``type`` strings."""

from __future__ import annotations

import numpy as np

from ..registry import Registry
from .solver import Solver

SOLVERS: Registry[type[Solver]] = Registry("solver type")


def register_solver(name: str):
    def decorate(cls: type[Solver]) -> type[Solver]:
        cls.type_name = name
        SOLVERS.register(name)(cls)
        return cls

    return decorate


@register_solver("SGD")
class SGDSolver(Solver):
    """``h = momentum * h + local_rate * g``; ``w -= h``. The learning rate lives inside the
    history (Caffe's form, unlike PyTorch's), so a changed lr does not rescale stored momentum."""

    def compute_update_value(self, param_id: int, rate: float) -> None:
        blob = self.net.learnable[param_id].blob
        history = self.history[param_id].data
        local_rate = self.local_rate(param_id, rate)
        momentum = np.float32(self.param.momentum)
        history *= momentum
        history += local_rate * blob.diff
        blob.diff[...] = history
