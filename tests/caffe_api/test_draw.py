"""caffe.draw as pycaffe's scripts and tests use it: every net prototxt of the repository drawn
with ``caffe.draw.draw_net(net, 'LR')`` (pycaffe's test_draw does the same over Caffe's models
and examples), files written by ``draw_net_to_file``, and pydot's absence said clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

import caffe.draw
from caffe.proto import caffe_pb2
from pyforge.errors import PyforgeError

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]
# (GoogLeNet is drawn by tests/insight/test_draw.py; the zoo's big nets are laid out there.)
NETS = sorted(p for p in (ROOT / "tests" / "data").rglob("*.prototxt")
              if "solver" not in p.name and "googlenet" not in p.name)


def _read(path: Path) -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter()
    text_format.Merge(path.read_text(), net)
    return net


def test_every_net_of_the_repository_draws():
    assert len(NETS) >= 20
    for path in NETS:
        picture = caffe.draw.draw_net(_read(path), "LR")
        assert picture.startswith(b"\x89PNG"), path


def test_draw_net_to_file_with_a_phase(tmp_path):
    net = _read(ROOT / "tests" / "data" / "caffe_reference" / "lenet" / "lenet_train_test.prototxt")
    for phase, name in ((caffe.TRAIN, "train.svg"), (caffe.TEST, "test.pdf"), (None, "all.png")):
        caffe.draw.draw_net_to_file(net, str(tmp_path / name), "TB", phase, display_lrm=True)
    assert b"Accuracy" not in (tmp_path / "train.svg").read_bytes()
    assert (tmp_path / "test.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "all.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(PyforgeError, match="cannot write"):
        caffe.draw.draw_net_to_file(net, str(tmp_path / "missing" / "x.png"))


def test_get_pydot_graph_needs_pydot():
    try:
        import pydot  # noqa: F401
    except ImportError:
        with pytest.raises(PyforgeError, match="pip install pydot"):
            caffe.draw.get_pydot_graph(caffe_pb2.NetParameter(), "LR")
    else:
        graph = caffe.draw.get_pydot_graph(_read(NETS[0]), "LR")
        assert graph.get_node_list()
