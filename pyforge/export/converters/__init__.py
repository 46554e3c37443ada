"""Converters from Caffe layers to ONNX nodes, one function per type or family; importing this
package registers every one of them in :data:`pyforge.export.registry.CONVERTERS`.

A converter reads the built layer: its blobs (weights with loaded values) and the parameters
and geometry its setup and reshape checked and computed (``kernel``, ``pad``, ``axis``,
``coeffs``, ...), so that the export follows exactly what pyforge's forward does. The tests in
tests/export convert every type, so a renamed layer attribute fails there.
"""

import importlib as _importlib
import pkgutil as _pkgutil

for _info in sorted(_pkgutil.iter_modules(__path__), key=lambda i: i.name):
    _importlib.import_module(f"{__name__}.{_info.name}")
