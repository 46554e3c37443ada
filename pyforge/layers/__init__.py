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


def __getattr__(name: str):
    if name[:1].isupper() and name in LAYERS.names():
        raise AttributeError(f"module 'pyforge.layers' has no attribute {name!r}: pyforge.layers "
                             "holds the layer implementations; NetSpec's layer factory is "
                             "pycaffe's caffe.layers (`from caffe import layers as L`, then "
                             f"L.{name}(...))")
    raise AttributeError(f"module 'pyforge.layers' has no attribute {name!r}")
