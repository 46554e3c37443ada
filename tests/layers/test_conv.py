"""The convolution family: Convolution, Deconvolution and Im2col."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import pyforge.layers.conv as conv_module
from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto
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


def layer_of(kind: str, params: str, *xs, fill: str = FILL):
    bots = " ".join(f'bottom: "b{i}"' for i in range(len(xs)))
    tops = " ".join(f'top: "t{i}"' for i in range(len(xs)))
    layer = build_layer(f'name: "l" type: "{kind}" {bots} {tops} '
                        f"convolution_param {{ {params} {fill} }}")
    bottom = [blob_from(x) for x in xs]
    top = [Blob() for _ in xs]
    setup_forward(layer, bottom, top)
    return layer, bottom, top


def deconv(params: str, *xs, fill: str = FILL):
    return layer_of("Deconvolution", params, *xs, fill=fill)


def deconv_reference(x, weight, bias=None, pad=(0, 0), stride=(1, 1), dilation=(1, 1),
                     group=1):
    """Direct scatter: every input pixel adds weight * value into the output window."""
    n_img, channels, height, width = x.shape
    _, out_per_group, kh, kw = weight.shape
    c_per_group = channels // group
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    oh = sh * (height - 1) + dh * (kh - 1) + 1 - 2 * ph
    ow = sw * (width - 1) + dw * (kw - 1) + 1 - 2 * pw
    out = np.zeros((n_img, out_per_group * group, oh, ow))
    for n in range(n_img):
        for c in range(channels):
            g = c // c_per_group
            for y in range(height):
                for xi in range(width):
                    for m in range(out_per_group):
                        for ki in range(kh):
                            for kj in range(kw):
                                oy = y * sh - ph + ki * dh
                                ox = xi * sw - pw + kj * dw
                                if 0 <= oy < oh and 0 <= ox < ow:
                                    out[n, g * out_per_group + m, oy, ox] += (
                                        float(weight[c, m, ki, kj]) * float(x[n, c, y, xi]))
    if bias is not None:
        out += bias[None, :, None, None]
    return out


CONV_PAIRS = [
    # (convolution params, conv input shape); the spatial sizes divide evenly, so that the
    # deconvolution of the convolution's output has the convolution's input size.
    ("kernel_size: 3", (2, 3, 5, 4)),
    ("kernel_size: 3 stride: 2 pad: 1", (2, 2, 5, 7)),
    ("kernel_size: 2 stride: 2 group: 2", (1, 4, 4, 6)),
    ("kernel_size: 3 dilation: 2 pad: 2", (1, 2, 5, 5)),
]


def _pair(conv_params: str, x_shape, num_output: int = 4):
    """A Convolution and a Deconvolution sharing one weight array, neither with a bias."""
    x = rand(*x_shape, seed=1)
    conv, _, ctop = layer_of("Convolution", f"num_output: {num_output} {conv_params} "
                             "bias_term: false", x)
    y = rand(*ctop[0].shape, seed=2)
    dec, _, dtop = layer_of("Deconvolution", f"num_output: {x_shape[1]} {conv_params} "
                            "bias_term: false", y)
    assert dec.blobs[0].shape == conv.blobs[0].shape
    dec.blobs[0].data[...] = conv.blobs[0].data
    dec.forward([blob_from(y)], dtop)
    return conv, dec, x, y, dtop


# --- in a net -------------------------------------------------------------------------------------
FCN = """
name: "fcn"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 7 dim: 7 }
                      shape { dim: 2 dim: 1 dim: 7 dim: 7 } } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
        convolution_param { num_output: 1 kernel_size: 3 stride: 2
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "up" type: "Deconvolution" bottom: "score" top: "up"
        param { lr_mult: 0 }
        convolution_param { num_output: 1 kernel_size: 4 stride: 2 bias_term: false
                            weight_filler { type: "bilinear" } } }
layer { name: "crop" type: "Crop" bottom: "up" bottom: "data" top: "cropped"
        crop_param { axis: 2 offset: 1 } }
layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "cropped" bottom: "label"
        top: "loss" }
"""


F = np.float32


def rand_channel_ops(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F)


FILLERS = 'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 }'


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
        # The direct depthwise stencil: padding, strides and dilation at every border.
        pytest.param("num_output: 4 kernel_size: 3 pad: 1 group: 4", (2, 4, 6, 5), (1, 1),
                     (1, 1), (1, 1), 4, id="depthwise_pad1"),
        pytest.param("num_output: 3 kernel_size: 3 pad: 1 stride: 2 group: 3", (2, 3, 7, 6),
                     (1, 1), (2, 2), (1, 1), 3, id="depthwise_stride2"),
        pytest.param("num_output: 6 kernel_h: 3 kernel_w: 2 pad_h: 2 pad_w: 1 stride_h: 2 "
                     "stride_w: 1 dilation: 2 group: 3", (1, 3, 5, 4), (2, 1), (2, 1), (2, 2), 3,
                     id="depthwise_multiplier2_dilated"),
        pytest.param("num_output: 2 kernel_size: 5 pad: 3 group: 2", (1, 2, 3, 2), (3, 3),
                     (1, 1), (1, 1), 2, id="depthwise_kernel_wider_than_image"),
        # 1x1 with stride 1 and no padding: the image is its own column matrix.
        pytest.param("num_output: 6 kernel_size: 1 group: 2", (2, 4, 3, 5), (0, 0), (1, 1),
                     (1, 1), 2, id="pointwise_group2"),
        pytest.param("num_output: 3 kernel_size: 1 stride: 2", (2, 4, 5, 5), (0, 0), (2, 2),
                     (1, 1), 1, id="1x1_stride2_gemm"),
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


# Convolutions that take the shifted-tap path (conv_forward_shifted / conv_backward_shifted):
# (params, input shape, pad, dilation).
SHIFTED = [
    pytest.param("num_output: 8 kernel_size: 3 pad: 1", (3, 32, 14, 15), (1, 1), (1, 1),
                 id="3x3_pad1_odd_batch"),
    pytest.param("num_output: 5 kernel_h: 3 kernel_w: 2 pad_h: 2 pad_w: 0 dilation: 2",
                 (2, 40, 16, 17), (2, 0), (2, 2), id="3x2_dilated_uneven_pad"),
    pytest.param("num_output: 6 kernel_size: 2", (2, 33, 15, 16), (0, 0), (1, 1),
                 id="2x2_no_pad"),
]


@pytest.mark.parametrize(("params", "shape", "pad", "dilation"), SHIFTED)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("band", [None, 1, 4], ids=["whole_image", "rows_of_1", "rows_of_4"])
def test_shifted_tap_convolution_matches_numpy(params, shape, pad, dilation, bias, band,
                                               monkeypatch):
    """Stride-1 convolutions with 32+ channels over 14x14+ outputs skip im2col
    (conv_forward_shifted); the result is Caffe's convolution all the same, also when the
    image is done a band of output rows at a time (a smaller TILE_BYTES; 4 does not divide
    the 13-16 output rows)."""
    if band is not None:
        outputs = int(params.split("num_output: ")[1].split()[0])
        padded_width = shape[3] + 2 * pad[1]
        monkeypatch.setattr(conv_module, "TILE_BYTES", 4 * outputs * padded_width * band)
    x = rand(*shape)
    layer, _, top = conv(params + ("" if bias else " bias_term: false"), x)
    assert layer.shifted
    b = layer.blobs[1].data if bias else None
    expected = naive.conv_forward(x, layer.blobs[0].data, b, pad, (1, 1), dilation)
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-4, atol=1e-4)
    layer.blobs[0].data[...] *= -2  # new weights are read on every forward
    layer.forward([blob_from(x)], top)
    expected = naive.conv_forward(x, layer.blobs[0].data, b, pad, (1, 1), dilation)
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


# --- Deconvolution --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "shape", "pad", "stride", "dilation", "group"),
    [
        pytest.param("num_output: 3 kernel_size: 3", (2, 2, 3, 4), (0, 0), (1, 1), (1, 1), 1,
                     id="plain"),
        pytest.param("num_output: 2 kernel_size: 4 stride: 2 pad: 1", (2, 3, 3, 3), (1, 1),
                     (2, 2), (1, 1), 1, id="upsample_x2"),
        pytest.param("num_output: 2 kernel_size: 3 dilation: 2", (1, 2, 3, 3), (0, 0), (1, 1),
                     (2, 2), 1, id="dilation"),
        pytest.param("num_output: 4 kernel_size: 2 stride: 2 group: 2", (2, 4, 2, 3), (0, 0),
                     (2, 2), (1, 1), 2, id="group2"),
        pytest.param("num_output: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 stride_h: 2 "
                     "stride_w: 1", (1, 2, 3, 4), (1, 0), (2, 1), (1, 1), 1, id="hw_fields"),
    ],
)
def test_deconvolution_forward_matches_numpy(params, shape, pad, stride, dilation, group):
    x = rand(*shape)
    layer, _, top = deconv(params, x)
    weight, bias = layer.blobs[0].data, layer.blobs[1].data
    expected = deconv_reference(x, weight, bias, pad, stride, dilation, group)
    assert top[0].shape == expected.shape
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("h", "k", "s", "p", "d", "expected"),
    [(3, 3, 1, 0, 1, 5), (4, 4, 2, 1, 1, 8), (5, 3, 2, 1, 1, 9), (3, 3, 1, 0, 2, 7),
     (1, 1, 1, 0, 1, 1), (2, 16, 8, 4, 1, 16)],
)
def test_deconvolution_output_size(h, k, s, p, d, expected):
    """``stride * (in - 1) + dilation * (kernel - 1) + 1 - 2 * pad``."""
    _, _, top = deconv(f"num_output: 1 kernel_size: {k} stride: {s} pad: {p} dilation: {d}",
                       np.zeros((1, 1, h, h), np.float32))
    assert top[0].shape == (1, 1, expected, expected)


def test_deconvolution_param_layout_is_transposed():
    """Weight (C_in, num_output / group, kh, kw), bias (num_output)."""
    layer, _, _ = deconv("num_output: 6 kernel_h: 3 kernel_w: 2 group: 2", rand(1, 4, 2, 2))
    assert [b.shape for b in layer.blobs] == [(4, 3, 3, 2), (6,)]
    layer, _, _ = deconv("num_output: 5 kernel_size: 2 bias_term: false", rand(1, 3, 2, 2))
    assert [b.shape for b in layer.blobs] == [(3, 5, 2, 2)]


@pytest.mark.parametrize(("conv_params", "x_shape"), CONV_PAIRS)
def test_deconvolution_forward_is_convolution_backward_data(conv_params, x_shape):
    conv, _, x, y, dtop = _pair(conv_params, x_shape)
    assert dtop[0].shape == x_shape
    bottom, top = [blob_from(x)], [Blob()]
    conv.reshape(bottom, top)
    conv.forward(bottom, top)
    top[0].diff[...] = y
    conv.backward(top, [True], bottom)
    np.testing.assert_allclose(dtop[0].data, bottom[0].diff, rtol=1e-5, atol=1e-5)
    # The adjoint identity <conv(x), y> = <x, deconv(y)>.
    lhs = float(np.dot(top[0].data.ravel().astype(np.float64), y.ravel()))
    rhs = float(np.dot(x.ravel().astype(np.float64), dtop[0].data.ravel()))
    assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize(("conv_params", "x_shape"), CONV_PAIRS)
def test_deconvolution_backward_data_is_convolution_forward(conv_params, x_shape):
    conv, dec, _, y, dtop = _pair(conv_params, x_shape)
    z = rand(*x_shape, seed=3)
    dbottom = [blob_from(y)]
    dtop[0].diff[...] = z
    dec.param_propagate_down = [False]
    dec.backward(dtop, [True], dbottom)
    expected = naive.conv_forward(z, conv.blobs[0].data, None,
                                  pad=conv.geometry.pad, stride=conv.geometry.stride,
                                  dilation=conv.geometry.dilation,
                                  group=conv.group)
    np.testing.assert_allclose(dbottom[0].diff, expected, rtol=1e-4, atol=1e-4)


def test_deconvolution_weight_gradient_accumulates_and_bias_gradient_sums():
    x = rand(2, 2, 3, 3)
    layer, bottom, top = deconv("num_output: 3 kernel_size: 2 stride: 2", x)
    dy = rand(*top[0].shape, seed=5)
    top[0].diff[...] = dy
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(top, [False], bottom)
    first = [p.diff.copy() for p in layer.blobs]
    np.testing.assert_allclose(first[1], dy.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    # d/dW of sum(dy * deconv(x)): each input pixel's window of dy, summed.
    expected = np.einsum("ncyx,nmyixj->cmij", x.astype(np.float64),
                         dy.reshape(2, 3, 3, 2, 3, 2).astype(np.float64))
    np.testing.assert_allclose(first[0], expected, rtol=1e-4, atol=1e-4)
    layer.backward(top, [False], bottom)
    for p, d in zip(layer.blobs, first):
        np.testing.assert_allclose(p.diff, 2 * d, rtol=1e-5, atol=1e-5)


def test_deconvolution_bilinear_upsampling():
    """The FCN idiom: group = C, bilinear weights, kernel 4 stride 2 pad 1 doubles the size
    and interpolates linearly away from the border."""
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(1, 2, 4, 4)
    layer, _, top = deconv("num_output: 2 group: 2 kernel_size: 4 stride: 2 pad: 1 "
                           "bias_term: false", x, fill='weight_filler { type: "bilinear" }')
    assert top[0].shape == (1, 2, 8, 8)
    y = top[0].data
    # Inside, rows are a linear ramp: equal steps along each axis.
    inner = y[:, :, 1:-1, 1:-1]
    np.testing.assert_allclose(np.diff(inner, axis=3), 0.5, atol=1e-5)
    np.testing.assert_allclose(np.diff(inner, axis=2), 2.0, atol=1e-5)


def test_deconvolution_several_bottoms_share_weights():
    a, b = rand(1, 2, 2, 3, seed=1), rand(1, 2, 2, 3, seed=2)
    layer, _, top = deconv("num_output: 3 kernel_size: 2 stride: 2", a, b)
    w, bias = layer.blobs[0].data, layer.blobs[1].data
    for x, t in zip((a, b), top):
        np.testing.assert_allclose(t.data, deconv_reference(x, w, bias, stride=(2, 2)),
                                   rtol=1e-4, atol=1e-4)


def test_deconvolution_default_fillers_are_zero():
    layer, _, top = deconv("num_output: 2 kernel_size: 2", rand(1, 1, 2, 2), fill="")
    assert all((p.data == 0).all() for p in layer.blobs)
    assert (top[0].data == 0).all()


@pytest.mark.parametrize(
    ("params", "shape", "match"),
    [
        ("kernel_size: 2", (1, 2, 3, 3), "num_output"),
        ("num_output: 3 kernel_size: 2 group: 2", (1, 4, 3, 3), "group"),
        ("num_output: 4 kernel_size: 2 group: 2", (1, 3, 3, 3), "group"),
        ("num_output: 2", (1, 2, 3, 3), "kernel"),
        ("num_output: 2 kernel_size: 2", (2, 3, 3), "4-axis|2-D"),
        ("num_output: 2 kernel_size: 3 pad: 3", (1, 1, 2, 2), "pad"),
        ("num_output: 2 kernel_size: 2 stride_w: 2", (1, 1, 2, 2), "stride"),
    ],
)
def test_deconvolution_errors(params, shape, match):
    with pytest.raises(PyforgeError, match=match):
        deconv(params, np.zeros(shape, np.float32))


def test_deconvolution_bottoms_must_agree():
    with pytest.raises(PyforgeError, match="same shape"):
        deconv("num_output: 2 kernel_size: 2", rand(1, 2, 3, 3), rand(1, 2, 3, 4))


# --- Im2col ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "shape", "geom"),
    [
        ("kernel_size: 3", (2, 2, 4, 5), (3, 3, 0, 0, 1, 1, 1, 1)),
        ("kernel_size: 3 stride: 2 pad: 1", (1, 3, 5, 6), (3, 3, 1, 1, 2, 2, 1, 1)),
        ("kernel_h: 2 kernel_w: 3 pad_h: 1 pad_w: 0 stride_h: 1 stride_w: 2 dilation: 2",
         (2, 1, 5, 7), (2, 3, 1, 0, 1, 2, 2, 2)),
    ],
)
def test_im2col_layer_matches_numpy(params, shape, geom):
    kh, kw, ph, pw, sh, sw, dh, dw = geom
    x = rand(*shape)
    layer, bottom, top = layer_of("Im2col", params, x, fill="")
    n, c = shape[:2]
    oh = naive.conv_out_size(shape[2], kh, ph, sh, dh)
    ow = naive.conv_out_size(shape[3], kw, pw, sw, dw)
    assert top[0].shape == (n, c * kh * kw, oh, ow)
    for i in range(n):
        expected = naive.im2col(x[i], kh, kw, ph, pw, sh, sw, dh, dw)
        np.testing.assert_array_equal(top[0].data[i].reshape(c * kh * kw, -1), expected)
    dy = rand(*top[0].shape, seed=4)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    for i in range(n):
        expected = naive.col2im(dy[i].reshape(c * kh * kw, -1), shape[1:], kh, kw, ph, pw, sh,
                                sw, dh, dw)
        np.testing.assert_allclose(bottom[0].diff[i], expected, rtol=1e-5, atol=1e-5)


def test_im2col_channel_order_is_caffes():
    """Top channel (c*kh + i)*kw + j is input channel c through kernel tap (i, j)."""
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(1, 2, 3, 3)
    _, _, top = layer_of("Im2col", "kernel_size: 2", x, fill="")
    c, i, j = 1, 0, 1
    np.testing.assert_array_equal(top[0].data[0, (c * 2 + i) * 2 + j], x[0, c, i:i + 2, j:j + 2])


def test_im2col_errors():
    with pytest.raises(PyforgeError, match="larger than the input"):
        layer_of("Im2col", "kernel_size: 4", np.zeros((1, 1, 3, 3), np.float32), fill="")
    with pytest.raises(PyforgeError, match="kernel"):
        layer_of("Im2col", "stride: 1", np.zeros((1, 1, 3, 3), np.float32), fill="")


def test_fcn_style_net_runs_forward_and_backward():
    """Convolution, bilinear Deconvolution (frozen), Crop back to the input size and a
    sigmoid cross-entropy against a per-pixel label map."""
    param = parse_text_proto(FCN, caffe_pb2.NetParameter(), "<fcn>")
    param.state.phase = caffe_pb2.TRAIN
    net = Net(param, np.random.default_rng(0), logging.getLogger("test"))
    net.blobs["data"].data[...] = rand(2, 3, 7, 7)
    net.blobs["label"].data[...] = (rand(2, 1, 7, 7, seed=1) > 0).astype(np.float32)
    loss = net.forward_backward()
    assert net.blobs["up"].shape == (2, 1, 8, 8)
    assert net.blobs["cropped"].shape == (2, 1, 7, 7)
    np.testing.assert_array_equal(net.blobs["cropped"].data,
                                  net.blobs["up"].data[:, :, 1:8, 1:8])
    assert np.isfinite(loss) and loss > 0
    conv_w, deconv_w = net.params["score"][0], net.params["up"][0]
    assert np.abs(conv_w.diff).sum() > 0
    assert (deconv_w.diff == 0).all()  # lr_mult 0: no gradient accumulated
    assert np.abs(net.blobs["score"].diff).sum() > 0  # through Crop and Deconvolution


@pytest.mark.parametrize("type_name", ["Convolution", "Deconvolution", "Im2col"])
@pytest.mark.parametrize(("params", "match"), [
    ("kernel_size: 3 dilation: 0", r"dilation must be positive, found \(0, 0\)"),
    ("kernel_size: 3 dilation: 1 dilation: 0", r"dilation must be positive, found \(1, 0\)"),
    ("kernel_size: 3 stride: 0", r"stride must be positive, found \(0, 0\)"),
    ("kernel_h: 3", r"kernel must be positive, found \(3, 0\)"),
    ("kernel_size: 3 kernel_h: 3 kernel_w: 3", "either kernel_size or kernel_h/kernel_w"),
    ("kernel_size: 3 pad: 1 pad: 1 pad: 1", "pad must have 1 or 2 values"),
])
def test_the_family_checks_its_geometry_alike(type_name, params, match):
    """Convolution, Deconvolution and Im2col read convolution_param with one set of checks."""
    layer = build_layer(f'type: "{type_name}" convolution_param {{ num_output: 2 {params} }}')
    with pytest.raises(PyforgeError, match=match):
        layer.setup([blob_from(np.zeros((1, 2, 5, 5)))], [Blob()])


@pytest.mark.parametrize("params", ["num_output: 4 kernel_size: 3 pad: 1 stride: 2 group: 4",
                                    "num_output: 6 kernel_size: 1 group: 2"])
def test_depthwise_and_pointwise_gradients_are_the_same_bits_for_any_thread_count(params):
    """Depthwise planes and images are summed in a fixed order; pointwise goes through the
    same per-thread GEMM path as every convolution (bitwise reproducible per thread count)."""
    import numba

    x, dy = rand(3, 4, 6, 5), None
    results = []
    for threads in (1, 2):
        previous = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            layer, bottom, top = conv(params, x)
            if dy is None:
                dy = rand(*top[0].shape, seed=5)
            top[0].diff[...] = dy
            layer.backward(top, [True], bottom)
            results.append([top[0].data.copy(), bottom[0].diff.copy(),
                            *(b.diff.copy() for b in layer.blobs)])
        finally:
            numba.set_num_threads(previous)
    if "group: 4" in params:  # the depthwise stencil
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)
    else:
        for a, b in zip(*results):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_depthwise_is_convolution_with_one_group_per_channel(caplog):
    x = rand_channel_ops(2, 4, 7, 6)
    conv = 'kernel_size: 3 pad: 1 stride: 2 dilation: 1'
    depthwise = build_layer(f'name: "dw" type: "ConvolutionDepthwise" bottom: "x" top: "y" '
                            f"convolution_param {{ num_output: 8 {conv} {FILLERS} }}")
    bottom, top = [blob_from(x)], [Blob()]
    with caplog.at_level(logging.WARNING):
        setup_forward(depthwise, bottom, top)
    assert "num_output 8 ignored" in caplog.text
    assert [b.shape for b in depthwise.blobs] == [(4, 1, 3, 3), (4,)]
    assert top[0].shape == (2, 4, 4, 3)
    # The prototxt's own parameter is left as written (what a snapshot stores).
    assert depthwise.param.convolution_param.num_output == 8
    assert not depthwise.param.convolution_param.HasField("group")
    grouped = build_layer(f'type: "Convolution" bottom: "x" top: "y" convolution_param {{ '
                          f"num_output: 4 group: 4 {conv} }}")
    reference = [Blob()]
    grouped.setup([blob_from(x)], reference)
    for mine, theirs in zip(depthwise.blobs, grouped.blobs):
        theirs.data[...] = mine.data
    grouped.forward([blob_from(x)], reference)
    np.testing.assert_allclose(top[0].data, reference[0].data, rtol=1e-5, atol=1e-5)
    # Channel 1 only sees input channel 1 through its own 3x3 filter.
    w, b = depthwise.blobs[0].data[1, 0], depthwise.blobs[1].data[1]
    padded = np.pad(x[0, 1], 1)
    assert np.isclose(top[0].data[0, 1, 1, 1], (padded[2:5, 2:5] * w).sum() + b, rtol=1e-5)


def test_depthwise_needs_an_image_bottom():
    layer = build_layer('type: "ConvolutionDepthwise" bottom: "x" top: "y" '
                        "convolution_param { kernel_size: 3 }")
    with pytest.raises(PyforgeError, match=r"must be \(N, C, H, W\)"):
        setup_forward(layer, [blob_from(np.zeros((2, 3, 4), F))], [Blob()])


@pytest.mark.parametrize(("params", "shape", "pad", "dilation"), SHIFTED)
@pytest.mark.parametrize("bias", [True, False])
def test_shifted_tap_convolution_backward_matches_numpy(params, shape, pad, dilation, bias):
    """The backward of the shifted-tap convolutions (no im2col/col2im): weight, bias and
    data gradients as Caffe's, accumulated onto the existing parameter gradients."""
    x = rand(*shape)
    layer, bottom, top = conv(params + ("" if bias else " bias_term: false"), x)
    assert layer.shifted
    dy = rand(*top[0].shape, seed=3)
    top[0].diff[...] = dy
    bottom[0].diff[...] = np.nan  # must be overwritten
    for blob in layer.blobs:
        blob.diff[...] = 1.0  # Caffe adds to what is there
    layer.backward(top, [True], bottom)
    d_weight, d_bias, d_x = naive.conv_backward(x, layer.blobs[0].data, dy, pad, (1, 1),
                                                dilation)
    np.testing.assert_allclose(layer.blobs[0].diff, d_weight + 1.0, rtol=1e-4, atol=1e-3)
    if bias:
        np.testing.assert_allclose(layer.blobs[1].diff, d_bias + 1.0, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(bottom[0].diff, d_x, rtol=1e-4, atol=1e-3)
