"""Input and DummyData (the data layers that need no files)."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import build_layer, setup_forward


def run(text: str, tops: int):
    layer = build_layer(text)
    top = [Blob() for _ in range(tops)]
    setup_forward(layer, [], top)
    return layer, top


def test_input_one_shape_for_all_tops():
    _, top = run('type: "Input" input_param { shape { dim: 2 dim: 3 } }', 2)
    assert [t.shape for t in top] == [(2, 3), (2, 3)]


def test_input_one_shape_per_top_and_none():
    _, top = run('type: "Input" input_param { shape { dim: 2 } shape { dim: 1 dim: 4 } }', 2)
    assert [t.shape for t in top] == [(2,), (1, 4)]
    _, top = run('type: "Input"', 1)
    assert top[0].shape == ()


def test_input_wrong_number_of_shapes():
    with pytest.raises(PyforgeError):
        run('type: "Input" input_param { shape { dim: 2 } shape { dim: 3 } }', 3)


def test_dummy_data_default_is_constant_zero():
    _, top = run('type: "DummyData" dummy_data_param { shape { dim: 2 dim: 3 } }', 1)
    assert top[0].shape == (2, 3) and (top[0].data == 0).all()


def test_dummy_data_constant_filled_once_others_every_forward():
    text = ('type: "DummyData" dummy_data_param { shape { dim: 3 dim: 4 } '
            'data_filler { type: "constant" value: 7 } data_filler { type: "gaussian" } }')
    layer, top = run(text, 2)
    assert (top[0].data == 7).all()
    top[0].data[...] = 1  # a constant filler never refills
    first = top[1].data.copy()
    layer.forward([], top)
    assert (top[0].data == 1).all()
    assert not np.array_equal(first, top[1].data)


def test_dummy_data_legacy_dims():
    text = ('type: "DummyData" dummy_data_param { num: 2 channels: 3 height: 4 width: 5 '
            "num: 1 channels: 1 height: 1 width: 1 }")
    _, top = run(text, 2)
    assert [t.shape for t in top] == [(2, 3, 4, 5), (1, 1, 1, 1)]


def test_dummy_data_uniform_filler_range():
    text = ('type: "DummyData" dummy_data_param { shape { dim: 1000 } '
            'data_filler { type: "uniform" min: -2 max: -1 } }')
    _, top = run(text, 1)
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
        run(f'type: "DummyData" dummy_data_param {{ {params} }}', 2)
