"""A built pyforge Net (weights loaded) -> an ONNX ModelProto.

The graph's inputs are the Input layers' tops and its outputs the net's outputs (blobs no layer
consumes), under Caffe's blob names and shapes. A Caffe blob rewritten in place (``top ==
bottom``: ReLU, BatchNorm, Scale, Dropout, ...) is one name in Caffe but one ONNX value per
version; the last version keeps Caffe's name and the earlier ones are named
``<blob>__<layer that wrote it>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

from .. import __version__
from ..errors import ExportError
from ..net.net import Net
from . import converters  # noqa: F401  (registers the converters)
from .builder import GraphBuilder, Site
from .registry import CONVERTERS, canonical_type

#: The symbolic batch size of --dynamic-batch.
BATCH = "N"


def _value_info(name: str, shape: tuple[int, ...], batch: int | None) -> onnx.ValueInfoProto:
    """A float tensor's declared type; with a dynamic ``batch``, an axis 0 of that size becomes
    the symbol N and another size on axis 0 (a batch joined along axis 0) stays unnamed."""
    dims: list[int | str | None] = list(shape)
    if batch is not None and dims:
        dims[0] = BATCH if dims[0] == batch else None
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _final_names(net: Net) -> dict[tuple[int, int], str]:
    """(layer id, blob id) -> the ONNX name of the version of the blob that layer writes."""
    last_writer: dict[int, int] = {}
    for layer_id, tops in enumerate(net.top_ids):
        for blob_id in tops:
            last_writer[blob_id] = layer_id
    names = {}
    for layer_id, tops in enumerate(net.top_ids):
        for blob_id in tops:
            if last_writer[blob_id] == layer_id:
                names[(layer_id, blob_id)] = net.blob_names[blob_id]
    return names


@dataclass
class Conversion:
    model: onnx.ModelProto
    #: Per converted layer, in order: its name and the ONNX names of its bottoms and tops.
    layers: list[tuple[str, list[str], list[str]]]


def net_to_onnx(net: Net, opset: int, dynamic_batch: bool, doc: str = "") -> Conversion:
    """Convert every layer of ``net`` with its registered converter; ExportError for a layer
    that has none or whose parameters ONNX cannot express."""
    g = GraphBuilder(opset, dynamic_batch)
    final = _final_names(net)
    input_ids = list(net.input_ids)
    batch = net.blob_list[input_ids[0]].shape[0] if dynamic_batch and input_ids else None
    for blob_id in input_ids:
        g.reserve(net.blob_names[blob_id])
    for (_, blob_id), name in final.items():
        if blob_id not in input_ids:
            g.reserve(name)
    current = {blob_id: net.blob_names[blob_id] for blob_id in input_ids}
    converted = []
    for layer_id, layer in enumerate(net.layers):
        if layer.param.type == "Input":
            continue
        tops = net.top_ids[layer_id]
        outputs = []
        for blob_id in tops:
            name = final.get((layer_id, blob_id))
            if name is None or blob_id in input_ids:
                name = g.fresh(f"{net.blob_names[blob_id]}__{layer.param.name}")
            outputs.append(name)
        site = Site(layer=layer, inputs=[current[b] for b in net.bottom_ids[layer_id]],
                    outputs=outputs,
                    input_shapes=[net.blob_list[b].shape for b in net.bottom_ids[layer_id]],
                    output_shapes=[net.blob_list[b].shape for b in tops])
        convert = CONVERTERS.get(canonical_type(layer.param.type) or layer.param.type,
                                 f"layer '{layer.param.name}'")
        convert(g, site)
        converted.append((layer.param.name, site.inputs, site.outputs))
        current.update(zip(tops, outputs))
    graph_inputs = [_value_info(net.blob_names[b], net.blob_list[b].shape, batch)
                    for b in input_ids]
    if not net.output_ids:
        raise ExportError("the net has no outputs (every blob is consumed, e.g. by Silence); "
                          "an ONNX model needs at least one")
    graph_outputs = []
    for blob_id in net.output_ids:
        name = net.blob_names[blob_id]
        if current[blob_id] != name:
            raise ExportError(f"blob '{name}' is a net input that a layer rewrites in place "
                              "and also a net output; ONNX values have one producer: give "
                              "that layer's top another name")
        graph_outputs.append(_value_info(name, net.blob_list[blob_id].shape, batch))
    graph = helper.make_graph(g.nodes, net.name or "net", graph_inputs, graph_outputs,
                              initializer=g.initializers, doc_string=doc)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="pyforge", producer_version=__version__)
    # The IR version the opset first shipped with, not the onnx package's newest: runtimes
    # that know the opset then load the file.
    model.ir_version = _ir_version_for(opset)
    return Conversion(model, converted)


def _ir_version_for(opset: int) -> int:
    return helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
