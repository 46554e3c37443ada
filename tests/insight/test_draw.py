"""`pyforge draw-net` (and pycaffe's caffe.draw): the layer graph drawn without graphviz,
readable for deep nets, with edges that never run through a box."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from pyforge.cli import main
from pyforge.errors import PyforgeError
from pyforge.insight import draw
from pyforge.insight.draw_layout import Graph
from pyforge.proto import caffe_pb2, parse_text_proto, read_net_param
from tests.logcapture import capture_log

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ROOT / "tests" / "data" / "caffe_reference" / "shapes"
LENET = str(SHAPES.parent / "lenet" / "lenet_train_test.prototxt")
GOOGLENET = str(SHAPES / "models_bvlc_googlenet_deploy.prototxt")
ALEXNET = str(SHAPES / "models_bvlc_alexnet_deploy.prototxt")
CIFAR = str(SHAPES / "examples_cifar10_cifar10_full.prototxt")

#: Layer A reads x and writes y, layer B reads y and writes x again: drawn with one node per
#: blob name, as Caffe draws, the graph has a cycle.
CYCLE = """name: "cycle"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 4 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 4 } }
layer { name: "b" type: "InnerProduct" bottom: "y" top: "x" inner_product_param { num_output: 4 } }
"""


def _net(source: str) -> caffe_pb2.NetParameter:
    if source == "cycle":
        return parse_text_proto(CYCLE, caffe_pb2.NetParameter(), "cycle")
    return read_net_param(source)


def _boxes(graph: Graph) -> dict[str, tuple[float, float, float, float]]:
    return {key: (n.x - n.width / 2, n.y - n.height / 2, n.x + n.width / 2, n.y + n.height / 2)
            for key, n in graph.nodes.items() if n.kind != "virtual"}


def _crosses(p, q, box, inset: float = 0.5) -> bool:
    """Whether segment pq enters the box shrunk by ``inset`` (touching its border is fine)."""
    left, bottom, right, top = (box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset)
    (x0, y0), (x1, y1) = p, q
    t_in, t_out = 0.0, 1.0
    for step, room in ((x0 - x1, x0 - left), (x1 - x0, right - x0), (y0 - y1, y0 - bottom),
                       (y1 - y0, top - y0)):
        if step == 0:
            if room < 0:
                return False
            continue
        t = room / step
        if step < 0:
            t_in = max(t_in, t)
        else:
            t_out = min(t_out, t)
        if t_in > t_out:
            return False
    return True


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_the_crossing_check_finds_crossings():
    box = (0.0, 0.0, 10.0, 10.0)
    assert _crosses((-5, 5), (15, 5), box) and _crosses((5, 5), (5, 50), box)
    assert not _crosses((-5, 5), (-1, 5), box) and not _crosses((10, 0), (10, 10), box)
    assert not _crosses((-5, -5), (15, -1), box)


NETS = [LENET, GOOGLENET, ALEXNET, CIFAR, "cycle"]
#: Nets with many long edges (SSD's heads), residual and depthwise blocks, one direction each.
MORE_NETS = [str(ROOT / "tests" / "data" / "forks" / "mini_mobilenet_ssd.prototxt"),
             *(str(p) for p in sorted((ROOT / "prototxt_examples" / "zoo").glob("*.prototxt")))]


@pytest.mark.parametrize("source, rankdir", [
    *((net, rankdir) for net in NETS for rankdir in draw.RANKDIRS),
    *((net, "LR") for net in MORE_NETS)], ids=lambda v: Path(v).stem)
def test_no_edge_runs_through_a_box_and_no_label_covers_one(source, rankdir):
    graph = draw.build_graph(_net(source), rankdir)
    width, height = draw.layout(graph)
    boxes = _boxes(graph)
    assert len(graph.paths) == len(graph.edges)
    for (source_key, target_key, _label), path in zip(graph.edges, graph.paths):
        assert len(path) >= 2
        for p, q in zip(path, path[1:]):
            hit = [key for key, box in boxes.items() if _crosses(p, q, box)]
            assert not hit, f"{source_key} -> {target_key}: segment {p}-{q} crosses {hit}"
        # Each edge runs from its source's border to its target's.
        for point, key in ((path[0], source_key), (path[-1], target_key)):
            left, bottom, right, top = boxes[key]
            assert left - 1e-6 <= point[0] <= right + 1e-6
            assert bottom - 1e-6 <= point[1] <= top + 1e-6
            assert not _crosses(point, point, boxes[key], inset=1.0)  # on the border
    for label in graph.labels:
        area = (label.x - label.width / 2, label.y - label.height / 2,
                label.x + label.width / 2, label.y + label.height / 2)
        assert not [key for key, box in boxes.items() if _overlap(area, box)], label.text
    for box in boxes.values():
        assert -1e-6 <= box[0] and box[2] <= width + 1e-6
        assert -1e-6 <= box[1] and box[3] <= height + 1e-6


def test_lenets_labelled_edges_clear_conv1():
    """The edges of the data layers (labelled "Batch 64" and "Batch 100") used to cross the
    conv1 box."""
    graph = draw.build_graph(_net(LENET), "LR")
    draw.layout(graph)
    conv1 = _boxes(graph)[next(k for k, n in graph.nodes.items() if n.label.startswith("conv1"))]
    labelled = [path for (_s, _t, label), path in zip(graph.edges, graph.paths) if label]
    assert {label.text for label in graph.labels} >= {"Batch 64", "Batch 100", "20"}
    assert not any(_crosses(p, q, conv1) for path in labelled for p, q in zip(path, path[1:]))


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_googlenet_is_wrapped_into_a_readable_picture(tmp_path, rankdir):
    """GoogLeNet used to give a 28,989 x 522 picture: its 150 ranks are cut into rows (LR) or
    columns (TB) that keep the flow's direction and a sane aspect ratio."""
    out = tmp_path / f"googlenet_{rankdir}.png"
    draw.draw_net_to_file(_net(GOOGLENET), str(out), rankdir)
    with Image.open(out) as image:
        width, height = image.size
    assert max(width, height) <= 8000 and min(width, height) >= 1500
    along, across = (width, height) if rankdir == "LR" else (height, width)
    assert 0.5 <= along / across <= 3.5
    graph = draw.build_graph(_net(GOOGLENET), rankdir)
    draw.layout(graph)
    assert len(graph.rows) >= 2
    # Within each row the ranks still flow left to right (top to bottom for TB).
    for first, last in graph.rows:
        centres = sorted({(n.rank, n.x if rankdir == "LR" else -n.y)
                          for n in graph.nodes.values() if first <= n.rank <= last})
        positions = [position for _rank, position in centres]
        assert positions == sorted(positions)
    # Rows are cut where few edges pass: most cuts are between two inception modules.
    crossing = [sum(len(n.succs) for n in graph.nodes.values() if n.rank == last)
                for _first, last in graph.rows[:-1]]
    assert sorted(crossing)[len(crossing) // 2] == 1


def test_small_nets_keep_one_row_in_caffes_direction():
    text = ('name: "tiny" layer { name: "in" type: "Input" top: "x" input_param { shape { '
            'dim: 1 dim: 1 dim: 8 dim: 8 } } } layer { name: "conv" type: "Convolution" '
            'bottom: "x" top: "y" convolution_param { num_output: 2 kernel_size: 3 } }')
    graph = draw.build_graph(parse_text_proto(text, caffe_pb2.NetParameter(), "tiny"), "LR")
    width, height = draw.layout(graph)
    assert graph.rows == [(0, 3)] and width > 3 * height
    xs = [n.x for n in sorted(graph.nodes.values(), key=lambda n: n.rank)]
    assert xs == sorted(xs)


def test_a_cycle_is_drawn_with_its_arrows_as_written():
    graph = draw.build_graph(_net("cycle"), "LR")
    draw.layout(graph)
    assert sum(graph.reversed) == 1
    flipped = graph.edges[graph.reversed.index(True)]
    assert graph.nodes[flipped[0]].label.startswith("b\n")  # layer b writes x again
    path = graph.paths[graph.reversed.index(True)]
    box = _boxes(graph)[flipped[1]]
    assert box[0] - 1e-6 <= path[-1][0] <= box[2] + 1e-6  # it ends at its own target


def test_graph_has_caffes_nodes_and_labels():
    net = read_net_param(LENET)
    graph = draw.build_graph(net, "LR")
    layers = [n.label for n in graph.nodes.values() if n.kind == "layer"]
    assert "conv1\n(Convolution)\nkernel size: 5\nstride: 1\npad: 0" in layers
    assert "pool1\n(Pooling MAX)\nkernel size: 2\nstride: 2\npad: 0" in layers
    assert layers.count("mnist\n(Data)") == 2  # no phase given: both data layers
    assert [n.label for n in graph.nodes.values() if n.kind == "neuron"] == ["relu1\n(ReLU)"]
    # The in-place ReLU sits between two nodes of blob ip1.
    assert [n.label for n in graph.nodes.values() if n.kind == "blob"].count("ip1") == 2
    labels = {label for _, _, label in graph.edges if label}
    assert labels == {"Batch 64", "Batch 100", "20", "50", "500", "10"}
    test_only = draw.build_graph(net, "TB", phase=caffe_pb2.TRAIN)
    labels = [n.label for n in test_only.nodes.values()]
    assert not any("Accuracy" in label for label in labels)
    assert "conv1 (Convolution) kernel size: 5 stride: 1 pad: 0" in labels
    assert draw.get_layer_label(net.layer[2], "LR", display_lrm=True).endswith(
        "lr mult: 1.0, 2.0")
    assert draw.get_layer_lr_mult(net.layer[2]) == (1.0, 2.0)
    with pytest.raises(ValueError, match="Pooling layers do not have a learning rate"):
        draw.get_layer_lr_mult(net.layer[3])


def test_layout_puts_ranks_in_order():
    graph = draw.build_graph(read_net_param(LENET), "TB", phase=caffe_pb2.TEST)
    width, height = draw.layout(graph)
    assert graph.rows == [(0, max(n.rank for n in graph.nodes.values()))]
    nodes = {n.label.split(" ")[0]: n for n in graph.nodes.values() if n.kind == "layer"}
    assert nodes["mnist"].y > nodes["conv1"].y > nodes["ip2"].y > nodes["loss"].y


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_draw_net_to_file_writes_a_png(tmp_path, rankdir):
    out = tmp_path / f"lenet_{rankdir}.png"
    draw.draw_net_to_file(read_net_param(LENET), str(out), rankdir, phase=caffe_pb2.TEST)
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert (width > height) == (rankdir == "LR")
    assert min(width, height) > 100


def test_draw_net_formats(tmp_path):
    net = read_net_param(LENET)
    svg = draw.draw_net(net, "LR", ext="svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    dot = draw.draw_net(net, "TB", ext="dot").decode()
    assert dot.startswith('digraph "LeNet"') and "rankdir=TB" in dot
    assert '"ip1_blob" -> "layer:' in dot and 'shape="octagon"' in dot
    with pytest.raises(PyforgeError, match="extension"):
        draw.draw_net_to_file(net, str(tmp_path / "noext"))
    with pytest.raises(PyforgeError, match="rankdir"):
        draw.build_graph(net, "XY")
    empty = caffe_pb2.NetParameter(name="empty")  # (V1 nets' layers are not drawn, as Caffe)
    assert draw.draw_net(empty, "LR").startswith(b"\x89PNG")


def test_draw_net_command(tmp_path):
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
