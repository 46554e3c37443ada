"""caffe.draw and `pyforge draw-net`: the layer graph drawn without graphviz."""

from __future__ import annotations

import pytest
from PIL import Image

import pyforge as caffe
from pyforge.cli import main
from pyforge.errors import PyforgeError
from pyforge.proto import read_net_param
from tests.logcapture import capture_log
from tests.pycaffe.conftest import LENET

pytest.importorskip("matplotlib")


def _labels(graph, kind=None) -> list[str]:
    return [n.label for n in graph.nodes.values() if kind is None or n.kind == kind]


def test_graph_has_caffes_nodes_and_labels(in_caffe_ref):
    net = read_net_param(LENET)
    graph = caffe.draw.build_graph(net, "LR")
    layers = _labels(graph, "layer")
    assert "conv1\n(Convolution)\nkernel size: 5\nstride: 1\npad: 0" in layers
    assert "pool1\n(Pooling MAX)\nkernel size: 2\nstride: 2\npad: 0" in layers
    assert layers.count("mnist\n(Data)") == 2  # no phase given: both data layers
    assert _labels(graph, "neuron") == ["relu1\n(ReLU)"]
    # The in-place ReLU sits between two nodes of blob ip1.
    assert _labels(graph, "blob").count("ip1") == 2
    labels = {label for _, _, label in graph.edges if label}
    assert labels == {"Batch 64", "Batch 100", "20", "50", "500", "10"}
    test_only = caffe.draw.build_graph(net, "TB", phase=caffe.TRAIN)
    assert not any("Accuracy" in label for label in _labels(test_only))
    assert "conv1 (Convolution) kernel size: 5 stride: 1 pad: 0" in _labels(test_only)
    assert caffe.draw.get_layer_label(net.layer[2], "LR", display_lrm=True).endswith("lr mult: 1")


def test_layout_puts_ranks_in_order(in_caffe_ref):
    graph = caffe.draw.build_graph(read_net_param(LENET), "TB", phase=caffe.TEST)
    width, height = caffe.draw.layout(graph)
    nodes = {n.label.split(" ")[0]: n for n in graph.nodes.values() if n.kind == "layer"}
    assert nodes["mnist"].y > nodes["conv1"].y > nodes["ip2"].y > nodes["loss"].y
    for node in graph.nodes.values():
        assert 0 <= node.x - node.width / 2 and node.x + node.width / 2 <= width + 1e-6
        assert 0 <= node.y - node.height / 2 and node.y + node.height / 2 <= height + 1e-6


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_draw_net_to_file_writes_a_png(in_caffe_ref, tmp_path, rankdir):
    out = tmp_path / f"lenet_{rankdir}.png"
    caffe.draw.draw_net_to_file(read_net_param(LENET), str(out), rankdir, phase=caffe.TEST)
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert (width > height) == (rankdir == "LR")
    assert min(width, height) > 100


def test_draw_net_formats(in_caffe_ref, tmp_path):
    net = read_net_param(LENET)
    svg = caffe.draw.draw_net(net, "LR", ext="svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    dot = caffe.draw.draw_net(net, "TB", ext="dot").decode()
    assert dot.startswith('digraph "LeNet"') and "rankdir=TB" in dot
    assert '"ip1_blob" -> "layer:' in dot and 'shape="octagon"' in dot
    with pytest.raises(PyforgeError, match="extension"):
        caffe.draw.draw_net_to_file(net, str(tmp_path / "noext"))
    with pytest.raises(PyforgeError, match="rankdir"):
        caffe.draw.build_graph(net, "XY")


def test_draw_net_command(in_caffe_ref, tmp_path):
    out = tmp_path / "lenet.png"
    with capture_log():
        assert main(["draw-net", LENET, str(out), "--rankdir", "TB", "--phase", "TRAIN"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[1] > image.size[0]
    # A file named on the command line that does not exist: a bad command line.
    assert main(["draw-net", "missing.prototxt", str(tmp_path / "x.png")]) == 2
    # Caffe's tool name works too (hidden from --help).
    with capture_log():
        assert main(["draw_net", LENET, str(tmp_path / "alias.svg")]) == 0
    assert (tmp_path / "alias.svg").read_bytes().lstrip().startswith(b"<?xml")
