"""Convolution and InnerProduct: forward values against NumPy, shapes, params, errors."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import blob_from, build_layer, setup_forward
from tests.reference import naive

FILL = 'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 }'


def conv(params: str, *xs, fill: str = FILL):
    bots = " ".join(f'bottom: "b{i}"' for i in range(len(xs)))
    tops = " ".join(f'top: "t{i}"' for i in range(len(xs)))
    layer = build_layer(f'name: "c" type: "Convolution" {bots} {tops} '
                        f"convolution_param {{ {params} {fill} }}")
    bottom = [blob_from(x) for x in xs]
    top = [Blob() for _ in xs]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def ip(params: str, x, fill: str = FILL):
    layer = build_layer(f'name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
                        f"inner_product_param {{ {params} {fill} }}")
    bottom, top = [blob_from(x)], [Blob()]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- Convolution ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "shape", "pad", "stride", "dilation", "group"),
    [
        pytest.param("num_output: 4 kernel_size: 3", (2, 3, 6, 5), (0, 0), (1, 1), (1, 1), 1,
                     id="plain"),
        pytest.param("num_output: 4 kernel_size: 3 pad: 1 stride: 2", (2, 3, 7, 6), (1, 1),
                     (2, 2), (1, 1), 1, id="pad_stride"),
        pytest.param("num_output: 2 kernel_size: 3 dilation: 2", (1, 2, 7, 7), (0, 0), (1, 1),
                     (2, 2), 1, id="dilation"),
        pytest.param("num_output: 6 kernel_size: 3 pad: 1 group: 2", (2, 4, 5, 5), (1, 1),
                     (1, 1), (1, 1), 2, id="group2"),
        pytest.param("num_output: 6 kernel_size: 2 group: 3", (2, 3, 4, 4), (0, 0), (1, 1),
                     (1, 1), 3, id="depthwise_multiplier2"),
        pytest.param("num_output: 3 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 1 "
                     "stride_w: 2", (1, 2, 5, 6), (1, 0), (1, 2), (1, 1), 1, id="hw_fields"),
        pytest.param("num_output: 2 kernel_size: 3 kernel_size: 2 pad: 1 pad: 0 stride: 2 "
                     "stride: 1", (1, 2, 6, 5), (1, 0), (2, 1), (1, 1), 1, id="repeated_pairs"),
        pytest.param("num_output: 2 kernel_size: 2 dilation: 2 dilation: 1", (1, 1, 5, 5),
                     (0, 0), (1, 1), (2, 1), 1, id="dilation_pair"),
    ],
)
def test_convolution_forward_matches_numpy(params, shape, pad, stride, dilation, group):
    x = rand(*shape)
    layer, _, top = conv(params, x)
    weight, bias = layer.blobs[0].data, layer.blobs[1].data
    assert weight.shape[1] == shape[1] // group
    expected = naive.conv_forward(x, weight, bias, pad, stride, dilation, group)
    assert top[0].shape == expected.shape
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-4, atol=1e-4)


def test_convolution_param_shapes_and_no_bias():
    layer, _, top = conv("num_output: 6 kernel_size: 3 group: 2", rand(1, 4, 5, 5))
    assert [b.shape for b in layer.blobs] == [(6, 2, 3, 3), (6,)]
    layer, _, top = conv("num_output: 3 kernel_size: 2 bias_term: false", rand(1, 2, 3, 3))
    assert [b.shape for b in layer.blobs] == [(3, 2, 2, 2)]
    expected = naive.conv_forward(rand(1, 2, 3, 3), layer.blobs[0].data)
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-4, atol=1e-5)


def test_convolution_default_fillers_are_zero():
    layer, _, top = conv("num_output: 2 kernel_size: 1", rand(1, 2, 2, 2), fill="")
    assert all((b.data == 0).all() for b in layer.blobs)
    assert (top[0].data == 0).all()


def test_convolution_several_bottoms_share_the_weights():
    a, b = rand(2, 2, 4, 4, seed=1), rand(2, 2, 4, 4, seed=2)
    layer, _, top = conv("num_output: 3 kernel_size: 3 pad: 1", a, b)
    w, bias = layer.blobs[0].data, layer.blobs[1].data
    np.testing.assert_allclose(top[0].data, naive.conv_forward(a, w, bias, (1, 1)), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(top[1].data, naive.conv_forward(b, w, bias, (1, 1)), rtol=1e-4,
                               atol=1e-4)


def test_convolution_param_diff_accumulates_over_bottoms():
    a = rand(1, 1, 3, 3, seed=3)
    layer, bottom, top = conv("num_output: 1 kernel_size: 3", a, a)
    single, sb, st = conv("num_output: 1 kernel_size: 3", a)
    single.blobs[0].data[...] = layer.blobs[0].data
    for t in top + st:
        t.diff[...] = 1
    for p in layer.blobs + single.blobs:
        p.diff[...] = 0
    layer.backward(top, [True, True], bottom)
    single.backward(st, [True], sb)
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * single.blobs[0].diff, rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[1].diff, [2.0], rtol=1e-6)


def test_convolution_output_size_is_floor():
    _, _, top = conv("num_output: 1 kernel_size: 3 stride: 2", rand(1, 1, 6, 6))
    assert top[0].shape == (1, 1, 2, 2)  # (6-3)/2+1 = 2 (pooling would give 3)


def test_convolution_reshape_to_a_new_input():
    layer, bottom, top = conv("num_output: 2 kernel_size: 3", rand(1, 1, 5, 5))
    bottom[0].reshape((3, 1, 7, 6))
    bottom[0].data[...] = rand(3, 1, 7, 6)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    expected = naive.conv_forward(bottom[0].data, layer.blobs[0].data, layer.blobs[1].data)
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("params", "shape", "match"),
    [
        ("num_output: 3 kernel_size: 3 group: 2", (1, 4, 5, 5), "group"),
        ("num_output: 4 kernel_size: 3 group: 3", (1, 3, 5, 5), "group"),
        ("kernel_size: 3", (1, 1, 5, 5), "num_output"),
        ("num_output: 1", (1, 1, 5, 5), "kernel"),
        ("num_output: 1 kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 1, 5, 5), "kernel"),
        ("num_output: 1 kernel_size: 3 pad: 1 pad_h: 1 pad_w: 1", (1, 1, 5, 5), "pad"),
        ("num_output: 1 kernel_size: 3 stride: 0", (1, 1, 5, 5), "stride"),
        ("num_output: 1 kernel_size: 3 kernel_size: 3 kernel_size: 3", (1, 1, 5, 5), "kernel"),
    ],
)
def test_convolution_setup_errors(params, shape, match):
    with pytest.raises(PyforgeError, match=f"(?i){match}"):
        conv(params, np.zeros(shape, np.float32))


def test_convolution_pad_h_alone_means_pad_w_zero():
    """Caffe's BaseConvolutionLayer reads pad_h and pad_w when either is set (the other keeps
    its default 0), unlike Pooling, which requires both."""
    x = rand(1, 1, 5, 5)
    layer, _, top = conv("num_output: 1 kernel_size: 3 pad_h: 1", x)
    assert top[0].shape == (1, 1, 5, 3)
    expected = naive.conv_forward(x, layer.blobs[0].data, layer.blobs[1].data, (1, 0))
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-4, atol=1e-4)


# --- InnerProduct ---------------------------------------------------------------------------------
def test_inner_product_forward_and_shapes():
    x = rand(2, 3, 2, 2)
    layer, _, top = ip("num_output: 5", x)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert w.shape == (5, 12) and b.shape == (5,)
    assert top[0].shape == (2, 5)
    np.testing.assert_allclose(top[0].data, x.reshape(2, 12) @ w.T + b, rtol=1e-5, atol=1e-5)


def test_inner_product_transpose_stores_k_by_n():
    x = rand(3, 4)
    layer, _, top = ip("num_output: 2 transpose: true", x)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    assert w.shape == (4, 2)
    np.testing.assert_allclose(top[0].data, x @ w + b, rtol=1e-5, atol=1e-5)


def test_inner_product_transpose_backward():
    x = rand(3, 4)
    layer, bottom, top = ip("num_output: 2 transpose: true", x)
    dy = rand(3, 2, seed=7)
    top[0].diff[...] = dy
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(top, [True], bottom)
    w = layer.blobs[0].data
    np.testing.assert_allclose(layer.blobs[0].diff, x.T @ dy, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.blobs[1].diff, dy.sum(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bottom[0].diff, dy @ w.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("axis", "shape", "top_shape", "k"),
    [(1, (2, 3, 4), (2, 5), 12), (2, (2, 3, 4), (2, 3, 5), 4), (-1, (2, 3, 4), (2, 3, 5), 4),
     (0, (2, 3), (5,), 6), (-2, (2, 3, 4), (2, 5), 12)],
)
def test_inner_product_axis(axis, shape, top_shape, k):
    x = rand(*shape)
    layer, _, top = ip(f"num_output: 5 axis: {axis}", x)
    assert layer.blobs[0].shape == (5, k)
    assert top[0].shape == top_shape
    m = int(np.prod(top_shape[:-1]))
    expected = x.reshape(m, k) @ layer.blobs[0].data.T + layer.blobs[1].data
    np.testing.assert_allclose(top[0].data.reshape(m, 5), expected, rtol=1e-5, atol=1e-5)


def test_inner_product_no_bias():
    x = rand(2, 3)
    layer, _, top = ip("num_output: 2 bias_term: false", x)
    assert len(layer.blobs) == 1
    np.testing.assert_allclose(top[0].data, x @ layer.blobs[0].data.T, rtol=1e-5, atol=1e-6)


def test_inner_product_errors():
    with pytest.raises(PyforgeError, match="num_output"):
        ip("", rand(2, 3))
    layer, bottom, top = ip("num_output: 2", rand(2, 3))
    bottom[0].reshape((2, 4))
    with pytest.raises(PyforgeError, match="(?i)incompatible"):
        layer.reshape(bottom, top)


def test_inner_product_batch_size_may_change():
    layer, bottom, top = ip("num_output: 2", rand(2, 3))
    bottom[0].reshape((5, 3))
    bottom[0].data[...] = rand(5, 3, seed=9)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    expected = bottom[0].data @ layer.blobs[0].data.T + layer.blobs[1].data
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-5, atol=1e-5)
