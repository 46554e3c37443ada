"""The generated model-zoo deploy nets (prototxt_examples/zoo): the committed files are what
make_zoo.py writes, each net builds and runs forward in pyforge, and holds the published number
of learnable parameters (weights, biases and Scale's gamma/beta; BatchNorm's statistics are not
learnable) with the published output shape."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from pyforge import api
from pyforge.proto import caffe_pb2
from pyforge.rng import make_rng
from tests.net_weights import seed_weights

ZOO = Path(__file__).resolve().parents[2] / "prototxt_examples" / "zoo"

#: (learnable parameters, shape of "prob"). ResNet-50: torchvision's 25,557,032 plus conv1's
#: bias, which He's Caffe file has; SqueezeNet 1.1: 1,235,496 as DeepScale reports;
#: MobileNet v2: torchvision's 3,504,872 plus shicai's conv2_1/expand (32x32 1x1 convolution
#: and its Scale, 1,088), which torchvision leaves out for expansion 1.
PUBLISHED = {
    "resnet50_deploy": (25_557_096, (1, 1000)),
    "squeezenet1_1_deploy": (1_235_496, (10, 1000, 1, 1)),
    "mobilenet_v2_deploy": (3_505_960, (1, 1000, 1, 1)),
    "caffenet_deploy": (60_965_224, (10, 1000)),
    "googlenet_deploy": (6_998_552, (10, 1000)),
}


def _make_zoo():
    spec = importlib.util.spec_from_file_location("make_zoo", ZOO / "make_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_nets_are_what_make_zoo_writes():
    make_zoo = _make_zoo()
    assert set(make_zoo.NETS) <= {p.name for p in ZOO.glob("*.prototxt")}
    for filename, build in make_zoo.NETS.items():
        assert (ZOO / filename).read_text() == build(), filename


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_zoo_net_has_published_parameters_and_output(name):
    count, prob_shape = PUBLISHED[name]
    net = api._load_net(str(ZOO / f"{name}.prototxt"), caffe_pb2.TEST, 0, "", seed=1701)
    try:
        learnable = sum(p.blob.count for p in net.learnable
                        if net.layer_by_name(p.layer).type != "BatchNorm")
        assert learnable == count
        seed_weights(net, make_rng(3))
        prob = net.blobs["prob"].data
        assert prob.shape == prob_shape
        assert np.isfinite(prob).all()
        np.testing.assert_allclose(prob.reshape(prob.shape[0], -1).sum(axis=1), 1.0, rtol=1e-5)
    finally:
        net.close()
