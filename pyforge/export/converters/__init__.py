"""Converters from Caffe layers to ONNX nodes, one function per type or family; importing this
package registers every one of them in :data:`pyforge.export.registry.CONVERTERS`."""

import importlib as _importlib
import pkgutil as _pkgutil

for _info in sorted(_pkgutil.iter_modules(__path__), key=lambda i: i.name):
    _importlib.import_module(f"{__name__}.{_info.name}")
