"""AdaDelta, as Caffe's AdaDeltaSolver computes it (2K history blobs)."""

from __future__ import annotations

import numpy as np

from .registry import register_solver
from .sgd import SGDSolver


@register_solver("AdaDelta")
class AdaDeltaSolver(SGDSolver):
    """With ``h`` the gradient history and ``h2`` the update history (history[K + i]):
    ``h = momentum * h + (1 - momentum) * g^2``; ``v = g * sqrt((h2 + delta) / (h + delta))``;
    ``h2 = momentum * h2 + (1 - momentum) * v^2``; step ``local_rate * v``."""

    uses_delta = True

    history_sets = 2

    def compute_update_value(self, param_id: int, rate: float) -> None:
        g = self.net.learnable[param_id].blob.diff
        k = len(self.net.learnable)
        grad_history = self.history[param_id].data
        update_history = self.history[k + param_id].data
        momentum = np.float32(self.param.momentum)
        delta = np.float32(self.param.delta)
        one_minus = np.float32(1) - momentum
        grad_history *= momentum
        grad_history += one_minus * (g * g)
        ratio = (update_history + delta) / (grad_history + delta)
        g *= np.sqrt(ratio)
        update_history *= momentum
        update_history += one_minus * (g * g)
        g *= self.local_rate(param_id, rate)
