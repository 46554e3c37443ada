"""Split, Flatten, Reshape, Concat, Slice, Silence, Crop and Tile."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import NetError, PyforgeError
from tests.gradient_check import blob_from, build_layer, setup_forward
from tests.layers.util import backward, rand, run
from tests.reference import forks as ref


def arange(*shape, start=0):
    return (np.arange(int(np.prod(shape)), dtype=np.float32) + start).reshape(shape)


# --- Eltwise --------------------------------------------------------------------------------------
A = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]], np.float32)


B = np.array([[2.0, -2.0, -3.0], [0.5, 1.0, -4.0]], np.float32)


# --- Crop -----------------------------------------------------------------------------------------
def crop(params: str, x, ref):
    return run(f'type: "Crop" bottom: "x" bottom: "r" top: "y" crop_param {{ {params} }}',
               x, ref)


F = np.float32


# --- Split ----------------------------------------------------------------------------------------
def test_split_shares_data_and_sums_diffs():
    x = arange(2, 3)
    layer, bottom, top = run('type: "Split"', x, tops=3)
    for t in top:
        assert t.shape == x.shape
        np.testing.assert_array_equal(t.data, x)
    bottom[0].data[0, 0] = 42  # shared memory, as Caffe's ShareData
    assert all(t.data[0, 0] == 42 for t in top)
    for i, t in enumerate(top):
        t.diff[...] = i + 1
    bottom[0].diff[...] = 99
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.full((2, 3), 6))


def test_split_refuses_in_place():
    layer = build_layer('type: "Split"')
    blob = blob_from(arange(2))
    with pytest.raises(PyforgeError, match="(?i)in place"):
        layer.setup([blob], [blob])


# --- Concat ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "shapes", "axis"),
    [
        ("", [(2, 1, 3), (2, 2, 3)], 1),
        ("concat_param { axis: 0 }", [(1, 2), (3, 2), (2, 2)], 0),
        ("concat_param { axis: -1 }", [(2, 2, 1), (2, 2, 3)], 2),
        ("concat_param { concat_dim: 0 }", [(1, 3), (2, 3)], 0),
        ("concat_param { axis: 2 }", [(1, 2, 2, 2), (1, 2, 1, 2)], 2),
        # Bands wider than one piece of the parallel copy (16384 values), batch 1 and 3.
        ("", [(1, 3, 100, 70), (1, 2, 100, 70)], 1),
        ("", [(3, 5, 60, 60), (3, 1, 60, 60), (3, 4, 60, 60)], 1),
    ],
)
def test_concat(extra, shapes, axis):
    xs = [arange(*s, start=100 * i) for i, s in enumerate(shapes)]
    layer, bottom, top = run(f'type: "Concat" {extra}', *xs)
    expected = np.concatenate(xs, axis=axis)
    np.testing.assert_array_equal(top[0].data, expected)
    dy = arange(*expected.shape, start=1) * 10
    top[0].diff[...] = dy
    layer.backward(top, [True] * len(xs), bottom)
    parts = np.split(dy, np.cumsum([s[axis] for s in shapes])[:-1], axis=axis)
    for b, part in zip(bottom, parts, strict=True):
        np.testing.assert_array_equal(b.diff, part)


def test_concat_propagate_down_per_bottom():
    layer, bottom, top = run('type: "Concat"', arange(1, 1), arange(1, 2))
    top[0].diff[...] = 1
    bottom[0].diff[...] = 7
    layer.backward(top, [False, True], bottom)
    assert bottom[0].diff.item() == 7
    np.testing.assert_array_equal(bottom[1].diff, [[1, 1]])


def test_concat_shape_mismatch_and_axis_conflict():
    with pytest.raises(PyforgeError, match="(?i)axis"):
        run('type: "Concat"', arange(2, 1, 3), arange(2, 1, 4))
    with pytest.raises(PyforgeError, match="concat_dim"):
        run('type: "Concat" concat_param { axis: 1 concat_dim: 1 }', arange(2, 1), arange(2, 1))


@pytest.mark.parametrize("extra", ["concat_param { concat_dim: 2 }", "concat_param { axis: 2 }",
                                   "concat_param { axis: -3 }"])
def test_concat_axis_out_of_range_is_a_net_error(extra):
    """Caffe: CHECK_LT(concat_axis_, num_axes) << "concat_dim out of range." (a clean error,
    not an internal IndexError)."""
    with pytest.raises(PyforgeError):
        run(f'type: "Concat" {extra}', arange(2, 1), arange(2, 1))


# --- Slice ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "shape", "tops", "axis", "points"),
    [
        ("slice_param { slice_point: 1 slice_point: 3 }", (2, 5, 2), 3, 1, [1, 3]),
        ("slice_param { axis: 0 }", (6, 2), 3, 0, [2, 4]),
        ("slice_param { axis: -1 slice_point: 2 }", (2, 2, 3), 2, 2, [2]),
        ("slice_param { slice_dim: 2 }", (2, 1, 4), 2, 2, [2]),
        ("", (2, 4), 4, 1, [1, 2, 3]),
        ("slice_param { slice_point: 3 }", (3, 5, 60, 60), 2, 1, [3]),  # wider than a piece
    ],
)
def test_slice(extra, shape, tops, axis, points):
    x = arange(*shape)
    layer, bottom, top = run(f'type: "Slice" {extra}', x, tops=tops)
    parts = np.split(x, points, axis=axis)
    for t, part in zip(top, parts, strict=True):
        np.testing.assert_array_equal(t.data, part)
    for i, t in enumerate(top):
        t.diff[...] = i + 1
    bottom[0].diff[...] = 99
    layer.backward(top, [True], bottom)
    expected = np.concatenate([np.full(p.shape, i + 1) for i, p in enumerate(parts)], axis=axis)
    np.testing.assert_array_equal(bottom[0].diff, expected)


@pytest.mark.parametrize(
    ("extra", "tops"),
    [
        ("slice_param { slice_point: 1 }", 3),  # needs tops - 1 points
        ("", 3),  # 4 channels do not split into 3 evenly
        ("slice_param { slice_point: 2 slice_point: 2 }", 3),  # not increasing
        ("slice_param { slice_point: 5 }", 2),  # beyond the axis
        ("slice_param { slice_dim: 2 }", 2),  # Caffe: "slice_dim out of range."
        ("slice_param { axis: 2 }", 2),
    ],
)
def test_slice_errors(extra, tops):
    with pytest.raises(PyforgeError):
        run(f'type: "Slice" {extra}', arange(2, 4), tops=tops)


# --- Flatten / Reshape ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "shape", "expected"),
    [
        ("", (2, 3, 4, 5), (2, 60)),
        ("flatten_param { axis: 2 }", (2, 3, 4, 5), (2, 3, 20)),
        ("flatten_param { axis: 1 end_axis: 2 }", (2, 3, 4, 5), (2, 12, 5)),
        ("flatten_param { axis: 0 end_axis: -2 }", (2, 3, 4, 5), (24, 5)),
        ("flatten_param { axis: -3 end_axis: -2 }", (2, 3, 4, 5), (2, 12, 5)),
        ("", (3, 2), (3, 2)),
        ("flatten_param { axis: 0 }", (3, 2), (6,)),
    ],
)
def test_flatten(extra, shape, expected):
    x = arange(*shape)
    layer, bottom, top = run(f'type: "Flatten" {extra}', x)
    assert top[0].shape == expected
    np.testing.assert_array_equal(top[0].data.ravel(), x.ravel())
    top[0].diff[...] = arange(*expected, start=5)
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, arange(*shape, start=5))


@pytest.mark.parametrize("extra", ["flatten_param { axis: 3 end_axis: 1 }",
                                   "flatten_param { axis: 4 }",
                                   "flatten_param { end_axis: -5 }"])
def test_flatten_bad_axes_are_net_errors(extra):
    """Caffe fails a CHECK (Blob::count needs start <= end, CanonicalAxisIndex the range);
    pyforge must report a clean PyforgeError naming the layer, not an internal error."""
    with pytest.raises(PyforgeError):
        run(f'type: "Flatten" {extra}', arange(2, 3, 4, 5))


@pytest.mark.parametrize(
    ("dims", "extra", "shape", "expected"),
    [
        ([0, -1], "", (2, 3, 4), (2, 12)),
        ([-1], "", (2, 3, 4), (24,)),
        ([0, 0, 2, 2], "", (2, 3, 4), (2, 3, 2, 2)),
        ([-1, 4], "", (2, 3, 4), (6, 4)),
        ([3, 0, -1], "", (6, 2, 2), (3, 2, 4)),
        ([2, 2], "axis: 1", (3, 4), (3, 2, 2)),
        ([6], "axis: 1 num_axes: 2", (2, 3, 2, 5), (2, 6, 5)),
        ([1], "axis: 1 num_axes: 0", (2, 3), (2, 1, 3)),
        ([-1], "axis: -1 num_axes: 0", (2, 3), (2, 3, 1)),
        ([2, -1], "axis: -2", (2, 1, 6), (2, 1, 2, 3)),  # -2: start at the last axis
        ([], "axis: 0 num_axes: 0", (2, 3), (2, 3)),
    ],
)
def test_reshape(dims, extra, shape, expected):
    dim_text = " ".join(f"dim: {d}" for d in dims)
    x = arange(*shape)
    layer, bottom, top = run(f'type: "Reshape" reshape_param {{ shape {{ {dim_text} }} '
                             f"{extra} }}", x)
    assert top[0].shape == expected
    np.testing.assert_array_equal(top[0].data.ravel(), x.ravel())
    top[0].diff[...] = 3
    layer.backward(top, [True], bottom)
    assert (bottom[0].diff == 3).all() and bottom[0].shape == shape


@pytest.mark.parametrize(
    "dims",
    [[-1, -1], [5, -1], [7], [0, 0, 0, 0], [-2, 6]],
)
def test_reshape_errors(dims):
    dim_text = " ".join(f"dim: {d}" for d in dims)
    with pytest.raises(PyforgeError):
        run(f'type: "Reshape" reshape_param {{ shape {{ {dim_text} }} }}', arange(2, 3, 4))


@pytest.mark.parametrize("kind", ["Reshape", "Flatten"])
def test_reshape_and_flatten_refuse_in_place(kind):
    layer = build_layer(f'type: "{kind}" reshape_param {{ shape {{ dim: -1 }} }}'
                        if kind == "Reshape" else f'type: "{kind}"')
    blob = blob_from(arange(2, 3))
    with pytest.raises(PyforgeError, match="(?i)in place"):
        layer.setup([blob], [blob])


def test_reshape_follows_the_bottom_batch_size():
    layer, bottom, top = run('type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }',
                             arange(2, 3, 2))
    bottom[0].reshape((5, 3, 2))
    layer.reshape(bottom, top)
    assert top[0].shape == (5, 6)


# --- Silence --------------------------------------------------------------------------------------
def test_silence_zeroes_the_diffs_it_is_asked_for():
    layer, bottom, _ = run('type: "Silence"', A, B, tops=0)
    for b in bottom:
        b.diff[...] = 5
    layer.backward([], [True, False], bottom)
    assert (bottom[0].diff == 0).all() and (bottom[1].diff == 5).all()


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


@pytest.mark.parametrize(("shape", "group"), [((2, 6, 3, 2), 2), ((1, 6, 2, 2), 3),
                                              ((2, 8, 5), 4), ((1, 3, 2, 2), 1)])
def test_shuffle_channel_interleaves_the_groups(shape, group):
    x = rand(*shape)
    layer = build_layer(f'type: "ShuffleChannel" bottom: "x" top: "y" '
                        f"shuffle_channel_param {{ group: {group} }}")
    bottom, top = [blob_from(x)], [Blob()]
    setup_forward(layer, bottom, top)
    np.testing.assert_array_equal(top[0].data, ref.shuffle_channel(x, group))
    top[0].diff[...] = top[0].data
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, x)  # the inverse permutation


@pytest.mark.parametrize(("text", "shape", "message"), [
    ('bottom: "x" top: "y" shuffle_channel_param { group: 4 }', (1, 6, 2, 2),
     "group 4 must divide the channels"),
    ('bottom: "x" top: "y" shuffle_channel_param { group: 0 }', (1, 6, 2, 2),
     "group must be > 0"),
])
def test_shuffle_channel_errors(text, shape, message):
    layer = build_layer(f'type: "ShuffleChannel" {text}')
    with pytest.raises(PyforgeError, match=message):
        setup_forward(layer, [blob_from(np.zeros(shape, F))], [Blob()])


def test_shuffle_channel_refuses_to_run_in_place():
    layer = build_layer('type: "ShuffleChannel" bottom: "x" top: "x" '
                        "shuffle_channel_param { group: 2 }")
    blob = blob_from(np.zeros((1, 4, 2, 2), F))
    with pytest.raises(PyforgeError, match="cannot run in place"):
        setup_forward(layer, [blob], [blob])


# --- Permute ------------------------------------------------------------------------------------
@pytest.mark.parametrize("order, full", [((0, 2, 3, 1), (0, 2, 3, 1)), ((3, 1), (3, 1, 0, 2)),
                                         ((), (0, 1, 2, 3)), ((1, 0), (1, 0, 2, 3))])
def test_permute_forward_backward(order, full):
    x = rand(2, 3, 4, 5)
    orders = " ".join(f"order: {o}" for o in order)
    layer, bottom, top = run(f'type: "Permute" bottom: "x" top: "y" permute_param {{ {orders} }}',
                             x)
    np.testing.assert_array_equal(top[0].data, x.transpose(full))
    dy = rand(*top[0].shape, seed=3)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff.transpose(full), dy)


@pytest.mark.parametrize("params, message", [
    ("order: 0 order: 4", "order 4 is not less than the bottom's 4 axes"),
    ("order: 1 order: 1", r"duplicate orders in \[1, 1\]"),
])
def test_permute_errors(params, message):
    with pytest.raises(NetError, match=message):
        run(f'type: "Permute" bottom: "x" top: "y" permute_param {{ {params} }}', rand(1, 2, 3, 4))
