"""Stopping at the first non-finite value, and saying where it began.

Caffe trains on through NaN and inf; pyforge stops at the first non-finite loss, gradient or
parameter (``--allow_nonfinite`` turns the check off), names the first layer and blob where the
values stopped being finite, and points to the last good snapshot.
"""

from __future__ import annotations

import logging

import numpy as np

from ..blob import mean_abs
from ..errors import EXIT_DIVERGED, PyforgeError
from ..kernels.checks import all_finite
from ..log import fmt
from ..net.net import Net
from ..proto import caffe_pb2


class DivergenceError(PyforgeError):
    """Training produced a non-finite loss, gradient or parameter."""

    exit_code = EXIT_DIVERGED


class DivergenceCheck:
    """The two checks of one training iteration, on the train net."""

    def __init__(self, net: Net, param: caffe_pb2.SolverParameter,
                 logger: logging.Logger) -> None:
        self.net = net
        self.param = param
        self.logger = logger

    def after_backward(self, loss: np.float32, iteration: int,
                       last_snapshot: tuple[str, str] | None,
                       diverged_elsewhere: bool = False) -> None:
        """The loss and every gradient must be finite (``diverged_elsewhere``: another rank's
        loss was not, under data parallelism)."""
        if diverged_elsewhere:
            raise DivergenceError(f"training diverged at iteration {iteration} on another rank "
                                  "(rank 0 reports where)")
        if np.isfinite(loss) and all(all_finite(p.blob.diff.reshape(-1))
                                     for p in self.net.learnable):
            return
        what = f"the loss is {loss:g}" if not np.isfinite(loss) else "a gradient is not finite"
        raise DivergenceError(self._message(what, first_nonfinite(self.net), iteration,
                                            iteration, last_snapshot))

    def after_update(self, iteration: int, last_snapshot: tuple[str, str] | None) -> None:
        """Every parameter must be finite (``iteration``: the solver's, already advanced)."""
        for p in self.net.learnable:
            if not all_finite(p.blob.data.reshape(-1)):
                where = f"layer '{p.layer}' parameter blob {p.index} data"
                raise DivergenceError(self._message(
                    "the update made a parameter non-finite (its gradient was finite)", where,
                    iteration - 1, iteration, last_snapshot))

    def _message(self, what: str, where: str, iteration: int, statistics_iteration: int,
                 last_snapshot: tuple[str, str] | None) -> str:
        if self.param.debug_info:
            self.logger.error("Per-layer statistics of iteration %d:", statistics_iteration)
            for line in layer_statistics(self.net):
                self.logger.error("    %s", line)
        last = (f"the last good snapshot is {last_snapshot[1]}" if last_snapshot
                else "no snapshot was written")
        return (f"training diverged at iteration {iteration}: {what}; first non-finite value: "
                f"{where}; {last}; lower base_lr (now {fmt(self.param.base_lr)}) or set "
                "clip_gradients, or pass --allow_nonfinite to continue anyway")


def first_nonfinite(net: Net) -> str:
    """The first place, in computation order, where this pass's values stop being finite:
    parameters and tops in forward layer order, then parameter and bottom diffs in backward
    order."""
    for layer_id, name in enumerate(net.layer_names):
        # A layer's parameters come before its outputs: a non-finite weight is the cause.
        for i, blob in enumerate(net.layers[layer_id].blobs):
            if not np.isfinite(blob.data).all():
                return f"layer '{name}' parameter blob {i} data"
        for blob_id in net.top_ids[layer_id]:
            blob = net.blob_list[blob_id]
            if blob.count and not np.isfinite(blob.data).all():
                return f"layer '{name}' top blob '{net.blob_names[blob_id]}' data (forward)"
    for layer_id in range(len(net.layers) - 1, -1, -1):
        name = net.layer_names[layer_id]
        for i, blob in enumerate(net.layers[layer_id].blobs):
            if net.layers[layer_id].param_propagate_down[i] and not np.isfinite(blob.diff).all():
                return f"layer '{name}' parameter blob {i} diff (backward)"
        for j, blob_id in enumerate(net.bottom_ids[layer_id]):
            blob = net.blob_list[blob_id]
            if net.bottom_need_backward[layer_id][j] and not np.isfinite(blob.diff).all():
                return f"layer '{name}' bottom blob '{net.blob_names[blob_id]}' diff (backward)"
    return "no single blob (the sum overflowed)"


def layer_statistics(net: Net) -> list[str]:
    """Per-layer mean |data| and |diff| of every top and parameter, for divergence reports."""
    lines = []
    for layer_id, name in enumerate(net.layer_names):
        for blob_id in net.top_ids[layer_id]:
            blob = net.blob_list[blob_id]
            if blob.count:
                lines.append(f"[{name}] top {net.blob_names[blob_id]}: mean|data| "
                             f"{fmt(mean_abs(blob.data))}, mean|diff| {fmt(mean_abs(blob.diff))}")
        for i, blob in enumerate(net.layers[layer_id].blobs):
            lines.append(f"[{name}] param {i}: mean|data| {fmt(mean_abs(blob.data))}, "
                         f"mean|diff| {fmt(mean_abs(blob.diff))}")
    return lines
