"""SPP: Caffe's per-level kernel/pad rule, output layout (flatten + concat of the levels),
values against NumPy pooling, backward, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from pyforge.layers.spp import level_geometry
from tests.gradient_check import blob_from, build_layer, setup_forward
from tests.reference import naive


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def spp(params: str, x):
    layer = build_layer(f'name: "spp" type: "SPP" bottom: "x" top: "y" spp_param {{ {params} }}')
    bottom, top = [blob_from(x)], [Blob()]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def caffe_level(level: int, size: int) -> tuple[int, int]:
    """(kernel, pad) of GetPoolingParam, written out independently."""
    bins = 2**level
    kernel = math.ceil(size / bins)
    return kernel, (kernel * bins - size + 1) // 2


@pytest.mark.parametrize(
    ("level", "size", "expected"),
    [(0, 13, (13, 0)), (1, 13, (7, 1)), (2, 13, (4, 2)), (1, 8, (4, 0)), (2, 6, (2, 1)),
     (2, 7, (2, 1)), (3, 13, (2, 2))],
)
def test_level_geometry(level, size, expected):
    kh, kw, ph, pw = level_geometry(level, size, size)
    assert (kh, ph) == expected == (kw, pw)


def test_divisible_input_pools_exact_blocks():
    """An 8x8 input: level 0 is the global max, level 1 the 2x2 quadrants, level 2 the 4x4
    grid of 2x2 blocks; each flattened per item (channel-major) and concatenated."""
    x = rand(2, 3, 8, 8)
    _, _, top = spp("pyramid_height: 3", x)
    assert top[0].shape == (2, 3 * (1 + 4 + 16))
    parts = []
    for bins in (1, 2, 4):
        blocks = x.reshape(2, 3, bins, 8 // bins, bins, 8 // bins).max(axis=(3, 5))
        parts.append(blocks.reshape(2, -1))
    np.testing.assert_array_equal(top[0].data, np.concatenate(parts, axis=1))


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize(("shape", "height"), [((2, 2, 6, 6), 3), ((1, 3, 7, 5), 2),
                                               ((2, 1, 13, 9), 3)])
def test_spp_matches_pooling_levels(pool, shape, height):
    x = rand(*shape)
    layer, bottom, top = spp(f"pyramid_height: {height} pool: {pool}", x)
    n = shape[0]
    parts, backs = [], []
    dy = rand(*top[0].shape, seed=1)
    offset = 0
    for level in range(height):
        kh, ph = caffe_level(level, shape[2])
        kw, pw = caffe_level(level, shape[3])
        if pool == "MAX":
            out, mask = naive.max_pool(x, kh, kw, kh, kw, ph, pw)
        else:
            out = naive.ave_pool(x, kh, kw, kh, kw, ph, pw)
        parts.append(out.reshape(n, -1))
        g = dy[:, offset : offset + parts[-1].shape[1]].reshape(out.shape)
        offset += parts[-1].shape[1]
        if pool == "MAX":
            backs.append(naive.max_pool_backward(g, mask, shape))
        else:
            backs.append(naive.ave_pool_backward(g, shape, kh, kw, kh, kw, ph, pw))
    np.testing.assert_allclose(top[0].data, np.concatenate(parts, axis=1), rtol=1e-5,
                               atol=1e-6)
    top[0].diff[...] = dy
    bottom[0].diff[...] = np.nan
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, sum(backs), rtol=1e-5, atol=1e-5)


def test_pyramid_height_1_keeps_the_pooling_shape():
    """Caffe hands the top straight to its one Pooling layer: (N, C, 1, 1), not flattened."""
    x = rand(2, 3, 4, 5)
    layer, bottom, top = spp("pyramid_height: 1", x)
    assert top[0].shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(top[0].data[..., 0, 0], x.max(axis=(2, 3)))
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    assert bottom[0].diff.sum() == pytest.approx(6)


def test_spp_follows_a_new_input_size():
    layer, bottom, top = spp("pyramid_height: 2 pool: AVE", rand(1, 2, 4, 4))
    assert top[0].shape == (1, 2 * 5)
    x = rand(3, 2, 6, 8, seed=1)
    bottom[0].reshape(x.shape)
    bottom[0].data[...] = x
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (3, 2 * 5)
    np.testing.assert_allclose(top[0].data[:, :2], x.mean(axis=(2, 3)), rtol=1e-5)


@pytest.mark.parametrize(
    ("params", "shape", "match"),
    [
        ("pool: MAX", (1, 1, 4, 4), "pyramid_height"),
        ("pyramid_height: 3", (1, 1, 5, 5), "too small"),  # level 2: kernel 2, pad 2
        ("pyramid_height: 2 pool: STOCHASTIC", (1, 1, 4, 4), "STOCHASTIC"),
        ("pyramid_height: 2", (2, 4, 4), "4 axes"),
    ],
)
def test_spp_errors(params, shape, match):
    with pytest.raises(PyforgeError, match=match):
        spp(params, np.zeros(shape, np.float32))
