"""Which Caffe layer types export, and the one-line refusal for those that do not.

``CONVERTERS`` maps a Caffe type string (the canonical one a layer class is registered under;
V1 aliases resolve through the layer registry) to a function ``convert(graph, site)`` that
appends the layer's ONNX nodes. Everything else is refused before anything is written, with
what to do about it.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ExportError
from ..layers import LAYERS
from ..proto import caffe_pb2
from ..registry import Registry
from .builder import GraphBuilder, Site

Converter = Callable[[GraphBuilder, Site], None]

CONVERTERS: Registry[Converter] = Registry("ONNX converter")


def converts(*types: str) -> Callable[[Converter], Converter]:
    """Decorator: register a converter for one or more Caffe layer types."""

    def decorate(fn: Converter) -> Converter:
        for name in types:
            CONVERTERS.register(name)(fn)
        return fn

    return decorate


#: Layers that read data from files or memory: a deploy net is fed through Input instead.
DATA_LAYERS = {"Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData"}

#: What to do about the other types without an ONNX form, by type.
REMEDIES = {
    "Python": "it runs Python code, which an ONNX graph cannot hold; remove it, or replace it "
              "with built-in layers that compute the same",
    "HDF5Output": "it writes files; remove it from the deploy net",
    "Accuracy": "it scores against labels; remove it from the deploy net (ONNX models end at "
                "the scores)",
    "Filter": "its output size depends on the data; remove it from the deploy net",
    "BatchReindex": "its output size depends on the data; remove it from the deploy net",
}


def canonical_type(type_name: str) -> str | None:
    """The type string a layer class is registered under (V1 aliases resolved), or None."""
    if type_name not in LAYERS:
        return None
    return LAYERS.get(type_name).type_name


def refusal(layer: caffe_pb2.LayerParameter) -> str | None:
    """Why ``layer`` cannot be exported (one line naming it and its type), or None."""
    canonical = canonical_type(layer.type)
    if canonical is not None and canonical in CONVERTERS:
        return None
    head = f"layer '{layer.name}' of type '{layer.type}' cannot be exported to ONNX: "
    if canonical is None:
        return head + ("pyforge does not know this type; remove the layer or replace it with "
                       "exportable ones")
    if canonical in DATA_LAYERS:
        tops = ", ".join(layer.top) or "its tops"
        return head + (f"it is a data layer; replace it with an Input layer that declares the "
                       f"shape of {tops} (input_param {{ shape {{ dim: N dim: C ... }} }})")
    if canonical.endswith("Loss"):
        return head + ("it is a loss layer; remove it (and the label input) from the deploy "
                       "net: ONNX models end at the scores")
    if canonical in REMEDIES:
        return head + REMEDIES[canonical]
    return head + (f"ONNX has no equivalent; remove it or replace it with exportable layers "
                   f"({', '.join(CONVERTERS.names())})")


def refuse_unexportable(param: caffe_pb2.NetParameter) -> None:
    """Raise for the first layer of the (filtered) net that has no ONNX form."""
    for layer in param.layer:
        reason = refusal(layer)
        if reason is not None:
            raise ExportError(reason)
