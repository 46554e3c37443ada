"""The model-zoo nets build as in Caffe: for each prototxt of ``caffe_reference/shapes`` (LeNet,
CIFAR-10 quick and full, AlexNet, CaffeNet, GoogLeNet), ``pyforge time --model=X
--iterations=1`` prints Caffe's net-construction lines one for one, the nets hold Caffe's
number of learnable parameters, and forward and backward run through every layer."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pyforge import api
from pyforge.proto import caffe_pb2, parse_text_proto
from tests.logcapture import capture_log

SHAPES = Path(__file__).parents[1] / "data" / "caffe_reference" / "shapes"
NET_LINE = re.compile(r"^.*net\.cpp:\d+\] (.*)$")
CONSTRUCTION = ("Creating Layer", "Setting up", "Top shape:", "    with loss weight",
                "Memory required for data", "This network produces output",
                "Network initialization done.")

#: Learnable parameter counts (weights + biases) of the published models, as Caffe builds them.
PUBLISHED = {
    "examples_mnist_lenet": 431_080,
    "examples_cifar10_cifar10_quick": 145_578,
    "examples_cifar10_cifar10_full": 89_578,
    "models_bvlc_alexnet_deploy": 60_965_224,
    "models_bvlc_reference_caffenet_deploy": 60_965_224,
    "models_bvlc_googlenet_deploy": 6_998_552,
}


def _is_construction(message: str) -> bool:
    return (message.startswith(CONSTRUCTION) or " <- " in message or " -> " in message
            or message.endswith("backward computation."))


def _caffe_messages(name: str) -> list[str]:
    out = []
    for line in (SHAPES / f"{name}.caffe.log").read_text().splitlines():
        m = NET_LINE.match(line)
        if m:
            out.append(m.group(1))
    return out


def _caffe_blob_shapes(messages: list[str]) -> dict[str, tuple[int, ...]]:
    """Each blob's shape as Caffe's log gives it: the ``Top shape`` lines after ``Setting up
    <layer>`` follow that layer's ``-> <top>`` lines in order."""
    shapes: dict[str, tuple[int, ...]] = {}
    tops: dict[str, list[str]] = {}
    current: list[str] = []
    for message in messages:
        if " -> " in message:
            layer, top = message.split(" -> ", 1)
            tops.setdefault(layer, []).append(top.removesuffix(" (in-place)"))
        elif message.startswith("Setting up "):
            current = list(tops.get(message.removeprefix("Setting up "), []))
        elif message.startswith("Top shape:") and current:
            dims = message.removeprefix("Top shape:").rsplit("(", 1)[0].split()
            shapes[current.pop(0)] = tuple(int(d) for d in dims)
    return shapes


def _caffe_param_count(name: str, shapes: dict[str, tuple[int, ...]]) -> int:
    """Convolution and InnerProduct parameters from the prototxt and Caffe's bottom shapes."""
    net = parse_text_proto((SHAPES / f"{name}.prototxt").read_text(), caffe_pb2.NetParameter(),
                           name)
    total = 0
    for layer in net.layer:
        bottom = shapes[layer.bottom[0]] if len(layer.bottom) else ()
        if layer.type == "Convolution":
            p = layer.convolution_param
            kernel = list(p.kernel_size) or [p.kernel_h, p.kernel_w]
            kh, kw = (kernel * 2)[:2]
            total += p.num_output * (bottom[1] // p.group) * kh * kw
            total += p.num_output if p.bias_term else 0
        elif layer.type == "InnerProduct":
            p = layer.inner_product_param
            total += p.num_output * int(np.prod(bottom[p.axis:]))
            total += p.num_output if p.bias_term else 0
        else:
            assert layer.type in ("Input", "Pooling", "ReLU", "LRN", "Concat", "Dropout",
                                  "Softmax"), f"count the parameters of {layer.type}"
    return total


def _time_one_iteration(name: str, monkeypatch):
    """Run ``pyforge time --model=X --iterations=1``; return the log and the net it built."""
    built = []
    load_net = api._load_net

    def keep(*args, **kwargs):
        built.append(load_net(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(api, "_load_net", keep)
    with capture_log() as log:
        api.time_net(str(SHAPES / f"{name}.prototxt"), iterations=1)
    return log.messages, built[0]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_model_zoo_net_builds_as_in_caffe(name, monkeypatch):
    caffe = _caffe_messages(name)
    messages, net = _time_one_iteration(name, monkeypatch)

    # Every construction line, in order.
    expected = [m for m in caffe if _is_construction(m)]
    ours = [m for m in messages if _is_construction(m)]
    assert ours == expected
    assert sum(m.startswith("Top shape:") for m in ours) >= len(net.layers)

    # Learnable parameters: Caffe's count, computed from the prototxt and Caffe's shapes.
    count = sum(p.blob.count for p in net.learnable)
    assert count == _caffe_param_count(name, _caffe_blob_shapes(caffe)) == PUBLISHED[name]
    assert count == sum(blob.count for blob in net.params_flat)

    # Forward and backward ran through every layer.
    for step in ("Performing Forward", "Performing Backward", "*** Benchmark begins ***",
                 "*** Benchmark ends ***"):
        assert step in messages
    for layer_name in net.layer_names:
        assert any(m.strip().startswith(f"{layer_name}\tforward:") for m in messages)
        assert any(m.strip().startswith(f"{layer_name}\tbackward:") for m in messages)
    assert any(m.startswith("Average Forward-Backward:") for m in messages)
    prob = net.blobs["prob"].data
    assert np.isfinite(prob).all()
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
