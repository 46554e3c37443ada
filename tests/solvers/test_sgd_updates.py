"""SGD updates against hand-computed least-squares updates (Caffe's test_gradient_based_solver).

The net is HDF5Data -> InnerProduct(num_output 1) -> EuclideanLoss on 8 rows of 3x10x10 data, so
the loss is ``E = 1/(2n)||Xw + b - y||^2`` and its gradient ``(1/n)(X^T(Xw + b - y))`` (the bias
is the last weight). Each test runs the solver for K iterations, takes its weights, history and
the next batch, computes the (K+1)-th update in float64 and compares it with a fresh solver (same
seed) after K+1 iterations.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from pyforge.proto import caffe_pb2
from pyforge.solvers import create_solver

NUM = 4  # rows per iteration (Caffe's num_)
ROWS = 8
DIM = 3 * 10 * 10
REL, FLOOR = 1e-4, 1e-7

_FILLERS = ('weight_filler { type: "gaussian" std: 1.0 } '
            'bias_filler { type: "%s" %s }')


def _ip(name: str, bottom: str, top: str, param_w: str, param_b: str, bias_filler: str) -> str:
    kind, extra = ("gaussian", "std: 1.0") if bias_filler == "gaussian" else ("constant",
                                                                            "value: 0")
    return f"""
layer {{
  name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}"
  param {{ name: "weights" {param_w} }}
  param {{ name: "bias" {param_b} }}
  inner_product_param {{ num_output: 1 {_FILLERS % (kind, extra)} }}
}}"""


def _net_text(list_file: Path, batch_size: int, *, param_w: str = "", param_b: str = "",
              shared: bool = False, bias_filler: str = "gaussian") -> str:
    head = f"""
name: "TestNet"
layer {{
  name: "data" type: "HDF5Data" top: "data" top: "targets"
  hdf5_data_param {{ source: "{list_file}" batch_size: {batch_size} }}
}}"""
    if not shared:
        body = _ip("innerprod", "data", "innerprod", param_w, param_b, bias_filler)
    else:
        body = """
layer { name: "slice" type: "Slice" bottom: "data" top: "data1" top: "data2"
        slice_param { axis: 0 } }"""
        body += _ip("innerprod1", "data1", "innerprod1", param_w, param_b, bias_filler)
        body += _ip("innerprod2", "data2", "innerprod2", param_w, param_b, bias_filler)
        body += """
layer { name: "concat" type: "Concat" bottom: "innerprod1" bottom: "innerprod2"
        top: "innerprod" concat_param { axis: 0 } }"""
    tail = """
layer { name: "loss" type: "EuclideanLoss" bottom: "innerprod" bottom: "targets" top: "loss" }
"""
    return head + body + tail


class Problem:
    """The data set on disk and a factory of solvers over it."""

    def __init__(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(20240611)
        self.data = rng.standard_normal((ROWS, 3, 10, 10)).astype(np.float32)
        self.targets = rng.standard_normal((ROWS, 1)).astype(np.float32)
        self.tmp = tmp_path
        h5 = tmp_path / "solver_data.h5"
        with h5py.File(h5, "w") as f:
            f["data"] = self.data
            f["targets"] = self.targets
        self.list_file = tmp_path / "solver_data_list.txt"
        self.list_file.write_text(f"{h5}\n")
        self._nets = 0

    def net_file(self, iter_size: int = 1, **net_options) -> Path:
        self._nets += 1
        path = self.tmp / f"net{self._nets}.prototxt"
        path.write_text(_net_text(self.list_file, NUM // iter_size, **net_options))
        return path

    def solver(self, *, lr: float, wd: float = 0.0, momentum: float = 0.0, max_iter: int = 10,
               iter_size: int = 1, net_options: dict | None = None, lr_policy: str = "fixed",
               **fields):
        net = self.net_file(iter_size, **(net_options or {}))
        param = caffe_pb2.SolverParameter(
            net=str(net), lr_policy=lr_policy, base_lr=lr, weight_decay=wd, momentum=momentum,
            random_seed=1701, snapshot=0, snapshot_after_train=False, display=0,
            max_iter=max_iter, iter_size=iter_size, **fields)
        return create_solver(param, solver_file=str(self.tmp / "solver.prototxt"))

    def batch(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows read by iteration ``iteration`` (the HDF5 cursor wraps around the 8 rows)."""
        rows = [(iteration * NUM + j) % ROWS for j in range(NUM)]
        x = self.data.reshape(ROWS, DIM)[rows].astype(np.float64)
        y = self.targets[rows, 0].astype(np.float64)
        return x, y


@pytest.fixture
def problem(tmp_path) -> Problem:
    return Problem(tmp_path)


def _state(solver, layer: str = "innerprod"):
    """(w, b, h_w, h_b) of the solver, in float64."""
    w, b = solver.net.params[layer]
    assert len(solver.history) == 2
    return (w.data.reshape(-1).astype(np.float64), b.data.reshape(-1).astype(np.float64),
            solver.history[0].data.reshape(-1).astype(np.float64),
            solver.history[1].data.reshape(-1).astype(np.float64))


def _reference(state, x, y, *, lr, wd=0.0, momentum=0.0, regularization="L2",
               lr_mult=(1.0, 1.0), decay_mult=(1.0, 1.0), clip=-1.0, iter_size=1):
    """The next SGD step in float64: (w, b, h_w, h_b, clip_norm, scales).

    ``scales`` are, per value, the magnitudes of the terms that were added up to get it
    (``w_K`` and ``h`` for the weights; ``mu*h_K`` and ``lr * sum_n |x_n| |r_n|' / n`` for the
    history, with ``|r_n|' = |x_n||w| + |b| + |y_n|``), which bound the rounding error of a
    float32 computation: the residual r = Xw + b - y cancels heavily once w is large.
    """
    w, b, hw, hb = state
    raw_w, raw_b = np.zeros_like(w), np.zeros_like(b)
    abs_w, abs_b = np.zeros_like(w), np.zeros_like(b)  # the same sums over |terms|
    # iter_size passes, each of batch n/iter_size, each normalised by its own batch size;
    # the parameter diffs accumulate (sum over the passes).
    for xs, ys in zip(np.array_split(x, iter_size), np.array_split(y, iter_size)):
        resid = xs @ w + b[0] - ys
        raw_w += xs.T @ resid / len(ys)
        raw_b += resid.sum() / len(ys)
        # |r| is bounded by the sum of the magnitudes that make it up (|x||w| + |b| + |y|).
        abs_r = np.abs(xs) @ np.abs(w) + abs(b[0]) + np.abs(ys)
        abs_w += np.abs(xs).T @ abs_r / len(ys)
        abs_b += abs_r.sum() / len(ys)
    norm = float(np.sqrt((raw_w ** 2).sum() + (raw_b ** 2).sum()))
    if clip >= 0 and norm > clip:
        raw_w, raw_b = raw_w * (clip / norm), raw_b * (clip / norm)
    grads = [raw_w / iter_size, raw_b / iter_size]
    grad_sizes = [abs_w / iter_size, abs_b / iter_size]
    out, scales = [], []
    for g, g_size, param, hist, lm, dm in zip(grads, grad_sizes, (w, b), (hw, hb), lr_mult,
                                              decay_mult):
        decay = wd * dm
        if decay:
            g = g + decay * (param if regularization == "L2" else np.sign(param))
        new_hist = momentum * hist + lr * lm * g
        out.append((param - new_hist, new_hist))
        scales.append((np.maximum(np.abs(param), np.abs(new_hist)),
                       np.maximum(np.abs(momentum * hist), np.abs(lr * lm) * g_size)))
    (w1, h_w), (b1, h_b) = out
    (sw, shw), (sb, shb) = scales
    return w1, b1, h_w, h_b, norm, (sw, sb, shw, shb)


def _assert_close(got, expected, what: str, scale=None, rel: float = REL,
                  floor: float = FLOOR) -> None:
    """|got - expected| <= max(floor, rel * max(|expected|, scale)) elementwise.

    ``scale`` (the magnitude of the terms summed to get ``expected``) keeps values that are
    small by cancellation (w_K - h ~ 0 while both are ~100) from demanding more than float32
    can give.
    """
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    assert got.shape == expected.shape, what
    size = np.abs(expected)
    if scale is not None:
        size = np.maximum(size, np.asarray(scale, dtype=np.float64).reshape(-1))
    margin = np.maximum(floor, rel * size)
    bad = np.flatnonzero(np.abs(got - expected) > margin)
    assert not bad.size, (
        f"{what}: {bad.size} of {got.size} values differ, e.g. index {bad[0]}: got "
        f"{got[bad[0]]!r}, expected {expected[bad[0]]!r} (margin {margin[bad[0]]:.3g})")


def _assert_state(got, expected, when: str) -> None:
    """Weights, bias and (for SGD: the update that was applied) history."""
    for i, what in enumerate(("weights", "bias", "weight history", "bias history")):
        _assert_close(got[i], expected[i], f"{what} {when}", scale=expected[5][i])


def _check_step(problem: Problem, k: int, *, lr, wd=0.0, momentum=0.0, iter_size=1,
                net_options=None, layer="innerprod", ref_options=None, **fields):
    """Run K iterations, compute the (K+1)-th by hand, compare with a fresh solver."""
    options = dict(lr=lr, wd=wd, momentum=momentum, iter_size=iter_size,
                   net_options=net_options, max_iter=k + 1, **fields)
    first = problem.solver(**options)
    first.step(k)
    assert first.iter == k
    before = _state(first, layer)
    x, y = problem.batch(k)
    expected = _reference(before, x, y, lr=lr, wd=wd, momentum=momentum, iter_size=iter_size,
                          **(ref_options or {}))
    second = problem.solver(**options)
    second.step(k + 1)
    assert second.iter == k + 1
    after = _state(second, layer)
    _assert_state(after, expected, f"after {k + 1} iterations")
    # Same seed, same data: the K-iteration solver continued by one step is bitwise the same.
    first.step(1)
    for a, b in zip(_state(first, layer), after):
        assert np.array_equal(a, b)
    first.close()
    second.close()
    return before, expected, after


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("wd", [0.0, 0.5])
@pytest.mark.parametrize("lr", [1.0, 0.01])
def test_least_squares_update(problem, lr, wd, momentum, k):
    _check_step(problem, k, lr=lr, wd=wd, momentum=momentum)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize(("lr", "wd", "momentum"), [(0.01, 0.0, 0.0), (0.01, 0.5, 0.9),
                                                    (1.0, 0.5, 0.5)])
def test_least_squares_update_with_iter_size_2(problem, lr, wd, momentum, k):
    _check_step(problem, k, lr=lr, wd=wd, momentum=momentum, iter_size=2)


def test_history_after_a_step_is_the_applied_update(problem):
    solver = problem.solver(lr=0.01, wd=0.5, momentum=0.9)
    solver.step(2)
    w0, b0, _, _ = _state(solver)
    solver.step(1)
    w1, b1, hw, hb = _state(solver)
    assert np.abs(hw).max() > 0 and np.abs(hb).max() > 0
    # w1 = fl(w0 - h): equal up to the rounding of the float32 subtraction.
    spacing = float(np.spacing(np.float32(max(np.abs(w0).max(), np.abs(w1).max()))))
    np.testing.assert_allclose(w0 - w1, hw, rtol=0, atol=spacing)
    spacing = float(np.spacing(np.float32(max(abs(b0[0]), abs(b1[0])))))
    np.testing.assert_allclose(b0 - b1, hb, rtol=0, atol=spacing)


def test_first_update_without_momentum_is_lr_times_gradient(problem):
    """From a zero history, h = lr * g: the learning rate is inside the history."""
    solver = problem.solver(lr=0.01, momentum=0.9)
    state = _state(solver)
    assert not state[2].any() and not state[3].any()
    x, y = problem.batch(0)
    resid = x @ state[0] + state[1][0] - y
    solver.step(1)
    _, _, hw, hb = _state(solver)
    _assert_close(hw, 0.01 * x.T @ resid / NUM, "weight history")
    _assert_close(hb, [0.01 * resid.sum() / NUM], "bias history")


def test_lr_lives_inside_the_momentum_history(problem):
    """h = mu*h + lr*g; w -= h (Caffe), not h = mu*h + g; w -= lr*h (PyTorch): when the rate
    drops (step policy, stepsize 1, gamma 0.1) the stored history is not rescaled."""
    solver = problem.solver(lr=0.1, momentum=0.9, lr_policy="step", gamma=0.1, stepsize=1)
    solver.step(1)
    state = _state(solver)
    x, y = problem.batch(1)
    expected = _reference(state, x, y, lr=0.01, momentum=0.9)  # iteration 1: lr = 0.1 * 0.1
    solver.step(1)
    after = _state(solver)
    _assert_state(after, expected, "after a drop of the rate")
    # PyTorch's form would give a visibly different step.
    w, b, hw, _ = state
    g = x.T @ (x @ w + b[0] - y) / NUM
    pytorch_w = w - 0.01 * (0.9 * (hw / 0.1) + g)
    assert not np.allclose(after[0], pytorch_w, rtol=1e-3, atol=0)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_l1_regularization(problem, k, momentum):
    _check_step(problem, k, lr=0.01, wd=0.5, momentum=momentum,
                regularization_type="L1", ref_options={"regularization": "L1"})


def test_l1_sign_of_zero_is_zero(problem):
    """A bias that starts at exactly 0 gets no L1 decay term in its first update."""
    before, expected, after = _check_step(
        problem, 0, lr=0.01, wd=0.5, regularization_type="L1",
        net_options={"bias_filler": "constant"}, ref_options={"regularization": "L1"})
    assert before[1][0] == 0.0
    x, y = problem.batch(0)
    resid = x @ before[0] - y
    _assert_close(after[1], [-0.01 * resid.sum() / NUM], "bias after an L1 step from 0")


def test_l2_is_the_default_regularization(problem):
    _check_step(problem, 1, lr=0.01, wd=0.5, regularization_type="L2")


@pytest.mark.parametrize(("w_spec", "b_spec"), [
    ((1.0, 1.0), (2.0, 0.0)),    # Caffe's usual bias setting
    ((0.5, 2.0), (1.0, 1.0)),
    ((1.0, 1.0), (0.0, 1.0)),    # frozen bias
    ((0.0, 1.0), (1.0, 1.0)),    # frozen weights
])
@pytest.mark.parametrize("k", [0, 2])
def test_lr_mult_and_decay_mult(problem, w_spec, b_spec, k):
    net_options = {"param_w": "lr_mult: {:g} decay_mult: {:g}".format(*w_spec),
                   "param_b": "lr_mult: {:g} decay_mult: {:g}".format(*b_spec)}
    lr, wd, momentum = 0.01, 0.5, 0.5
    before, expected, after = _check_step(
        problem, k, lr=lr, wd=wd, momentum=momentum, net_options=net_options,
        ref_options={"lr_mult": (w_spec[0], b_spec[0]), "decay_mult": (w_spec[1], b_spec[1])})
    # Each multiplier changes its own blob only: the other one matches the plain update.
    x, y = problem.batch(k)
    plain = _reference(before, x, y, lr=lr, wd=wd, momentum=momentum)
    for i, (spec, name) in enumerate(((w_spec, "weights"), (b_spec, "bias"))):
        if spec == (1.0, 1.0):
            _assert_close(after[i], plain[i], f"{name} (default multipliers)",
                          scale=plain[5][i])
        else:
            assert not np.allclose(after[i], plain[i], rtol=1e-3, atol=0), (
                f"{name}: multipliers {spec} had no effect")
    if w_spec[0] == 0.0:
        assert np.array_equal(after[0], before[0])
    if b_spec[0] == 0.0:
        assert np.array_equal(after[1], before[1])


def test_weight_decay_applies_to_biases_by_default(problem):
    lr, wd = 0.01, 0.5
    before, expected, after = _check_step(problem, 0, lr=lr, wd=wd)
    w, b, _, _ = before
    x, y = problem.batch(0)
    resid = x @ w + b[0] - y
    with_decay = b[0] - lr * (resid.sum() / NUM + wd * b[0])
    without_decay = b[0] - lr * (resid.sum() / NUM)
    assert abs(with_decay - without_decay) > 1e-3  # the test can tell them apart
    _assert_close(after[1], [with_decay], "decayed bias")


@pytest.mark.parametrize(("lr", "wd", "momentum"), [(0.01, 0.0, 0.0), (0.01, 0.5, 0.9),
                                                    (1.0, 0.5, 0.5)])
def test_iter_size_2_with_half_batches_equals_iter_size_1(problem, lr, wd, momentum):
    """Caffe's CheckAccumulation."""
    full = problem.solver(lr=lr, wd=wd, momentum=momentum)
    half = problem.solver(lr=lr, wd=wd, momentum=momentum, iter_size=2)
    assert half.net.blobs["data"].shape[0] == NUM // 2
    for _ in range(4):
        full.step(1)
        half.step(1)
        for a, b, what in zip(_state(half), _state(full), ("w", "b", "h_w", "h_b")):
            # Sums in another order: compare relative to the largest value of each blob.
            scale = np.full(np.size(b), np.abs(b).max())
            _assert_close(a, b, f"{what} at iteration {full.iter}", scale=scale)


@pytest.mark.parametrize("iter_size", [1, 2])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_clip_gradients(problem, pyforge_log, iter_size, k):
    """Clipping scales the raw accumulated diffs (before the iter_size division and before weight
    decay) by clip/||g|| over all params."""
    clip = 2.0
    before, expected, after = _check_step(
        problem, k, lr=0.01, wd=0.5, momentum=0.9, iter_size=iter_size, clip_gradients=clip,
        ref_options={"clip": clip})
    norm = expected[4]
    assert norm > clip  # the test clips
    pattern = re.compile(r"^Gradient clipping: scaling down gradients \(L2 norm (\S+) > (\S+)\) "
                         r"by scale factor (\S+)$")
    lines = [m for m in pyforge_log if m.startswith("Gradient clipping")]
    # The first solver ran K + 1 steps, the second K + 1: every update clipped once.
    assert len(lines) == 2 * (k + 1)
    match = pattern.match(lines[-1])
    assert match, lines[-1]
    assert float(match.group(2)) == clip
    np.testing.assert_allclose(float(match.group(1)), norm, rtol=1e-5)
    np.testing.assert_allclose(float(match.group(3)), clip / norm, rtol=1e-5)


def test_clip_gradients_does_nothing_below_the_threshold(problem, pyforge_log):
    _check_step(problem, 1, lr=0.01, wd=0.5, momentum=0.9, clip_gradients=1e9,
                ref_options={"clip": 1e9})
    assert not [m for m in pyforge_log if m.startswith("Gradient clipping")]


def test_clip_gradients_norm_is_computed_before_weight_decay(problem):
    """With a huge weight decay, a norm that included it would clip much harder."""
    before, expected, after = _check_step(problem, 0, lr=0.001, wd=50.0, clip_gradients=2.0,
                                          ref_options={"clip": 2.0})
    x, y = problem.batch(0)
    wrong = _reference(before, x, y, lr=0.001, wd=50.0)
    assert not np.allclose(after[0], wrong[0], rtol=1e-3, atol=0)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize(("lr", "wd", "momentum", "iter_size"), [
    (0.01, 0.0, 0.0, 1), (1.0, 0.5, 0.9, 1), (0.01, 0.5, 0.5, 2),
])
def test_shared_parameters_accumulate_into_the_owner(problem, lr, wd, momentum, iter_size, k):
    """Caffe's share_ tests: Slice the batch, two InnerProducts sharing weights/bias by name,
    Concat back: same update as one InnerProduct over the whole batch."""
    _check_step(problem, k, lr=lr, wd=wd, momentum=momentum, iter_size=iter_size,
                net_options={"shared": True}, layer="innerprod1")


def test_shared_parameters_have_one_owner_and_share_memory(problem):
    solver = problem.solver(lr=0.01, net_options={"shared": True})
    net = solver.net
    assert len(net.learnable) == 2
    assert len(solver.history) == 2
    (w1, b1), (w2, b2) = net.params["innerprod1"], net.params["innerprod2"]
    assert np.shares_memory(w1.data, w2.data) and np.shares_memory(b1.data, b2.data)
    assert np.shares_memory(w1.diff, w2.diff) and np.shares_memory(b1.diff, b2.diff)
    solver.step(2)
    assert np.array_equal(w1.data, w2.data) and np.array_equal(b1.data, b2.data)
