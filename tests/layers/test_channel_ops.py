"""ShuffleChannel, Axpy and ConvolutionDepthwise: values against the forks' definitions,
the depthwise convolution as Convolution with one group per channel, and the errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import blob_from, build_layer, setup_forward
from tests.reference import forks as ref

F = np.float32


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F)


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


AXPY = 'type: "Axpy" bottom: "s" bottom: "x" bottom: "y" top: "out"'


@pytest.mark.parametrize("scale_shape", [(2, 3, 1, 1), (2, 3)])
def test_axpy_is_scale_times_x_plus_y(scale_shape):
    scale, x, y = rand(*scale_shape, seed=1), rand(2, 3, 4, 5, seed=2), rand(2, 3, 4, 5, seed=3)
    layer = build_layer(AXPY)
    bottom, top = [blob_from(scale), blob_from(x), blob_from(y)], [Blob()]
    setup_forward(layer, bottom, top)
    np.testing.assert_allclose(top[0].data, ref.axpy(scale, x, y), rtol=1e-6, atol=1e-6)
    top[0].diff[...] = rand(2, 3, 4, 5, seed=4)
    layer.backward(top, [True, True, True], bottom)
    np.testing.assert_allclose(bottom[0].diff.reshape(2, 3),
                               (top[0].diff * x).sum(axis=(2, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bottom[1].diff, top[0].diff * scale.reshape(2, 3, 1, 1),
                               rtol=1e-6)
    np.testing.assert_array_equal(bottom[2].diff, top[0].diff)


@pytest.mark.parametrize(("shapes", "top", "message"), [
    (((2, 3, 2, 1), (2, 3, 4, 4), (2, 3, 4, 4)), "out", r"must be \(N, C, 1, 1\)"),
    (((2, 4), (2, 3, 4, 4), (2, 3, 4, 4)), "out", r"bottom 0 \(the scale\) must be \(N, C\)"),
    (((2, 3), (2, 3, 4, 4), (2, 3, 4, 5)), "out", "x and y.* must have one shape"),
    (((2, 3), (2, 3, 4, 4), (2, 3, 4, 4)), "x", "cannot run in place on bottom 1"),
])
def test_axpy_errors(shapes, top, message):
    layer = build_layer(AXPY.replace('top: "out"', f'top: "{top}"'))
    bottom = [blob_from(np.zeros(shape, F)) for shape in shapes]
    tops = [bottom[1]] if top == "x" else [Blob()]
    with pytest.raises(PyforgeError, match=message):
        setup_forward(layer, bottom, tops)


FILLERS = 'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 }'


def test_depthwise_is_convolution_with_one_group_per_channel(caplog):
    x = rand(2, 4, 7, 6)
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
