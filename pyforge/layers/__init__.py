"""Layer implementations; importing this package registers every layer type."""

from . import activation, conv, data, inner_product, pooling, softmax, structural  # noqa: F401
from .base import LAYERS, Layer, LossLayer, NetContext, NeuronLayer, register_layer

__all__ = ["LAYERS", "Layer", "LossLayer", "NeuronLayer", "NetContext", "register_layer"]
