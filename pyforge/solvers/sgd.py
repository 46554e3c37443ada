"""SGD with momentum, as Caffe's SGDSolver computes it."""

from __future__ import annotations

import numpy as np

from .registry import register_solver
from .solver import Solver


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
