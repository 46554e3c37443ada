"""MemoryData: arrays fed from Python (pycaffe's set_input_arrays), used cyclically."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.io.util import make_layer

LAYER = """name: "mem" type: "MemoryData" top: "data" top: "label"
    memory_data_param {{ batch_size: {b} channels: 2 height: 3 width: 1 }} {extra}"""


def memory_layer(batch=2, extra=""):
    layer = make_layer(LAYER.format(b=batch, extra=extra))
    tops = [Blob(), Blob()]
    layer.setup([], tops)
    return layer, tops


def arrays(n):
    data = np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3, 1)
    return data, np.arange(n, dtype=np.float32) + 100


def test_shapes_and_cyclic_batches():
    layer, tops = memory_layer()
    assert [t.shape for t in tops] == [(2, 2, 3, 1), (2,)]
    data, labels = arrays(4)
    layer.reset(data, labels)
    seen = []
    for _ in range(3):
        layer.forward([], tops)
        seen.append((tops[0].data.copy(), tops[1].data.copy()))
    for k, idx in enumerate([[0, 1], [2, 3], [0, 1]]):
        np.testing.assert_array_equal(seen[k][0], data[idx])
        np.testing.assert_array_equal(seen[k][1], labels[idx])


def test_reset_restarts_and_accepts_4d_labels():
    layer, tops = memory_layer()
    data, labels = arrays(4)
    layer.reset(data, labels)
    layer.forward([], tops)
    layer.set_input_arrays(data[2:].copy(), labels[2:].reshape(2, 1, 1, 1).copy())
    layer.forward([], tops)
    np.testing.assert_array_equal(tops[0].data, data[2:])
    np.testing.assert_array_equal(tops[1].data, labels[2:])


def test_state_is_the_position():
    layer, tops = memory_layer()
    data, labels = arrays(6)
    layer.reset(data, labels)
    layer.forward([], tops)
    state = layer.get_state()
    assert state == {"pos": 2}
    other, other_tops = memory_layer()
    other.reset(data, labels)
    other.set_state(state)
    other.forward([], other_tops)
    np.testing.assert_array_equal(other_tops[0].data, data[2:4])


def test_forward_without_data_is_caffes_error():
    layer, tops = memory_layer()
    with pytest.raises(PyforgeError, match=r"layer 'mem' \(MemoryData\): has no data: call "
                                           r"reset\(data, labels\)"):
        layer.forward([], tops)


@pytest.mark.parametrize("make,message", [
    (lambda d, y: (d[:3], y[:3]), "must be a positive multiple of batch_size 2"),
    (lambda d, y: (d, y[:2]), "same first dimension, found 4 and 2"),
    (lambda d, y: (d.astype(np.float64), y), "data must be float32, found float64"),
    (lambda d, y: (d, y.astype(np.int64)), "labels must be float32"),
    (lambda d, y: (np.asfortranarray(d.reshape(4, 6)).reshape(4, 2, 3, 1, order="F"), y),
     "data must be C contiguous"),
    (lambda d, y: (d.reshape(4, 3, 2, 1), y), r"shape \(N, 2, 3, 1\)"),
    (lambda d, y: (d, np.zeros((4, 2), np.float32)), r"labels must have shape \(N,\)"),
    (lambda d, y: (d.tolist(), y), "data must be a NumPy array"),
])
def test_bad_arrays_are_clear_errors(make, message):
    layer, _ = memory_layer()
    with pytest.raises(PyforgeError, match=message):
        layer.reset(*make(*arrays(4)))


def test_bad_param():
    with pytest.raises(PyforgeError, match="must be specified and positive"):
        make_layer('name: "m" type: "MemoryData" top: "a" top: "b" '
                   "memory_data_param { batch_size: 2 channels: 1 }").setup([], [Blob(), Blob()])
