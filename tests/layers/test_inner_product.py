"""InnerProduct and Embed."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.errors import PyforgeError
from tests.layers.util import rand, run


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
