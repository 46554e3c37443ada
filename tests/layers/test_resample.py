"""Interp (PSPNet/DeepLab) and Upsample (SegNet/ENet): output sizes in the forks' order of
precedence, the corner-aligned bilinear values, Upsample on the mask of pyforge's Pooling
(SegNet's convention), and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import blob_from, build_layer, setup_forward
from tests.reference import forks as ref


def interp(params: str, x):
    layer = build_layer(f'name: "interp" type: "Interp" bottom: "x" top: "y" '
                        f"interp_param {{ {params} }}")
    top = [Blob()]
    setup_forward(layer, [blob_from(x)], top)
    return top[0]


@pytest.mark.parametrize(("params", "shape", "out"), [
    ("zoom_factor: 2", (1, 1, 5, 7), (9, 13)),
    ("zoom_factor: 8", (1, 1, 60, 60), (473, 473)),     # PSPNet's final upsampling
    ("shrink_factor: 2", (1, 1, 5, 8), (3, 4)),
    ("height: 6 width: 4", (1, 1, 3, 3), (6, 4)),
    ("shrink_factor: 2 zoom_factor: 3", (1, 1, 9, 8), (13, 10)),
    # height/width come before the combined factors in the fork's precedence.
    ("shrink_factor: 2 zoom_factor: 3 height: 4 width: 5", (1, 1, 9, 8), (4, 5)),
    ("zoom_factor: 2 pad_beg: -1 pad_end: -2", (1, 1, 8, 9), (9, 11)),
])
def test_output_size(params, shape, out):
    assert interp(params, np.zeros(shape, np.float32)).shape == (*shape[:2], *out)


def test_corners_map_onto_corners():
    x = np.array([[[[0, 1], [2, 3]]]], np.float32)
    y = interp("zoom_factor: 3", x).data[0, 0]
    np.testing.assert_allclose(y[0], [0, 1 / 3, 2 / 3, 1], rtol=1e-6)
    np.testing.assert_allclose(y[:, 0], [0, 2 / 3, 4 / 3, 2], rtol=1e-6)
    assert y[-1, -1] == 3


def test_crop_uses_pad_beg_on_both_axes():
    """The fork crops the rows and the columns by pad_beg at the start and pad_end at the
    end; the window is then resized."""
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 7)).astype(np.float32)
    y = interp("zoom_factor: 2 pad_beg: -1 pad_end: -1", x)
    np.testing.assert_array_equal(y.data, ref.interp_forward(x, -1, 4, 5, 7, 9))
    same = interp("height: 4 width: 5 pad_beg: -1 pad_end: -1", x)
    np.testing.assert_array_equal(same.data, x[:, :, 1:5, 1:6])


@pytest.mark.parametrize(("params", "shape", "message"), [
    ("", (1, 1, 3, 3), "must give zoom_factor, shrink_factor, or height and width"),
    ("height: 4", (1, 1, 3, 3), "must give zoom_factor, shrink_factor, or height and width"),
    ("zoom_factor: 0", (1, 1, 3, 3), "zoom_factor and shrink_factor must be >= 1"),
    ("zoom_factor: 2 pad_beg: 1", (1, 1, 3, 3), "pad_beg and pad_end must be <= 0"),
    ("zoom_factor: 2 pad_beg: -2 pad_end: -1", (1, 1, 3, 3), "crop the whole 3x3 input"),
    ("zoom_factor: 2", (1, 3, 3), r"must be \(N, C, H, W\)"),
])
def test_interp_errors(params, shape, message):
    with pytest.raises(PyforgeError, match=message):
        interp(params, np.zeros(shape, np.float32))


def pool_then_upsample(x, pool: str, upsample: str):
    """SegNet's pair: Pooling with the mask top, then Upsample of (pooled, mask)."""
    pool_layer = build_layer(f'name: "pool" type: "Pooling" bottom: "x" top: "p" top: "mask" '
                             f"pooling_param {{ {pool} }}")
    pooled = [blob_from(x)], [Blob(), Blob()]
    setup_forward(pool_layer, *pooled)
    up = build_layer(f'name: "up" type: "Upsample" bottom: "p" bottom: "mask" top: "y" '
                     f"upsample_param {{ {upsample} }}")
    top = [Blob()]
    setup_forward(up, pooled[1], top)
    return up, pooled[1], top


@pytest.mark.parametrize(("shape", "upsample"), [
    ((2, 3, 6, 8), "scale: 2"),
    ((1, 2, 7, 6), "upsample_h: 7 upsample_w: 6"),
    ((1, 2, 7, 5), "scale: 2 pad_out_h: true pad_out_w: true"),
])
def test_upsample_undoes_max_pooling_with_its_mask(shape, upsample):
    """pyforge's Pooling mask holds flat h * W + w indices into each plane of its input, the
    convention SegNet's Upsample reads: every maximum goes back to where it came from."""
    x = np.random.default_rng(1).permutation(int(np.prod(shape))).reshape(shape)
    x = (x + 1).astype(np.float32)  # distinct and positive: an unpooled zero is no maximum
    _, (pooled, mask), (y,) = pool_then_upsample(x, "pool: MAX kernel_size: 2 stride: 2",
                                                 upsample)
    assert y.shape == shape
    kept = y.data != 0
    np.testing.assert_array_equal(y.data[kept], x[kept])
    assert kept.sum() == pooled.count  # one maximum per window
    np.testing.assert_array_equal(y.data, ref.upsample_forward(pooled.data, mask.data,
                                                               *shape[2:]))


def test_upsample_backward_gathers_and_gives_the_mask_no_gradient():
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 4)).astype(np.float32)
    up, bottom, top = pool_then_upsample(x, "pool: MAX kernel_size: 2 stride: 2", "scale: 2")
    top[0].diff[...] = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    bottom[1].diff[...] = 9
    up.backward(top, [True, True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, ref.upsample_backward(top[0].diff,
                                                                        bottom[1].data))
    assert not bottom[1].diff.any()


@pytest.mark.parametrize(("params", "mask_shape", "message"), [
    ("scale: 1", (1, 1, 2, 2), r"scale must be > 1"),
    ("upsample_h: 1 upsample_w: 4", (1, 1, 2, 2), "upsample_h and upsample_w must be > 1"),
    ("scale_h: 2", (1, 1, 2, 2), "give upsample_h and upsample_w, or scale, or scale_h and"),
    ("scale: 2 scale_h: 2 scale_w: 2", (1, 1, 2, 2), "scale or scale_h and scale_w, not both"),
    ("scale: 3 pad_out_w: true", (1, 1, 2, 2), "pad_out_w needs scale_w == 2"),
    ("scale: 2", (1, 1, 2, 3), r"bottom 1 \(the pooling mask\) must have bottom 0's shape"),
    ("upsample_h: 3 upsample_w: 3", (1, 1, 2, 2), "holds index 15 in plane 0, outside the 3x3"),
])
def test_upsample_errors(params, mask_shape, message):
    values = np.ones((1, 1, 2, 2), np.float32)
    mask = np.full(mask_shape, 15, np.float32)
    layer = build_layer(f'name: "up" type: "Upsample" bottom: "x" bottom: "mask" top: "y" '
                        f"upsample_param {{ {params} }}")
    with pytest.raises(PyforgeError, match=message):
        setup_forward(layer, [blob_from(values), blob_from(mask)], [Blob()])
