"""Interp, ShuffleChannel, ConvolutionDepthwise and Axpy against OpenCV 4's dnn, in small
nets with seeded random weights written as a .caffemodel by pyforge; and where OpenCV departs
from the forks (Interp's crop and shrink_factor, Axpy's operand order), what pyforge does
(the fork's) and what OpenCV does instead."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.proto import write_binary_proto
from tests.forks.opencv_compare import (
    Result,
    assert_close,
    build_pyforge_net,
    cv2,
    opencv_net,
    run_both,
)

F = np.float32


def input_layer(name: str, shape) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'layer {{ name: "{name}" type: "Input" top: "{name}" '
            f"input_param {{ shape {{ {dims} }} }} }}\n")


def conv_interp_net(interp: str) -> str:
    return (input_layer("data", (2, 3, 7, 9))
            + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
              "convolution_param { num_output: 4 kernel_size: 3 } }\n"
            + f'layer {{ name: "interp" type: "Interp" bottom: "conv" top: "interp" '
              f"interp_param {{ {interp} }} }}\n")


@pytest.mark.parametrize("interp", ["zoom_factor: 2", "zoom_factor: 8", "height: 11 width: 4",
                                    "height: 1 width: 1"])
def test_interp_matches_opencv(tmp_path, interp):
    data = np.random.default_rng(1).standard_normal((2, 3, 7, 9)).astype(F)
    results = run_both(tmp_path, conv_interp_net(interp), {"data": data}, ["conv", "interp"],
                       seed=1)
    assert_close(results)
    assert results[1].scale > 0


def test_opencv_ignores_interps_crop_and_zooms_the_whole_input(tmp_path):
    """The fork crops pad_beg/pad_end pixels (both axes by pad_beg first) before resizing;
    OpenCV's Interp reads neither field. pyforge's result is OpenCV's on the cropped input."""
    data = np.random.default_rng(2).standard_normal((2, 3, 7, 9)).astype(F)
    _, ours = run_both(tmp_path, conv_interp_net("zoom_factor: 2 pad_beg: -1 pad_end: -1"),
                       {"data": data}, ["conv", "interp"], seed=2)
    # conv is 5x7; cropped to 3x5, zoomed to 5x9. OpenCV zooms all of 5x7 to 9x13.
    assert ours.ours.shape == (2, 4, 5, 9) and ours.theirs.shape == (2, 4, 9, 13)
    cropped = tmp_path / "cropped"
    cropped.mkdir()
    crop_net = (input_layer("data", (2, 4, 3, 5))
                + 'layer { name: "interp" type: "Interp" bottom: "data" top: "interp" '
                  "interp_param { zoom_factor: 2 } }\n")
    conv = run_both(tmp_path, conv_interp_net("zoom_factor: 2"), {"data": data}, ["conv"],
                    seed=2)[0].ours
    (on_crop,) = run_both(cropped, crop_net, {"data": conv[:, :, 1:4, 1:6]}, ["interp"])
    assert_close([Result("interp of the crop", ours.ours, on_crop.theirs)])


def test_opencv_cannot_shrink(tmp_path):
    """shrink_factor (the fork: ``(in - 1) / s + 1``) is not read by OpenCV, whose Interp then
    has no output size and refuses the net; pyforge follows the fork."""
    data = np.random.default_rng(3).standard_normal((2, 3, 7, 9)).astype(F)
    text = conv_interp_net("shrink_factor: 2")
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    net = build_pyforge_net(text, path, seed=3)
    net.blobs["data"].data[...] = data
    net.forward_from_to()
    assert net.blobs["interp"].shape == (2, 4, 3, 4)
    conv = net.blobs["conv"].data
    np.testing.assert_array_equal(net.blobs["interp"].data, conv[:, :, ::2, ::2])
    write_binary_proto(tmp_path / "net.caffemodel", net.to_proto())
    theirs = opencv_net(path, tmp_path / "net.caffemodel")
    theirs.setInput(data, "data")
    with pytest.raises(cv2.error):
        theirs.forward("interp")


SHUFFLENET_UNIT = (
    input_layer("data", (2, 8, 9, 9))
    + 'layer { name: "gconv1" type: "Convolution" bottom: "data" top: "gconv1" '
      "convolution_param { num_output: 12 kernel_size: 1 group: 2 } }\n"
    + 'layer { name: "relu1" type: "ReLU" bottom: "gconv1" top: "relu1" }\n'
    + 'layer { name: "shuffle" type: "ShuffleChannel" bottom: "relu1" top: "shuffle" '
      "shuffle_channel_param { group: 2 } }\n"
    + 'layer { name: "dwconv" type: "ConvolutionDepthwise" bottom: "shuffle" top: "dwconv" '
      "convolution_param { num_output: 12 kernel_size: 3 pad: 1 stride: 2 } }\n"
    + 'layer { name: "dwconv_nobias" type: "ConvolutionDepthwise" bottom: "dwconv" '
      'top: "dwconv_nobias" convolution_param { num_output: 12 kernel_size: 3 pad: 2 '
      "dilation: 2 bias_term: false } }\n"
    + 'layer { name: "shuffle3" type: "ShuffleChannel" bottom: "dwconv_nobias" '
      'top: "shuffle3" shuffle_channel_param { group: 3 } }\n'
)


def test_shuffle_channel_and_depthwise_convolution_match_opencv(tmp_path):
    data = np.random.default_rng(4).standard_normal((2, 8, 9, 9)).astype(F)
    results = run_both(tmp_path, SHUFFLENET_UNIT, {"data": data},
                       ["gconv1", "shuffle", "dwconv", "dwconv_nobias", "shuffle3"], seed=4)
    assert_close(results)
    assert results[2].ours.shape == (2, 12, 5, 5)


def se_block(order: str) -> str:
    """SENet's SE block on a residual unit, closed by Axpy (bottoms in ``order``)."""
    return (input_layer("data", (1, 6, 5, 5))
            + 'layer { name: "res" type: "Convolution" bottom: "data" top: "res" '
              "convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }\n"
            + 'layer { name: "gap" type: "Pooling" bottom: "res" top: "gap" '
              "pooling_param { pool: AVE global_pooling: true } }\n"
            + 'layer { name: "down" type: "Convolution" bottom: "gap" top: "down" '
              "convolution_param { num_output: 3 kernel_size: 1 } }\n"
            + 'layer { name: "down_relu" type: "ReLU" bottom: "down" top: "down_relu" }\n'
            + 'layer { name: "up" type: "Convolution" bottom: "down_relu" top: "up" '
              "convolution_param { num_output: 6 kernel_size: 1 } }\n"
            + 'layer { name: "prob" type: "Sigmoid" bottom: "up" top: "prob" }\n'
            + f'layer {{ name: "axpy" type: "Axpy" {order} top: "axpy" }}\n')


FORK_ORDER = 'bottom: "prob" bottom: "res" bottom: "data"'
SWAPPED_ORDER = 'bottom: "prob" bottom: "data" bottom: "res"'


def test_axpy_se_block_matches_opencv_with_x_and_y_swapped(tmp_path):
    """SENet's Axpy is ``scale * bottom[1] + bottom[2]`` (the fork copies bottom[2] into the
    top, then adds scale * bottom[1]). OpenCV's importer builds it as Scale(bottom[2]) +
    bottom[1], i.e. it scales the other operand. pyforge follows the fork, so its block
    equals OpenCV's with the two operands swapped, and differs from OpenCV's as written."""
    data = np.random.default_rng(5).standard_normal((1, 6, 5, 5)).astype(F)
    ours = run_both(tmp_path, se_block(FORK_ORDER), {"data": data}, ["res", "prob", "axpy"],
                    seed=5)
    assert_close(ours[:2])
    res, prob = ours[0].ours, ours[1].ours
    np.testing.assert_allclose(ours[2].ours, prob * res + data, rtol=1e-5, atol=1e-5)
    assert not ours[2].ok  # OpenCV computed prob * data + res
    np.testing.assert_allclose(ours[2].theirs, prob * data + res, rtol=1e-4, atol=1e-4)
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    theirs = run_both(swapped, se_block(SWAPPED_ORDER), {"data": data}, ["axpy"], seed=5)[0]
    assert_close([Result("axpy (OpenCV given the swapped order)", ours[2].ours,
                         theirs.theirs)])
