"""RMSProp, as Caffe's RMSPropSolver computes it."""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from ..proto import caffe_pb2
from .registry import register_solver
from .sgd import SGDSolver


@register_solver("RMSProp")
class RMSPropSolver(SGDSolver):
    """``h = rms_decay * h + (1 - rms_decay) * g^2``; step ``local_rate * g / (sqrt(h) +
    delta)``. Momentum is refused; rms_decay must lie in [0, 1)."""

    uses_delta = True

    @classmethod
    def check_params(cls, param: caffe_pb2.SolverParameter) -> None:
        super().check_params(param)
        if param.momentum != 0:
            raise SolverError(f"momentum cannot be used with RMSProp; found momentum: "
                              f"{param.momentum:g} (set it to 0 or remove it)")
        if not 0 <= param.rms_decay < 1:
            raise SolverError(f"rms_decay should lie in [0, 1); found rms_decay: "
                              f"{param.rms_decay:g}")

    def compute_update_value(self, param_id: int, rate: float) -> None:
        g = self.net.learnable[param_id].blob.diff
        history = self.history[param_id].data
        decay = np.float32(self.param.rms_decay)
        history *= decay
        history += (np.float32(1) - decay) * (g * g)
        denominator = np.sqrt(history)
        denominator += np.float32(self.param.delta)
        np.divide(g, denominator, out=g)
        g *= self.local_rate(param_id, rate)
