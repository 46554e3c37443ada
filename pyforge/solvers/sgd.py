"""Caffe's SGDSolver: the update template every solver type shares, and SGD with momentum."""

from __future__ import annotations

import numpy as np

from ..log import fmt
from .registry import register_solver
from .solver import Solver

f32 = np.float32


@register_solver("SGD")
class SGDSolver(Solver):
    """The update of one iteration, in Caffe's order (SGDSolver::ApplyUpdate): the learning
    rate, gradient clipping, then per parameter normalisation (iter_size), regularisation and
    the solver type's :meth:`compute_update_value`, and ``data -= diff``. Nesterov, AdaGrad,
    RMSProp, AdaDelta and Adam override only ``compute_update_value``.

    SGD's own rule: ``h = momentum * h + local_rate * g``; ``w -= h``. The learning rate lives
    inside the history (Caffe's form, unlike PyTorch's), so a changed lr does not rescale
    stored momentum."""

    def apply_update(self) -> np.float32:
        rate = self.learning_rate()
        p = self.param
        if p.display and self.iter % p.display == 0:
            self.logger.info("Iteration %d, lr = %s", self.iter, fmt(rate))
        self.clip_gradients()
        for param_id in range(len(self.net.learnable)):
            self.normalize(param_id)
            self.regularize(param_id)
            self.compute_update_value(param_id, rate)
        self.net.update()
        self.iter += 1
        return rate

    def clip_gradients(self) -> None:
        clip = f32(self.param.clip_gradients)
        if clip < 0:
            return
        sumsq = f32(sum(f32(p.blob.sumsq_diff()) for p in self.net.learnable))
        l2norm = f32(np.sqrt(sumsq))
        if l2norm > clip:
            scale = f32(clip / l2norm)
            self.logger.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by "
                             "scale factor %s", fmt(l2norm), fmt(clip), fmt(scale))
            for p in self.net.learnable:
                p.blob.diff *= scale

    def normalize(self, param_id: int) -> None:
        if self.param.iter_size == 1:
            return
        self.net.learnable[param_id].blob.diff *= f32(1.0) / f32(self.param.iter_size)

    def regularize(self, param_id: int) -> None:
        learnable = self.net.learnable[param_id]
        local_decay = f32(self.param.weight_decay) * f32(learnable.decay_mult)
        if not local_decay:
            return
        blob = learnable.blob
        if self.param.regularization_type == "L2":
            blob.diff += local_decay * blob.data
        else:
            blob.diff += local_decay * np.sign(blob.data)

    def local_rate(self, param_id: int, rate: float) -> np.float32:
        return f32(rate) * f32(self.net.learnable[param_id].lr_mult)

    def compute_update_value(self, param_id: int, rate: float) -> None:
        """Turn the parameter's diff into the update to subtract (the solver type's formula;
        here SGD with momentum)."""
        blob = self.net.learnable[param_id].blob
        history = self.history[param_id].data
        local_rate = self.local_rate(param_id, rate)
        momentum = np.float32(self.param.momentum)
        history *= momentum
        history += local_rate * blob.diff
        blob.diff[...] = history
