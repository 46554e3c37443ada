"""Filter and BatchReindex."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import blob_from, build_layer
from tests.layers.util import backward, rand, run


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
