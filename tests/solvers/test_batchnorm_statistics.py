"""BatchNorm's statistics blobs as Caffe 1.0's Net and solvers treat them.

Caffe's BatchNormLayer::LayerSetUp adds ``param { lr_mult: 0 }`` for its mean, variance and
scale-factor blobs to the layer's *own* copy of its LayerParameter. Net::Init decides which
parameters need backward from the *net's* copy (default lr_mult 1), so a BatchNorm written
without param specs has its statistics marked as needing backward: debug_info prints a
``param blob i diff: 0`` line for each, and the layer's tops need backward even when its bottom
does not. Net::AppendParam registers the learnable multipliers from the *layer's* copy: lr_mult
0 (set), decay_mult 1 (the default). So weight decay reaches the statistics' gradients (an
AdaGrad history fills with (weight_decay * statistic)^2) but the step is lr_mult 0: SGD with
momentum leaves them at the running sums the forward passes wrote.

The net: HDF5Data (4 rows of 2 channels x 3 values) -> BatchNorm -> InnerProduct -> loss.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from pyforge.proto import caffe_pb2
from pyforge.solvers import create_solver
from tests.logcapture import capture_log

ROWS, BATCH, CHANNELS, SPATIAL = 8, 4, 2, 3
MAF = 0.9  # moving_average_fraction
NO_LR = "param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 }"


def _write_problem(tmp: Path, bn_params: str) -> Path:
    rng = np.random.default_rng(16)
    data = (rng.standard_normal((ROWS, CHANNELS, SPATIAL, 1)) * 2 + 3).astype(np.float32)
    targets = rng.standard_normal((ROWS, 1)).astype(np.float32)
    with h5py.File(tmp / "d.h5", "w") as f:
        f["data"], f["targets"] = data, targets
    (tmp / "list.txt").write_text(f"{tmp / 'd.h5'}\n")
    net = tmp / "net.prototxt"
    net.write_text(f"""
name: "bn"
layer {{ name: "data" type: "HDF5Data" top: "data" top: "targets"
        hdf5_data_param {{ source: "{tmp / 'list.txt'}" batch_size: {BATCH} }} }}
layer {{ name: "bn1" type: "BatchNorm" bottom: "data" top: "bn" {bn_params}
        batch_norm_param {{ moving_average_fraction: {MAF} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "bn" top: "ip"
        inner_product_param {{ num_output: 1 weight_filler {{ type: "gaussian" std: 0.5 }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "targets" top: "loss" }}
""")
    return net


def _solver(tmp: Path, bn_params: str = "", solver_type: str = "SGD", momentum: float = 0.9,
            weight_decay: float = 0.1, debug_info: bool = False):
    net = _write_problem(tmp, bn_params)
    param = caffe_pb2.SolverParameter(
        net=str(net), type=solver_type, base_lr=0.1, lr_policy="fixed", momentum=momentum,
        weight_decay=weight_decay, random_seed=1701, max_iter=10, display=1, snapshot=0,
        snapshot_after_train=False, debug_info=debug_info)
    return create_solver(param, solver_file=str(tmp / "solver.prototxt"))


def _running_sums(tmp: Path, iterations: int):
    """Mean sum, variance sum and scale factor after ``iterations`` TRAIN forwards, in float64:
    s = maf*s + 1, mean_sum = mean + maf*mean_sum, var_sum = m/(m-1)*var + maf*var_sum."""
    with h5py.File(tmp / "d.h5", "r") as f:
        data = np.asarray(f["data"], dtype=np.float64)
    mean_sum = np.zeros(CHANNELS)
    var_sum = np.zeros(CHANNELS)
    factor = 0.0
    for it in range(iterations):
        rows = [(it * BATCH + j) % ROWS for j in range(BATCH)]
        x = data[rows].transpose(1, 0, 2, 3).reshape(CHANNELS, -1)
        m = x.shape[1]
        factor = MAF * factor + 1
        mean_sum = x.mean(axis=1) + MAF * mean_sum
        var_sum = x.var(axis=1) * m / (m - 1) + MAF * var_sum
    return mean_sum, var_sum, np.array([factor])


def test_sgd_momentum_and_decay_leave_the_statistics_at_their_running_sums(tmp_path):
    solver = _solver(tmp_path)
    learnable = {(p.layer, p.index): p for p in solver.net.learnable}
    for i in range(3):
        # Registered from the layer's copy: lr_mult 0 (set by the layer), decay_mult 1.
        assert (learnable["bn1", i].lr_mult, learnable["bn1", i].decay_mult) == (0.0, 1.0)
        assert learnable["bn1", i].has_lr_mult and not learnable["bn1", i].has_decay_mult
    solver.step(3)
    expected = _running_sums(tmp_path, 3)
    stats = solver.net.params["bn1"]
    for blob, want in zip(stats, expected):
        # With decay acting through lr_mult 1 the factor would be 2.71 * (1 - 0.1*0.1)... here
        # it is exactly 1 + 0.9 + 0.81.
        np.testing.assert_allclose(blob.data.astype(np.float64), want, rtol=1e-6)
    assert float(stats[2].data[0]) == pytest.approx(2.71, rel=1e-7)
    # SGD's history for them: momentum * h + 0 * (decayed gradient) stays zero.
    bn_ids = [solver.net.learnable.index(learnable["bn1", i]) for i in range(3)]
    for param_id in bn_ids:
        assert not solver.history[param_id].data.any()
    # The InnerProduct weights did move: the solver ran.
    assert solver.history[solver.net.learnable.index(learnable["ip", 0])].data.any()


def test_weight_decay_reaches_the_statistics_gradients(tmp_path):
    """AdaGrad's history is the sum of squared regularized gradients: for the statistics that
    is sum over the updates of (weight_decay * statistic)^2, the statistic as the forward pass
    of that iteration left it (their own gradient is zero)."""
    wd = 0.1
    solver = _solver(tmp_path, solver_type="AdaGrad", momentum=0.0, weight_decay=wd)
    solver.step(3)
    learnable = {(p.layer, p.index): p for p in solver.net.learnable}
    expected = [np.zeros(CHANNELS), np.zeros(CHANNELS), np.zeros(1)]
    for it in range(1, 4):
        for i, value in enumerate(_running_sums(tmp_path, it)):
            expected[i] += (wd * value) ** 2
    for i in range(3):
        history = solver.history[solver.net.learnable.index(learnable["bn1", i])].data
        np.testing.assert_allclose(history.astype(np.float64), expected[i], rtol=1e-5)
    np.testing.assert_allclose(solver.net.params["bn1"][0].data,
                               _running_sums(tmp_path, 3)[0], rtol=1e-6)


def _debug_labels(messages: list[str]) -> list[str]:
    return [m.split(":")[0].strip() for m in messages
            if m.startswith(("    [Forward]", "    [Backward]"))]


def test_debug_info_prints_the_statistics_zero_diffs(tmp_path):
    solver = _solver(tmp_path, debug_info=True)
    with capture_log() as log:
        solver.step(2)
    labels = _debug_labels(log.messages)
    backward = [label for label in labels if label.startswith("[Backward]")]
    per_iteration = ["[Backward] Layer loss, bottom blob ip diff",
                     "[Backward] Layer ip, bottom blob bn diff",
                     "[Backward] Layer ip, param blob 0 diff",
                     "[Backward] Layer ip, param blob 1 diff",
                     "[Backward] Layer bn1, param blob 0 diff",
                     "[Backward] Layer bn1, param blob 1 diff",
                     "[Backward] Layer bn1, param blob 2 diff",
                     "[Backward] All net params (data, diff)"]
    assert backward == per_iteration * 2
    assert len(labels) == 2 * (10 + 8)  # 10 forward lines: 2 + 4 + 3 + 1 tops and params
    zero_lines = [m for m in log.messages if m.startswith("    [Backward] Layer bn1")]
    assert zero_lines == [f"    [Backward] Layer bn1, param blob {i} diff: 0"
                          for i in range(3)] * 2


def test_statistics_masked_in_the_prototxt_need_no_backward(tmp_path):
    """With ``param { lr_mult: 0 }`` x3 in the net's copy, nothing below the InnerProduct
    needs backward: no bn1 lines and no bottom diff for the InnerProduct."""
    solver = _solver(tmp_path, bn_params=NO_LR, debug_info=True)
    with capture_log() as log:
        solver.step(1)
    backward = [label for label in _debug_labels(log.messages)
                if label.startswith("[Backward]")]
    assert backward == ["[Backward] Layer loss, bottom blob ip diff",
                        "[Backward] Layer ip, param blob 0 diff",
                        "[Backward] Layer ip, param blob 1 diff",
                        "[Backward] All net params (data, diff)"]
