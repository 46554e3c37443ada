"""EuclideanLoss, SigmoidCrossEntropyLoss, MultinomialLogisticLoss, InfogainLoss, HingeLoss and
ContrastiveLoss."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pyforge.errors import PyforgeError
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto, write_binary_proto
from tests.layers.grad_cases_loss import MLL_CASES
from tests.layers.test_gradients import make_bottoms
from tests.layers.util import labels, rand, run
from tests.reference import naive


def grad(layer, bottom, top, propagate_down=None):
    """Bottom diffs of one backward with the top's own loss-weight diff."""
    for b in bottom:
        b.diff[...] = np.nan  # must be overwritten
    layer.backward(top, propagate_down or [True] + [False] * (len(bottom) - 1), bottom)
    return bottom[0].diff


def loss_of(top) -> float:
    return float(top[0].data)


# --- SigmoidCrossEntropyLoss ----------------------------------------------------------------------
def sce(extra: str, x, t):
    return run(f'type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" {extra}', x, t)


def sce_terms(x, t):
    x, t = x.astype(np.float64), t.astype(np.float64)
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


# --- MultinomialLogisticLoss ----------------------------------------------------------------------
def mll(p, lab):
    return run('type: "MultinomialLogisticLoss" bottom: "p" bottom: "l"', p, lab)


# --- InfogainLoss ---------------------------------------------------------------------------------
def infogain_reference(x, lab, h, axis=1, ignore=None, normalization="VALID", weight=1.0):
    x3 = x.astype(np.float64)
    prob = naive.softmax(x3, axis)
    k = x.shape[axis]
    p3 = np.moveaxis(prob, axis, -1).reshape(-1, k)
    lab = lab.reshape(-1).astype(int)
    h = h.reshape(k, k).astype(np.float64)
    valid = np.ones(len(lab), bool) if ignore is None else lab != ignore
    safe = np.where(valid, lab, 0)
    per = -(h[safe] * np.log(np.maximum(p3, 1e-20))).sum(1)
    outer = int(np.prod(x.shape[:axis]))
    norm = {"VALID": valid.sum(), "FULL": len(lab), "BATCH_SIZE": outer, "NONE": 1}
    norm = max(1, norm[normalization])
    g = (p3 * h.sum(1)[safe][:, None] - h[safe]) * valid[:, None] * weight / norm
    shape = np.moveaxis(prob, axis, -1).shape
    return per[valid].sum() / norm, np.moveaxis(g.reshape(shape), -1, axis), prob


def infogain(extra: str, *xs, tops: int = 1):
    bots = " ".join(f'bottom: "b{i}"' for i in range(len(xs)))
    names = 'top: "loss" top: "prob"' if tops == 2 else ""
    return run(f'type: "InfogainLoss" {bots} {names} {extra}', *xs, tops=tops)


def _write_matrix(path, h, legacy: bool):
    proto = caffe_pb2.BlobProto()
    if legacy:
        proto.num, proto.channels, proto.height, proto.width = 1, 1, *h.shape
    else:
        proto.shape.dim.extend(h.shape)
    proto.data.extend(h.ravel().tolist())
    write_binary_proto(path, proto)


# --- HingeLoss ------------------------------------------------------------------------------------
def hinge_reference(x, lab, norm):
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    n = x.shape[0]
    sign = -np.ones_like(x)
    sign[np.arange(n), lab.astype(int)] = 1
    margin = np.maximum(0, 1 - sign * x)
    if norm == "L1":
        return margin.sum() / n, -sign * (margin > 0) / n
    return (margin**2).sum() / n, -sign * 2 * margin / n


# --- ContrastiveLoss ------------------------------------------------------------------------------
def contrastive_reference(a, b, sim, margin, legacy, weight=1.0):
    a, b = a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(a.shape[0], -1)
    n = a.shape[0]
    diff = a - b
    d2 = (diff**2).sum(1)
    d = np.sqrt(d2)
    similar = sim.reshape(-1).astype(int) != 0
    if legacy:
        dis = np.maximum(margin - d2, 0)
        beta = np.where(margin - d2 > 0, -1.0, 0.0)
    else:
        dis = np.maximum(margin - d, 0) ** 2
        # Caffe's gradient divides by d + 1e-4, not by d.
        beta = np.where(margin - d > 0, -(margin - d) / (d + 1e-4), 0.0)
    loss = np.where(similar, d2, dis).sum() / n / 2
    coeff = np.where(similar, 1.0, beta) * weight / n
    return loss, coeff[:, None] * diff


# --- EuclideanLoss --------------------------------------------------------------------------------
def test_euclidean_loss_value_and_gradients():
    a, b = rand(4, 3, 2, seed=1), rand(4, 3, 2, seed=2)
    layer, bottom, top = run('type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l"', a, b)
    d = a.astype(np.float64) - b
    assert top[0].data.item() == pytest.approx((d**2).sum() / 4 / 2, rel=1e-5)
    top[0].diff[...] = 2.5
    layer.backward(top, [True, True], bottom)
    np.testing.assert_allclose(bottom[0].diff, 2.5 * d / 4, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bottom[1].diff, -2.5 * d / 4, rtol=1e-5, atol=1e-7)
    assert layer.allow_force_backward(1)


def test_euclidean_loss_needs_equal_item_sizes():
    with pytest.raises(PyforgeError):
        run('type: "EuclideanLoss"', rand(4, 3), rand(4, 2))
    with pytest.raises(PyforgeError):
        run('type: "EuclideanLoss"', rand(4, 3), rand(3, 4))


def test_sce_default_normalization_is_batch_size():
    """Unlike SoftmaxWithLoss (VALID), the loss is divided by the batch size."""
    x, t = rand(3, 4), labels((3, 4), 2)
    layer, bottom, top = sce("", x, t)
    assert loss_of(top) == pytest.approx(sce_terms(x, t).sum() / 3, rel=1e-5)
    sig = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(grad(layer, bottom, top), (sig - t) / 3, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("extra", "norm"),
    [
        ("loss_param { normalization: FULL }", 12),
        ("loss_param { normalization: VALID }", 12),
        ("loss_param { normalization: NONE }", 1),
        ("loss_param { normalize: true }", 12),  # deprecated: true -> VALID
        ("loss_param { normalize: false }", 3),  # false -> BATCH_SIZE
    ],
)
def test_sce_normalization_modes(extra, norm):
    x, t = rand(3, 2, 2), labels((3, 2, 2), 2)
    _, _, top = sce(extra, x, t)
    assert loss_of(top) == pytest.approx(sce_terms(x, t).sum() / norm, rel=1e-5)


def test_sce_ignore_label_and_loss_weight():
    x = rand(2, 5)
    t = np.array([[0, 1, 7, 1, 0], [7, 7, 0, 1, 1]], np.float32)
    layer, bottom, top = sce("loss_weight: 3 loss_param { ignore_label: 7 normalization: VALID }",
                             x, t)
    valid = t != 7
    assert loss_of(top) == pytest.approx(sce_terms(x, t)[valid].sum() / valid.sum(), rel=1e-5)
    sig = 1 / (1 + np.exp(-x.astype(np.float64)))
    expected = np.where(valid, sig - t, 0) * 3 / valid.sum()
    np.testing.assert_allclose(grad(layer, bottom, top), expected, rtol=1e-5, atol=1e-6)


def test_sce_all_ignored_normalizes_by_one():
    _, _, top = sce("loss_param { ignore_label: 1 normalization: VALID }", rand(2, 2),
                    np.ones((2, 2), np.float32))
    assert loss_of(top) == 0


def test_sce_is_stable_for_large_inputs():
    x = np.array([[100.0, -100.0, 50.0]], np.float32)
    t = np.array([[0.0, 1.0, 1.0]], np.float32)
    layer, bottom, top = sce("", x, t)
    assert loss_of(top) == pytest.approx(200.0, rel=1e-5)
    np.testing.assert_allclose(grad(layer, bottom, top), [[1, -1, 0]], atol=1e-6)


def test_sce_errors():
    with pytest.raises(PyforgeError, match="same count"):
        sce("", rand(2, 3), rand(2, 2))
    layer, bottom, top = sce("", rand(2, 3), labels((2, 3), 2))
    assert not layer.allow_force_backward(1)
    with pytest.raises(PyforgeError, match="target"):
        layer.backward(top, [False, True], bottom)


def test_mll_forward_backward():
    p = naive.softmax(rand(4, 5)).astype(np.float32)
    lab = np.array([0, 4, 2, 2], np.float32)
    layer, bottom, top = mll(p, lab)
    picked = p[np.arange(4), lab.astype(int)].astype(np.float64)
    assert loss_of(top) == pytest.approx(-np.log(picked).mean(), rel=1e-5)
    expected = np.zeros((4, 5))
    expected[np.arange(4), lab.astype(int)] = -1 / (4 * picked)
    np.testing.assert_allclose(grad(layer, bottom, top), expected, rtol=1e-5)


def test_mll_clamps_probabilities_at_1e_20():
    p = np.array([[0.0, 1.0], [0.5, 0.5]], np.float32)
    layer, bottom, top = mll(p, np.array([0, 1], np.float32))
    assert loss_of(top) == pytest.approx((-np.log(np.float32(1e-20)) - np.log(0.5)) / 2,
                                         rel=1e-5)
    g = grad(layer, bottom, top)
    assert g[0, 0] == pytest.approx(-0.5 / np.float32(1e-20), rel=1e-5)
    assert g[1, 1] == pytest.approx(-1.0, rel=1e-6)


def test_mll_4d_items_and_label_shape():
    p = np.abs(rand(2, 2, 2, 1)) + 0.1
    layer, bottom, top = mll(p, np.array([[[[3]]], [[[1]]]], np.float32))
    flat = p.reshape(2, 4)
    assert loss_of(top) == pytest.approx(-(np.log(flat[0, 3]) + np.log(flat[1, 1])) / 2,
                                         rel=1e-5)
    with pytest.raises(PyforgeError, match=r"\(N\) or \(N, 1, 1, 1\)"):
        mll(rand(2, 3), np.zeros((2, 2), np.float32))
    with pytest.raises(PyforgeError, match="out of range"):
        mll(rand(2, 3), np.array([0, 3], np.float32))


def test_mll_gradient_cases_read_positive_probabilities():
    """The registry's MultinomialLogisticLoss cases rely on the checker's seeded data."""
    for case in MLL_CASES:
        p, lab = make_bottoms(case, np.random.default_rng(1701))
        n = p.shape[0]
        picked = p.data.reshape(n, -1)[np.arange(n), lab.data.reshape(-1).astype(int)]
        assert (picked >= 0.3).all(), case.id


def test_infogain_with_identity_is_softmax_with_loss():
    x, lab = rand(4, 5, scale=2), labels((4,), 5)
    layer, bottom, top = infogain("", x, lab, np.eye(5, dtype=np.float32))
    loss, g = naive.softmax_loss(x, lab)
    assert loss_of(top) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(grad(layer, bottom, top), g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("extra", "shape", "axis", "ignore", "norm"),
    [
        ("", (3, 4), 1, None, "VALID"),
        ("infogain_loss_param { axis: 2 }", (2, 3, 4, 2), 2, None, "VALID"),
        ("loss_param { ignore_label: 2 }", (3, 4, 2), 1, 2, "VALID"),
        ("loss_param { ignore_label: 0 normalization: BATCH_SIZE } loss_weight: 2", (4, 3), 1,
         0, "BATCH_SIZE"),
        ("loss_param { normalization: FULL } infogain_loss_param { axis: -1 }", (2, 2, 3), 2,
         None, "FULL"),
    ],
)
def test_infogain_matches_numpy(extra, shape, axis, ignore, norm):
    x = rand(*shape, scale=2)
    k = shape[axis]
    lab_shape = shape[:axis] + shape[axis + 1 :]
    lab = labels(lab_shape, k)
    h = np.abs(rand(k, k, seed=3))
    weight = 2.0 if "loss_weight: 2" in extra else 1.0
    layer, bottom, top = infogain(extra, x, lab, h)
    loss, g, _ = infogain_reference(x, lab, h, axis, ignore, norm, weight)
    assert loss_of(top) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(grad(layer, bottom, top), g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("legacy", [True, False])
def test_infogain_reads_h_from_source(tmp_path, legacy):
    x, lab = rand(3, 4), labels((3,), 4)
    h = np.abs(rand(4, 4, seed=3))
    path = tmp_path / "H.binaryproto"
    _write_matrix(path, h, legacy)
    layer, bottom, top = infogain(f'infogain_loss_param {{ source: "{path}" }}', x, lab)
    loss, g, _ = infogain_reference(x, lab, h)
    assert loss_of(top) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(grad(layer, bottom, top), g, rtol=1e-4, atol=1e-6)


def test_infogain_second_top_is_the_probability():
    x, lab = rand(3, 4), labels((3,), 4)
    _, _, top = infogain("loss_weight: 1 loss_weight: 0", x, lab, np.eye(4, dtype=np.float32),
                         tops=2)
    np.testing.assert_allclose(top[1].data, naive.softmax(x), rtol=1e-5, atol=1e-7)


def test_infogain_errors(tmp_path):
    x, lab = rand(3, 4), labels((3,), 4)
    with pytest.raises(PyforgeError, match="source must be specified"):
        infogain("", x, lab)
    with pytest.raises(PyforgeError, match="normalize is deprecated"):
        infogain("loss_param { normalize: true }", x, lab, np.eye(4, dtype=np.float32))
    with pytest.raises(PyforgeError, match="4x4"):
        infogain("", x, lab, np.eye(3, dtype=np.float32))
    with pytest.raises(PyforgeError, match="number of labels"):
        infogain("", x, labels((3, 2), 4), np.eye(4, dtype=np.float32))
    with pytest.raises(PyforgeError, match="no such file"):
        infogain(f'infogain_loss_param {{ source: "{tmp_path / "missing"}" }}', x, lab)
    layer, bottom, top = infogain("", x, lab, np.eye(4, dtype=np.float32))
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, False, False]
    with pytest.raises(PyforgeError, match="infogain matrix"):
        layer.backward(top, [True, False, True], bottom)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_matches_numpy(norm):
    x, lab = rand(4, 5, scale=1.5), labels((4,), 5)
    layer, bottom, top = run(f'type: "HingeLoss" bottom: "x" bottom: "l" hinge_loss_param '
                             f"{{ norm: {norm} }}", x, lab)
    loss, g = hinge_reference(x, lab, norm)
    assert loss_of(top) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(grad(layer, bottom, top), g, rtol=1e-5, atol=1e-7)


def test_hinge_is_one_vs_all_and_default_l1():
    x = np.array([[2.0, -2.0, 0.5]], np.float32)  # label 0: margins 0, 0 and 1.5
    layer, bottom, top = run('type: "HingeLoss" bottom: "x" bottom: "l"', x,
                             np.zeros(1, np.float32))
    assert loss_of(top) == pytest.approx(1.5)
    np.testing.assert_array_equal(grad(layer, bottom, top), [[0, 0, 1]])
    with pytest.raises(PyforgeError, match="out of range"):
        run('type: "HingeLoss" bottom: "x" bottom: "l"', x, np.full(1, 3, np.float32))


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_matches_numpy(legacy):
    a, b = rand(6, 3), rand(6, 3, seed=1)
    sim = np.array([1, 0, 0, 1, 0, 0], np.float32)
    margin = 4.0 if legacy else 2.5
    layer, bottom, top = run(
        f'type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "s" loss_weight: 2 '
        f"contrastive_loss_param {{ margin: {margin} legacy_version: {str(legacy).lower()} }}",
        a, b, sim)
    loss, g = contrastive_reference(a, b, sim, margin, legacy, 2.0)
    assert loss_of(top) == pytest.approx(loss, rel=1e-5)
    grad(layer, bottom, top, [True, True, False])
    np.testing.assert_allclose(bottom[0].diff, g, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bottom[1].diff, -g, rtol=1e-5, atol=1e-7)


def test_contrastive_4d_bottoms_default_margin_and_errors():
    a, b = rand(2, 3, 1, 1), rand(2, 3, 1, 1, seed=1)
    sim = np.array([[[[0]]], [[[1]]]], np.float32)
    layer, _, top = run('type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "s"', a, b, sim)
    assert loss_of(top) == pytest.approx(contrastive_reference(a, b, sim, 1.0, False)[0],
                                         rel=1e-5)
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, True, False]
    with pytest.raises(PyforgeError, match="same C"):
        run('type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "s"', rand(2, 3),
            rand(2, 4), np.zeros(2, np.float32))
    with pytest.raises(PyforgeError, match="similarity"):
        run('type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "s"', rand(2, 3),
            rand(2, 3), np.zeros((2, 2), np.float32))


def test_infogain_source_next_to_the_prototxt(tmp_path, monkeypatch):
    """As for other paths in a prototxt: the current directory first, else the net's folder."""
    h = np.abs(rand(3, 3, seed=3))
    _write_matrix(tmp_path / "H.binaryproto", h, legacy=True)
    text = """
    layer { name: "in" type: "Input" top: "x" top: "label"
            input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
    layer { name: "loss" type: "InfogainLoss" bottom: "x" bottom: "label"
            infogain_loss_param { source: "H.binaryproto" } }
    """
    param = parse_text_proto(text, caffe_pb2.NetParameter(), "<net>")
    param.state.phase = caffe_pb2.TRAIN
    elsewhere = tmp_path / "run_losses"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    net = Net(param, np.random.default_rng(0), logging.getLogger("test"),
              source_file=str(tmp_path / "net.prototxt"))
    x, lab = rand(2, 3), np.array([2, 0], np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["label"].data[...] = lab
    assert net.forward_loss() == pytest.approx(infogain_reference(x, lab, h)[0], rel=1e-5)
