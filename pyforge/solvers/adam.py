"""Adam, as Caffe's AdamSolver computes it (2K history blobs)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import SolverError
from ..proto import caffe_pb2
from .registry import register_solver
from .sgd import SGDSolver


@register_solver("Adam")
class AdamSolver(SGDSolver):
    """``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2`` (v is history[K + i]);
    step ``local_rate * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + delta)`` with
    ``t = iter + 1``, b1 = momentum, b2 = momentum2.

    Caffe's quirk: delta is added to sqrt(v), not to the bias-corrected sqrt(v_hat); the bias
    correction is folded into the step size instead."""

    uses_delta = True

    history_sets = 2

    @classmethod
    def check_params(cls, param: caffe_pb2.SolverParameter) -> None:
        super().check_params(param)
        # Caffe would take the square root of a negative number and train on NaN.
        for name, beta in (("momentum", "beta1"), ("momentum2", "beta2")):
            value = getattr(param, name)
            if not 0 <= value < 1:
                raise SolverError(f"Adam needs 0 <= {name} < 1 ({beta}); found {name}: "
                                  f"{value:g}")

    def compute_update_value(self, param_id: int, rate: float) -> None:
        g = self.net.learnable[param_id].blob.diff
        k = len(self.net.learnable)
        m = self.history[param_id].data
        v = self.history[k + param_id].data
        beta1 = np.float32(self.param.momentum)
        beta2 = np.float32(self.param.momentum2)
        t = self.iter + 1
        # pow(float, int) is a double pow in C++; the quotient is stored as float.
        correction = np.float32(math.sqrt(1.0 - math.pow(float(beta2), t))
                                / (1.0 - math.pow(float(beta1), t)))
        m *= beta1
        m += (np.float32(1) - beta1) * g
        v *= beta2
        v += (np.float32(1) - beta2) * (g * g)
        denominator = np.sqrt(v)
        denominator += np.float32(self.param.delta)
        np.divide(m, denominator, out=g)
        g *= self.local_rate(param_id, rate) * correction
