"""AdaGrad, as Caffe's AdaGradSolver computes it."""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from ..proto import caffe_pb2
from .registry import register_solver
from .sgd import SGDSolver


@register_solver("AdaGrad")
class AdaGradSolver(SGDSolver):
    """``h += g^2``; step ``local_rate * g / (sqrt(h) + delta)``. Momentum is refused."""

    uses_delta = True

    @classmethod
    def check_params(cls, param: caffe_pb2.SolverParameter) -> None:
        super().check_params(param)
        if param.momentum != 0:
            raise SolverError(f"momentum cannot be used with AdaGrad; found momentum: "
                              f"{param.momentum:g} (set it to 0 or remove it)")

    def compute_update_value(self, param_id: int, rate: float) -> None:
        g = self.net.learnable[param_id].blob.diff
        history = self.history[param_id].data
        history += g * g
        denominator = np.sqrt(history)
        denominator += np.float32(self.param.delta)
        np.divide(g, denominator, out=g)
        g *= self.local_rate(param_id, rate)
