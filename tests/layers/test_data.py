"""Input, DummyData and Parameter (the data layers that need no files)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto
from tests.gradient_check import build_layer, setup_forward
from tests.layers.util import rand, run

NET = """
name: "p"
layer { name: "p" type: "Parameter" top: "w" parameter_param { shape { dim: 2 dim: 3 } } }
layer { name: "in" type: "DummyData" top: "x" dummy_data_param { shape { dim: 2 dim: 3 }
        data_filler { type: "constant" value: 2 } } }
layer { name: "prod" type: "Eltwise" bottom: "w" bottom: "x" top: "y"
        eltwise_param { operation: PROD } }
layer { name: "r" type: "Reduction" bottom: "y" top: "loss" loss_weight: 1 }
"""


def run_source(text: str, tops: int):
    layer = build_layer(text)
    top = [Blob() for _ in range(tops)]
    setup_forward(layer, [], top)
    return layer, top


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


def test_parameter_learns_in_a_net():
    param = parse_text_proto(NET, caffe_pb2.NetParameter(), "<net>")
    param.state.phase = caffe_pb2.TRAIN
    net = Net(param, np.random.default_rng(0), logging.getLogger("test"))
    w = net.params["p"][0]
    w.data[...] = np.arange(6).reshape(2, 3)
    loss = net.forward_backward()
    assert loss == pytest.approx(2 * 15)
    np.testing.assert_allclose(w.diff, 2.0)  # d(sum 2w)/dw


def test_input_one_shape_for_all_tops():
    _, top = run_source('type: "Input" input_param { shape { dim: 2 dim: 3 } }', 2)
    assert [t.shape for t in top] == [(2, 3), (2, 3)]


def test_input_one_shape_per_top_and_none():
    _, top = run_source('type: "Input" input_param { shape { dim: 2 } shape { dim: 1 dim: 4 } }',
                        2)
    assert [t.shape for t in top] == [(2,), (1, 4)]
    _, top = run_source('type: "Input"', 1)
    assert top[0].shape == ()


def test_input_wrong_number_of_shapes():
    with pytest.raises(PyforgeError):
        run_source('type: "Input" input_param { shape { dim: 2 } shape { dim: 3 } }', 3)


def test_dummy_data_default_is_constant_zero():
    _, top = run_source('type: "DummyData" dummy_data_param { shape { dim: 2 dim: 3 } }', 1)
    assert top[0].shape == (2, 3) and (top[0].data == 0).all()


def test_dummy_data_constant_filled_once_others_every_forward():
    text = ('type: "DummyData" dummy_data_param { shape { dim: 3 dim: 4 } '
            'data_filler { type: "constant" value: 7 } data_filler { type: "gaussian" } }')
    layer, top = run_source(text, 2)
    assert (top[0].data == 7).all()
    top[0].data[...] = 1  # a constant filler never refills
    first = top[1].data.copy()
    layer.forward([], top)
    assert (top[0].data == 1).all()
    assert not np.array_equal(first, top[1].data)


def test_dummy_data_legacy_dims():
    text = ('type: "DummyData" dummy_data_param { num: 2 channels: 3 height: 4 width: 5 '
            "num: 1 channels: 1 height: 1 width: 1 }")
    _, top = run_source(text, 2)
    assert [t.shape for t in top] == [(2, 3, 4, 5), (1, 1, 1, 1)]


def test_dummy_data_uniform_filler_range():
    text = ('type: "DummyData" dummy_data_param { shape { dim: 1000 } '
            'data_filler { type: "uniform" min: -2 max: -1 } }')
    _, top = run_source(text, 1)
    assert top[0].data.min() >= -2 and top[0].data.max() <= -1


@pytest.mark.parametrize(
    "params",
    [
        "shape { dim: 1 } shape { dim: 2 } shape { dim: 3 }",  # 3 shapes for 2 tops
        "shape { dim: 1 } num: 1 channels: 1 height: 1 width: 1",  # both kinds
        'shape { dim: 1 } data_filler { } data_filler { } data_filler { }',
    ],
)
def test_dummy_data_errors(params):
    with pytest.raises(PyforgeError):
        run_source(f'type: "DummyData" dummy_data_param {{ {params} }}', 2)
