"""pyforge: a Caffe-compatible trainer in Python on a Numba engine.

``import pyforge as caffe`` gives pycaffe's API: ``caffe.Net``, ``caffe.SGDSolver`` and the
other solvers, ``caffe.get_solver``, ``caffe.TRAIN``/``TEST``, ``caffe.set_mode_cpu`` and the
other switches, ``caffe.Layer`` (Python layers), ``caffe.io``, ``caffe.proto.caffe_pb2``,
``caffe.NetSpec``/``caffe.layers``/``caffe.params``/``caffe.to_proto``, ``caffe.draw`` and
``caffe.Classifier`` (implemented in :mod:`pyforge.pycaffe`).

These names are imported on first use, so that ``import pyforge`` (and with it the start of
every ``pyforge`` command) pays only for what it uses.
"""

import importlib as _importlib
import sys as _sys
import types as _types

from .config import apply_thread_defaults

apply_thread_defaults()

__version__ = "0.1.0"

# caffe_pb2.TRAIN and caffe_pb2.TEST, without importing protobuf for two constants.
TRAIN = 0
TEST = 1

#: pycaffe name -> (module, attribute); attribute None means the module itself.
_LAZY = {
    "Net": ("pyforge.pycaffe.net", "Net"),
    "SGDSolver": ("pyforge.pycaffe.solver", "SGDSolver"),
    "NesterovSolver": ("pyforge.pycaffe.solver", "NesterovSolver"),
    "AdaGradSolver": ("pyforge.pycaffe.solver", "AdaGradSolver"),
    "RMSPropSolver": ("pyforge.pycaffe.solver", "RMSPropSolver"),
    "AdaDeltaSolver": ("pyforge.pycaffe.solver", "AdaDeltaSolver"),
    "AdamSolver": ("pyforge.pycaffe.solver", "AdamSolver"),
    "get_solver": ("pyforge.pycaffe.solver", "get_solver"),
    "set_mode_cpu": ("pyforge.pycaffe.switches", "set_mode_cpu"),
    "set_mode_gpu": ("pyforge.pycaffe.switches", "set_mode_gpu"),
    "set_device": ("pyforge.pycaffe.switches", "set_device"),
    "set_random_seed": ("pyforge.pycaffe.switches", "set_random_seed"),
    "solver_count": ("pyforge.pycaffe.switches", "solver_count"),
    "set_solver_count": ("pyforge.pycaffe.switches", "set_solver_count"),
    "solver_rank": ("pyforge.pycaffe.switches", "solver_rank"),
    "set_solver_rank": ("pyforge.pycaffe.switches", "set_solver_rank"),
    "set_multiprocess": ("pyforge.pycaffe.switches", "set_multiprocess"),
    "has_nccl": ("pyforge.pycaffe.switches", "has_nccl"),
    "init_log": ("pyforge.pycaffe.util", "init_log"),
    "layer_type_list": ("pyforge.pycaffe.util", "layer_type_list"),
    "Timer": ("pyforge.pycaffe.util", "Timer"),
    "Layer": ("pyforge.layers.python_layer", "PythonLayerBase"),
    "NetSpec": ("pyforge.pycaffe.net_spec", "NetSpec"),
    "params": ("pyforge.pycaffe.net_spec", "params"),
    "to_proto": ("pyforge.pycaffe.net_spec", "to_proto"),
    "Classifier": ("pyforge.pycaffe.classifier", "Classifier"),
    "net_spec": ("pyforge.pycaffe.net_spec", None),
    "draw": ("pyforge.pycaffe.draw", None),
    "classifier": ("pyforge.pycaffe.classifier", None),
    "io": ("pyforge.io", None),
    "proto": ("pyforge.proto", None),
}


def __getattr__(name: str):
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pyforge' has no attribute {name!r}") from None
    module = _importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY) | {"layers", "log"})


class _LayersNamespace:
    """``pyforge.layers`` as pycaffe scripts use ``caffe.layers``: NetSpec's layer factory
    (``layers.Convolution(bottom, ...)``).

    The name is also pyforge's package of layer implementations; attributes that package has
    (its submodules, ``LAYERS``, ``register_layer``, ...) are answered from it once it is
    imported, so code that reaches the package through ``pyforge.layers.<name>`` keeps working.
    ``from pyforge.layers import X`` and ``import pyforge.layers.conv`` always get the package.
    """

    def __getattr__(self, name: str):
        package = _sys.modules.get("pyforge.layers")
        if package is not None and name in vars(package):
            return vars(package)[name]
        if name.startswith("__"):
            raise AttributeError(name)
        from .pycaffe.net_spec import layers

        return getattr(layers, name)

    def __repr__(self) -> str:
        return "<pyforge.layers: NetSpec's layer factory (and pyforge's layer package)>"


class _LogFunction:
    """``pyforge.log`` as pycaffe scripts use ``caffe.log(message)``; its attributes are those
    of pyforge's logging module, ``pyforge/log.py``."""

    def __call__(self, message: str) -> None:
        from .pycaffe.util import log

        log(message)

    def __getattr__(self, name: str):
        module = _importlib.import_module("pyforge.log")
        try:
            return vars(module)[name]
        except KeyError:
            raise AttributeError(f"module 'pyforge.log' has no attribute {name!r}") from None

    def __repr__(self) -> str:
        return "<pyforge.log: pycaffe's log(message) (and pyforge's log module)>"


# Names that are pyforge submodules and also pycaffe objects.
_SHADOWED = {"layers": _LayersNamespace(), "log": _LogFunction()}


def _shadowed(name: str) -> property:
    def get(module):
        return _SHADOWED[name]

    def keep_aside(module, submodule) -> None:
        # The import system binds a subpackage to its parent's attribute after importing it;
        # the pycaffe meaning must win, so the binding is kept aside instead.
        module.__dict__[f"_{name}_module"] = submodule

    return property(get, keep_aside)


class _PyforgeModule(_types.ModuleType):
    layers = _shadowed("layers")
    log = _shadowed("log")


_sys.modules[__name__].__class__ = _PyforgeModule
