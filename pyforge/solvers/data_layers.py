"""A net's data layers as the solver sees them, through their declared interface
(:class:`~pyforge.layers.base.BaseDataLayer`): the batch size and the size of the data set, for
the effective-batch lines and the test-coverage warning."""

from __future__ import annotations

from ..layers.base import BaseDataLayer
from ..net.net import Net


def data_layers(net: Net) -> list[BaseDataLayer]:
    return [layer for layer in net.layers if isinstance(layer, BaseDataLayer)]


def batch_size(net: Net) -> int:
    """The batch of the net's first data layer (0 without one)."""
    layers = data_layers(net)
    return layers[0].batch_size if layers else 0


def dataset_size(net: Net) -> int:
    """The items in one pass over the data, from the first data layer that knows (0 when
    none does)."""
    return next((layer.dataset_size for layer in data_layers(net) if layer.dataset_size), 0)
