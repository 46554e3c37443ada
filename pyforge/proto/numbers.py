"""Finiteness of the numbers in a parsed message.

Protobuf's text format reads ``nan``, ``inf`` and ``-inf`` (and numbers too large for a float
become ``inf``) without complaint, and a non-finite setting would otherwise surface as
"training diverged at iteration 0", which points away from the cause. Checking every float
field of a message, by its descriptor, covers the settings of every layer type and fork
without a list to keep up to date.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from google.protobuf import message as _message
from google.protobuf.descriptor import FieldDescriptor

from . import caffe_pb2

_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
#: Weights (BlobProto) are checked when they are copied into a net; nested nets by the net.
_NOT_SETTINGS = ("caffe.BlobProto", "caffe.NetParameter")


def nonfinite_fields(message: _message.Message, path: str = "") -> Iterator[tuple[str, float]]:
    """``(field path, value)`` of each NaN or infinite float the message sets, in order;
    paths look like ``weight_filler.std`` and ``param[1].lr_mult``."""
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        if field.type in _FLOATS:
            values = value if field.is_repeated else [value]
            for i, number in enumerate(values):
                if not math.isfinite(number):
                    yield (f"{name}[{i}]" if field.is_repeated else name), number
        elif (field.type == FieldDescriptor.TYPE_MESSAGE
              and field.message_type.full_name not in _NOT_SETTINGS):
            children = value if field.is_repeated else [value]
            for i, child in enumerate(children):
                prefix = f"{name}[{i}]." if field.is_repeated else f"{name}."
                yield from nonfinite_fields(child, prefix)


def nonfinite_message(message: _message.Message) -> str | None:
    """``"<field> must be a finite number, found nan"`` for the first non-finite field (and
    how many more there are), or None when every float is finite."""
    found = list(nonfinite_fields(message))
    if not found:
        return None
    name, value = found[0]
    more = f" (and {len(found) - 1} more non-finite field(s))" if len(found) > 1 else ""
    return f"{name} must be a finite number, found {value}{more}"


def layer_settings_error(layer: caffe_pb2.LayerParameter) -> str | None:
    """The first non-finite setting of a layer, as a message naming the layer."""
    problem = nonfinite_message(layer)
    if problem is None:
        return None
    return f"layer '{layer.name}' ({layer.type}): {problem}"
