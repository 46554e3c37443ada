"""A net's data layers as the solver sees them: the batch size and the size of the data set,
for the effective-batch line and the test-coverage warning."""

from __future__ import annotations

from ..net.net import Net


def _data_layers(net: Net) -> list:
    return [layer for layer in net.layers if hasattr(layer, "batch_size")]


def batch_size(net: Net) -> int:
    """The batch of the net's first data layer (0 without one)."""
    layers = _data_layers(net)
    return int(layers[0].batch_size) if layers else 0


def dataset_size(net: Net) -> int:
    """The number of items the net's first data layer that knows it reads (0 when none does)."""
    for layer in _data_layers(net):
        size = getattr(layer, "dataset_size", None)
        if size is None and hasattr(layer, "reader"):
            size = len(layer.reader)
        if size:
            return int(size)
    return 0
