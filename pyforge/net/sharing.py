"""Why a test net cannot use the train net's parameters (Caffe's ShareTrainedLayersWith).

The test nets compute with the train net's weights, found by layer name. When a shape does
not match, the shape itself is only the symptom; the message names the cause that can be
seen: two layers with one name, data of another size in one of the nets (with both shapes and
where each comes from), or a layer defined differently in the two nets.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..blob import Blob
    from ..layers.base import Layer
    from .net import Net


def sharing_problem(test_net: Net, train_net: Net, test_name: str = "the test net"
                    ) -> str | None:
    """A one-line explanation of why ``test_net`` (called ``test_name``, as "test net #1")
    cannot share ``train_net``'s parameters, or None when every layer it has by name fits."""
    for net, which in ((train_net, "the train net"), (test_net, test_name)):
        duplicate = _duplicate_name(net)
        if duplicate:
            return (f"{which} has {duplicate}; weights are shared with the test nets (and "
                    "copied from files) by layer name, so give each its own name")
    for name, theirs in zip(train_net.layer_names, train_net.layers):
        layer_id = _index(test_net, name)
        if layer_id is None:
            continue
        mine = test_net.layers[layer_id]
        if len(mine.blobs) != len(theirs.blobs):
            return (f"layer '{name}' has {len(theirs.blobs)} parameter blobs in the train net "
                    f"and {len(mine.blobs)} in {test_name}; define it alike in both")
        for j, (a, b) in enumerate(zip(mine.blobs, theirs.blobs)):
            if a.shape != b.shape:
                return (f"layer '{name}' cannot share weights with {test_name}: "
                        + _cause(test_net, train_net, name, layer_id,
                                 f"its param {j} is {_dims(b)} in the train net and {_dims(a)} "
                                 "in the test net"))
    return None


def _index(net: Net, name: str) -> int | None:
    return next((i for i, n in enumerate(net.layer_names) if n == name), None)


def _duplicate_name(net: Net) -> str:
    """"two layers named 'conv1' (#1 and #3)" when layers with parameters share a name."""
    counts = Counter(n for n, layer in zip(net.layer_names, net.layers) if layer.blobs)
    for name, count in counts.items():
        if count > 1:
            ids = [f"#{i}" for i, n in enumerate(net.layer_names) if n == name]
            return f"{count} layers named '{name}' ({' and '.join(ids)})"
    return ""


def _dims(blob: Blob | tuple) -> str:
    shape = blob if isinstance(blob, tuple) else blob.shape
    return "x".join(str(d) for d in shape)


def _cause(test_net: Net, train_net: Net, name: str, test_id: int, symptom: str) -> str:
    train_id = _index(train_net, name)
    mine = [b.shape[1:] for b in test_net.bottoms(test_id)]
    theirs = [b.shape[1:] for b in train_net.bottoms(train_id)]
    if mine == theirs:
        return f"{symptom} while its inputs match: the layer is defined differently in the two nets"
    inputs = [f"data '{top}' is {_dims(a)} in training ({_origin(la)}) but {_dims(b)} in "
              f"testing ({_origin(lb)})"
              for top, (a, la), (b, lb) in _input_pairs(train_net, test_net) if a != b]
    if inputs:  # (the batch sizes may differ: axis 0 is left out)
        return "; ".join(inputs)
    return (f"{symptom}; its input is {' '.join(_dims(s) for s in theirs)} in the train net but "
            f"{' '.join(_dims(s) for s in mine)} in the test net: the layers before it differ")


def _input_pairs(train_net: Net, test_net: Net):
    """(top name, (shape without batch, layer) in the train net, the same in the test net)
    of each top that a layer without bottoms (a data layer) makes in both nets."""

    def inputs(net: Net) -> dict[str, tuple[tuple, Layer]]:
        found = {}
        for i, layer in enumerate(net.layers):
            if not net.bottom_ids[i]:
                for blob_id in net.top_ids[i]:
                    found[net.blob_names[blob_id]] = (net.blob_list[blob_id].shape[1:], layer)
        return found

    train, test = inputs(train_net), inputs(test_net)
    return [(top, train[top], test[top]) for top in train if top in test]


def _origin(layer: Layer) -> str:
    """Where a data layer's records come from: its source and the settings that resize them."""
    p = layer.param
    parts = [f"layer '{p.name}'"]
    for field in ("data_param", "image_data_param", "hdf5_data_param", "window_data_param"):
        if p.HasField(field) and getattr(p, field).source:
            parts = [getattr(p, field).source]
    transform = p.transform_param
    if transform.crop_size:
        parts.append(f"crop_size {transform.crop_size}")
    image = p.image_data_param
    if image.new_height or image.new_width:
        parts.append(f"new_height {image.new_height} new_width {image.new_width}")
    return ", ".join(parts)
