"""Layer implementations; importing this package registers every layer type.

Each module of this package holds one family of layers and registers them with
``@register_layer("<Caffe type>")``; every module is imported here, so a new family needs no
other edit.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .base import LAYERS, Layer, LossLayer, NetContext, NeuronLayer, register_layer

for _info in sorted(_pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name != "base":
        _importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["LAYERS", "Layer", "LossLayer", "NeuronLayer", "NetContext", "register_layer"]
