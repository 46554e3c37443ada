"""Shared steps of the export tests: seeded weights written as real weight files, nets at a
small batch, and the comparison of every layer (not only the outputs) between ONNX Runtime and
pyforge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort

from pyforge import api
from pyforge.export import CHECK_SEED, DEFAULT_OPSET
from pyforge.export.check import compare, random_inputs
from pyforge.export.onnx_graph import net_to_onnx
from pyforge.io.snapshot import write_model
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, read_net_param
from pyforge.proto.io import debug_string
from pyforge.rng import make_rng
from tests.net_weights import seed_weights

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "prototxt_examples" / "zoo"
DATA = ROOT / "tests" / "data" / "export"
LENET = ROOT / "prototxt_examples" / "mnist" / "lenet.prototxt"


def with_batch(model: Path, batch: int, folder: Path) -> Path:
    """A copy of ``model`` (legacy input fields upgraded) whose Input layers have ``batch``."""
    param = read_net_param(model)
    for layer in param.layer:
        if layer.type == "Input":
            for shape in layer.input_param.shape:
                shape.dim[0] = batch
    path = folder / f"{model.stem}_b{batch}.prototxt"
    path.write_text(debug_string(param))
    return path


def seeded_net(model: Path, weights: Path, hdf5: bool = False) -> Net:
    """Build ``model`` (TEST phase), give it seeded random weights, write them to
    ``weights`` (.caffemodel, or .caffemodel.h5 with ``hdf5``) and return the net."""
    net = api._load_net(str(model), caffe_pb2.TEST, 0, "", seed=11)
    seed_weights(net, make_rng(12), random_inputs(net, 13))
    write_model(str(weights), net, hdf5=hdf5)
    return net


def every_layer_error(net: Net, onnx_path: Path, opset: int = DEFAULT_OPSET,
                      feeds: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Per layer: the largest error, relative to scale, of its tops when the exported model's
    nodes for that layer alone (cut out of the written file) are fed pyforge's values of its
    bottoms, against pyforge's tops. Errors cannot accumulate from layer to layer, so a wrong
    layer shows at once, even behind a saturated softmax."""
    conversion = net_to_onnx(net, opset, False)
    model = onnx.load(str(onnx_path))
    assert [n.name for n in model.graph.node] == [n.name for n in conversion.model.graph.node]
    feeds = feeds if feeds is not None else random_inputs(net, CHECK_SEED)
    for name, values in feeds.items():
        net.blobs[name].data[...] = values
    seen: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for layer_id, layer in enumerate(net.layers):
        bottoms = [b.data.copy() for b in net.bottoms(layer_id)]
        net.forward_from_to(layer_id, layer_id)
        seen[layer.param.name] = (bottoms, [t.data.copy() for t in net.tops(layer_id)])
    extractor = onnx.utils.Extractor(model)
    errors = {}
    for name, inputs, outputs in conversion.layers:
        if not outputs:
            continue
        bottoms, tops = seen[name]
        part = extractor.extract_model(list(dict.fromkeys(inputs)), outputs)
        values = dict(zip(inputs, bottoms))
        session = ort.InferenceSession(part.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        got = session.run(outputs, {i.name: values[i.name] for i in part.graph.input})
        errors[name] = max(compare(t, g, name).relative for t, g in zip(tops, got))
    return errors
