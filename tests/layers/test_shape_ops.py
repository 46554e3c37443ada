"""Crop, Tile, Reduction, ArgMax, Embed, Filter, BatchReindex and Parameter: forward values
against NumPy, backward, Caffe's shape rules and quirks, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto
from tests.gradient_check import blob_from, build_layer, setup_forward


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run(text: str, *xs, tops: int = 1):
    layer = build_layer(text)
    bottom = [blob_from(x) for x in xs]
    top = [Blob() for _ in range(tops)]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def backward(layer, bottom, top, dys, propagate_down=None):
    for t, dy in zip(top, dys):
        t.diff[...] = dy
    for b in bottom:
        b.diff[...] = np.nan  # must be overwritten
    layer.backward(top, propagate_down or [True] + [False] * (len(bottom) - 1), bottom)


# --- Crop -----------------------------------------------------------------------------------------
def crop(params: str, x, ref):
    return run(f'type: "Crop" bottom: "x" bottom: "r" top: "y" crop_param {{ {params} }}',
               x, ref)


@pytest.mark.parametrize(
    ("params", "xshape", "rshape", "expected"),
    [
        # Default axis 2, no offset: the top-left corner of each spatial plane.
        ("", (2, 3, 5, 6), (1, 1, 3, 2), np.s_[:, :, 0:3, 0:2]),
        # One offset applies to every cropped axis.
        ("offset: 1", (2, 3, 5, 6), (7, 7, 3, 4), np.s_[:, :, 1:4, 1:5]),
        # One offset per cropped axis.
        ("axis: 1 offset: 1 offset: 2 offset: 0", (2, 4, 5, 6), (2, 2, 3, 6),
         np.s_[:, 1:3, 2:5, 0:6]),
        # Negative axis counts from the end; axis 0 crops the batch too.
        ("axis: -1 offset: 3", (2, 3, 4, 6), (1, 1, 1, 2), np.s_[:, :, :, 3:5]),
        ("axis: 0 offset: 1", (3, 4), (2, 2), np.s_[1:3, 1:3]),
    ],
)
def test_crop_forward_and_backward(params, xshape, rshape, expected):
    x = rand(*xshape)
    layer, bottom, top = crop(params, x, np.zeros(rshape, np.float32))
    np.testing.assert_array_equal(top[0].data, x[expected])
    dy = rand(*top[0].shape, seed=1)
    backward(layer, bottom, top, [dy], [True, True])
    want = np.zeros(xshape, np.float32)
    want[expected] = dy
    np.testing.assert_array_equal(bottom[0].diff, want)
    assert (bottom[1].diff == 0).all()  # the reference only gives a shape


@pytest.mark.parametrize(
    ("params", "xshape", "rshape", "match"),
    [
        ("offset: 3", (1, 1, 5, 5), (1, 1, 3, 3), "out-of-bounds"),
        ("axis: 1 offset: 1 offset: 1", (2, 3, 4, 4), (2, 2, 2, 2), "number of offset"),
        ("axis: 4", (2, 3, 4, 4), (2, 3, 4, 4), "axis"),
        ("", (2, 3, 4, 4), (2, 3, 5, 4), "out-of-bounds"),
        ("", (2, 3, 4, 4), (2, 3), "fewer axes"),
    ],
)
def test_crop_errors(params, xshape, rshape, match):
    with pytest.raises(PyforgeError, match=match):
        crop(params, np.zeros(xshape, np.float32), np.zeros(rshape, np.float32))


# --- Tile -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("axis", "shape", "tiles"), [(1, (2, 3, 2), 3), (0, (2, 3), 2),
                                                       (-1, (2, 2, 3), 4), (2, (1, 2, 1, 3), 2)])
def test_tile_matches_numpy(axis, shape, tiles):
    x = rand(*shape)
    layer, bottom, top = run(f'type: "Tile" tile_param {{ axis: {axis} tiles: {tiles} }}', x)
    ax = axis % len(shape)
    # The whole block of axes from `axis` on is repeated (np.tile on that axis).
    reps = [1] * len(shape)
    reps[ax] = tiles
    np.testing.assert_array_equal(top[0].data, np.tile(x, reps))
    dy = rand(*top[0].shape, seed=1)
    backward(layer, bottom, top, [dy])
    split = dy.reshape(shape[:ax] + (tiles,) + shape[ax:])
    np.testing.assert_allclose(bottom[0].diff, split.sum(axis=ax), rtol=1e-6, atol=1e-6)


def test_tile_errors():
    with pytest.raises(PyforgeError, match="tiles must be specified"):
        run('type: "Tile"', rand(2, 3))
    with pytest.raises(PyforgeError, match="positive"):
        run('type: "Tile" tile_param { tiles: 0 }', rand(2, 3))


# --- Reduction ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "shape", "axis", "op", "coeff"),
    [
        ("", (2, 3, 4), 0, "SUM", 1.0),
        ("operation: SUM axis: 1 coeff: -2", (2, 3, 4), 1, "SUM", -2.0),
        ("operation: ASUM axis: 2", (2, 3, 4), 2, "ASUM", 1.0),
        ("operation: SUMSQ axis: -1 coeff: 0.5", (3, 2, 4), 2, "SUMSQ", 0.5),
        ("operation: MEAN axis: 1 coeff: 3", (2, 3, 4), 1, "MEAN", 3.0),
        ("operation: MEAN", (5, 2), 0, "MEAN", 1.0),
    ],
)
def test_reduction_matches_numpy(params, shape, axis, op, coeff):
    x = rand(*shape)
    x.flat[0] = 0  # sign(0) = 0 in ASUM's gradient
    layer, bottom, top = run(f'type: "Reduction" reduction_param {{ {params} }}', x)
    assert top[0].shape == shape[:axis]  # axis 0 gives a scalar (Caffe logs "(1)")
    flat = x.reshape(int(np.prod(shape[:axis])), -1).astype(np.float64)
    values = {"SUM": flat.sum(1), "ASUM": np.abs(flat).sum(1), "SUMSQ": (flat**2).sum(1),
              "MEAN": flat.mean(1)}[op] * coeff
    np.testing.assert_allclose(top[0].data.reshape(-1), values, rtol=1e-5, atol=1e-5)
    dy = rand(*top[0].shape, seed=1)
    backward(layer, bottom, top, [dy])
    g = np.asarray(dy, np.float64).reshape(-1, 1) * coeff
    grads = {"SUM": np.ones_like(flat) * g, "ASUM": np.sign(flat) * g, "SUMSQ": 2 * flat * g,
             "MEAN": np.ones_like(flat) * g / flat.shape[1]}[op]
    np.testing.assert_allclose(bottom[0].diff.reshape(flat.shape), grads, rtol=1e-5, atol=1e-6)


def test_reduction_scalar_top_shape_string():
    _, _, top = run('type: "Reduction"', rand(2, 3))
    assert top[0].shape == () and top[0].shape_string() == "(1)"


# --- ArgMax ---------------------------------------------------------------------------------------
def argmax(params: str, x):
    return run(f'type: "ArgMax" argmax_param {{ {params} }}', x)[2][0]


def test_argmax_default_shape_and_values():
    x = rand(3, 2, 2, 2)
    top = argmax("", x)
    assert top.shape == (3, 1, 1, 1)  # (N, 1, top_k) padded to the bottom's 4 axes
    np.testing.assert_array_equal(top.data.reshape(3), x.reshape(3, -1).argmax(1))


def test_argmax_out_max_val_layout():
    """Without axis, out_max_val gives (N, 2, top_k): indices in row 0, values in row 1."""
    x = rand(2, 5)
    top = argmax("top_k: 3 out_max_val: true", x)
    assert top.shape == (2, 2, 3)
    order = np.argsort(-x, axis=1)[:, :3]
    np.testing.assert_array_equal(top.data[:, 0], order)
    np.testing.assert_array_equal(top.data[:, 1], np.take_along_axis(x, order, 1))


def test_argmax_small_bottoms_get_three_axes():
    assert argmax("top_k: 2", rand(4, 3)).shape == (4, 1, 2)
    assert argmax("", rand(4)).shape == (4, 1, 1)


@pytest.mark.parametrize("out_max_val", [False, True])
def test_argmax_along_axis(out_max_val):
    x = rand(2, 4, 3)
    top = argmax(f"axis: 1 top_k: 2 out_max_val: {str(out_max_val).lower()}", x)
    assert top.shape == (2, 2, 3)
    order = np.argsort(-x, axis=1)[:, :2]
    # With an axis, out_max_val gives only the values (no indices).
    expected = np.take_along_axis(x, order, 1) if out_max_val else order
    np.testing.assert_array_equal(top.data, expected)


def test_argmax_ties_rank_the_larger_index_first():
    """Caffe sorts (value, index) pairs with std::greater."""
    x = np.array([[1.0, 3.0, 3.0, 0.0, 3.0]], np.float32)
    top = argmax("top_k: 4 out_max_val: true", x)
    np.testing.assert_array_equal(top.data[0, 0], [4, 2, 1, 0])
    np.testing.assert_array_equal(top.data[0, 1], [3, 3, 3, 1])


def test_argmax_negative_axis_and_errors():
    x = rand(2, 3, 4)
    np.testing.assert_array_equal(argmax("axis: -1", x).data[..., 0], x.argmax(-1))
    with pytest.raises(PyforgeError, match="top_k"):
        argmax("top_k: 5", rand(2, 2, 2))
    with pytest.raises(PyforgeError, match="top_k"):
        argmax("axis: 1 top_k: 4", rand(2, 3, 5))


# --- Embed ----------------------------------------------------------------------------------------
def embed(params: str, idx, fill: bool = True):
    filler = ('weight_filler { type: "gaussian" } bias_filler { type: "gaussian" }'
              if fill else "")
    return run(f'type: "Embed" embed_param {{ {params} {filler} }}', idx)


def test_embed_forward_backward():
    idx = np.array([[0, 3, 3], [1, 0, 4]], np.float32)
    layer, bottom, top = embed("num_output: 2 input_dim: 5", idx)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert [p.shape for p in layer.blobs] == [(5, 2), (2,)]
    assert top[0].shape == (2, 3, 2)
    np.testing.assert_allclose(top[0].data, w[idx.astype(int)] + b, rtol=1e-6)
    dy = rand(2, 3, 2, seed=1)
    for p in layer.blobs:
        p.diff[...] = 0
    top[0].diff[...] = dy
    layer.backward(top, [False], bottom)
    want = np.zeros((5, 2))
    np.add.at(want, idx.astype(int).ravel(), dy.reshape(-1, 2))  # repeats accumulate
    np.testing.assert_allclose(layer.blobs[0].diff, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.blobs[1].diff, dy.reshape(-1, 2).sum(0), rtol=1e-6)
    assert (layer.blobs[0].diff[2] == 0).all()
    layer.backward(top, [False], bottom)  # parameter gradients accumulate
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * want, rtol=1e-6, atol=1e-6)


def test_embed_no_bias_and_default_zero_fill():
    layer, _, top = embed("num_output: 3 input_dim: 2 bias_term: false", np.array([1.0]),
                          fill=False)
    assert [p.shape for p in layer.blobs] == [(2, 3)]
    assert top[0].shape == (1, 3) and (top[0].data == 0).all()


@pytest.mark.parametrize("bad", [5.0, -1.0, 1.5, np.nan])
def test_embed_rejects_bad_indices(bad):
    with pytest.raises(PyforgeError, match=r"integers in \[0, 5\)"):
        embed("num_output: 2 input_dim: 5", np.array([0.0, bad], np.float32))


def test_embed_refuses_gradient_to_indices():
    layer, bottom, top = embed("num_output: 2 input_dim: 3", np.array([0.0, 2.0]))
    assert not layer.allow_force_backward(0)
    with pytest.raises(PyforgeError, match="backpropagate"):
        layer.backward(top, [True], bottom)
    with pytest.raises(PyforgeError, match="num_output"):
        embed("input_dim: 3", np.array([0.0]))
    with pytest.raises(PyforgeError, match="input_dim"):
        embed("num_output: 3", np.array([0.0]))


# --- Filter ---------------------------------------------------------------------------------------
def test_filter_keeps_selected_items_and_scatters_back():
    a, b = rand(5, 3), rand(5, 2, 2, seed=1)
    sel = np.array([0, 2, 0, -1, 0.5], np.float32)  # any non-zero value selects
    layer = build_layer('type: "Filter" bottom: "a" bottom: "b" bottom: "s" top: "fa" '
                        'top: "fb"')
    bottom, top = [blob_from(a), blob_from(b), blob_from(sel)], [Blob(), Blob()]
    layer.setup(bottom, top)
    # Caffe's first reshape (at setup, before any data) gives all N items.
    assert top[0].shape == (5, 3) and top[1].shape == (5, 2, 2)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    keep = [1, 3, 4]
    assert top[0].shape == (3, 3) and top[1].shape == (3, 2, 2)  # the filter's output count
    np.testing.assert_array_equal(top[0].data, a[keep])
    np.testing.assert_array_equal(top[1].data, b[keep])
    dys = [rand(3, 3, seed=2), rand(3, 2, 2, seed=3)]
    backward(layer, bottom, top, dys, [True, True, False])
    for blob, dy, x in zip(bottom, dys, (a, b)):
        want = np.zeros_like(x)
        want[keep] = dy
        np.testing.assert_array_equal(blob.diff, want)


def test_filter_nothing_selected_and_errors():
    layer, bottom, top = run('type: "Filter" bottom: "a" bottom: "s" top: "fa"', rand(3, 2),
                             np.zeros((3, 1, 1, 1), np.float32))
    assert top[0].shape == (0, 2)
    backward(layer, bottom, top, [np.zeros((0, 2))], [True, False])
    assert (bottom[0].diff == 0).all()
    assert not layer.allow_force_backward(1) and layer.allow_force_backward(0)
    with pytest.raises(PyforgeError, match="selector"):
        layer.backward(top, [False, True], bottom)
    with pytest.raises(PyforgeError, match="singletons"):
        run('type: "Filter" bottom: "a" bottom: "s" top: "fa"', rand(3, 2), rand(3, 2))
    with pytest.raises(PyforgeError, match="0th dimension"):
        run('type: "Filter" bottom: "a" bottom: "s" top: "fa"', rand(4, 2), rand(3))
    with pytest.raises(PyforgeError, match="one top per filtered bottom"):
        run('type: "Filter" bottom: "a" bottom: "s" top: "fa" top: "fb"', rand(3, 2),
            rand(3), tops=2)


# --- BatchReindex ---------------------------------------------------------------------------------
def test_batch_reindex_gathers_and_accumulates():
    x = rand(4, 2, 3)
    idx = np.array([3, 0, 3, 3, 1.7], np.float32)  # 1.7 truncates to 1, as static_cast<int>
    layer, bottom, top = run('type: "BatchReindex" bottom: "x" bottom: "i" top: "y"', x, idx)
    assert top[0].shape == (5, 2, 3)
    picks = [3, 0, 3, 3, 1]
    np.testing.assert_array_equal(top[0].data, x[picks])
    dy = rand(5, 2, 3, seed=1)
    backward(layer, bottom, top, [dy])
    want = np.zeros((4, 2, 3))
    np.add.at(want, picks, dy)
    np.testing.assert_allclose(bottom[0].diff, want, rtol=1e-6, atol=1e-6)
    assert (bottom[0].diff[2] == 0).all()  # never picked
    assert not layer.allow_force_backward(1)
    with pytest.raises(PyforgeError, match="index"):
        layer.backward(top, [False, True], bottom)


@pytest.mark.parametrize(("idx", "match"), [([0, 4], "outside the batch"),
                                            ([-0.5], "outside the batch"),
                                            ([[0, 1]], "1 axis")])
def test_batch_reindex_errors(idx, match):
    with pytest.raises(PyforgeError, match=match):
        run('type: "BatchReindex" bottom: "x" bottom: "i" top: "y"', rand(4, 2),
            np.array(idx, np.float32))


# --- Parameter ------------------------------------------------------------------------------------
def test_parameter_top_shares_data_and_diff():
    layer, _, top = run('type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 3 } }')
    assert [b.shape for b in layer.blobs] == [(2, 3)] and top[0].shape == (2, 3)
    assert (layer.blobs[0].data == 0).all()  # Caffe does not fill it
    layer.blobs[0].data[...] = rand(2, 3)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, layer.blobs[0].data)
    top[0].diff[...] = 5
    assert (layer.blobs[0].diff == 5).all()  # the next layer's gradient is the param's


NET = """
name: "p"
layer { name: "p" type: "Parameter" top: "w" parameter_param { shape { dim: 2 dim: 3 } } }
layer { name: "in" type: "DummyData" top: "x" dummy_data_param { shape { dim: 2 dim: 3 }
        data_filler { type: "constant" value: 2 } } }
layer { name: "prod" type: "Eltwise" bottom: "w" bottom: "x" top: "y"
        eltwise_param { operation: PROD } }
layer { name: "r" type: "Reduction" bottom: "y" top: "loss" loss_weight: 1 }
"""


def test_parameter_learns_in_a_net():
    param = parse_text_proto(NET, caffe_pb2.NetParameter(), "<net>")
    param.state.phase = caffe_pb2.TRAIN
    net = Net(param, np.random.default_rng(0), logging.getLogger("test"))
    w = net.params["p"][0]
    w.data[...] = np.arange(6).reshape(2, 3)
    loss = net.forward_backward()
    assert loss == pytest.approx(2 * 15)
    np.testing.assert_allclose(w.diff, 2.0)  # d(sum 2w)/dw
