"""Nesterov's accelerated gradient, as Caffe's NesterovSolver computes it."""

from __future__ import annotations

import numpy as np

from .registry import register_solver
from .sgd import SGDSolver


@register_solver("Nesterov")
class NesterovSolver(SGDSolver):
    """``h_new = momentum * h + local_rate * g``; the step is
    ``(1 + momentum) * h_new - momentum * h``: step back along the old momentum, then over."""

    def compute_update_value(self, param_id: int, rate: float) -> None:
        blob = self.net.learnable[param_id].blob
        history = self.history[param_id].data
        momentum = np.float32(self.param.momentum)
        previous = history.copy()
        history *= momentum
        history += self.local_rate(param_id, rate) * blob.diff
        np.multiply(history, np.float32(1) + momentum, out=blob.diff)
        blob.diff -= momentum * previous
