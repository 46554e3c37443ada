"""pyforge: a Caffe-compatible trainer in Python on a Numba engine.

pycaffe's API is the ``caffe`` package installed with pyforge: scripts ``import caffe``.

``import pyforge as caffe`` still works for the names that do not collide with pyforge's own
modules: ``pyforge.Net``, ``pyforge.SGDSolver``, ``pyforge.NetSpec``, ``pyforge.params`` ...
are the ``caffe`` package's objects, imported on first use. ``pyforge.io``, ``pyforge.layers``
and ``pyforge.log`` are pyforge's engine modules, not pycaffe's ``caffe.io``, ``caffe.layers``
and ``caffe.log``: scripts that use those need ``import caffe``.
"""

import importlib as _importlib

from .config import apply_thread_defaults

apply_thread_defaults()

__version__ = "0.1.0"

# caffe_pb2.TRAIN and caffe_pb2.TEST, without importing protobuf for two constants.
TRAIN = 0
TEST = 1

#: pycaffe's names that ``pyforge.<name>`` forwards to the ``caffe`` package.
_CAFFE_NAMES = frozenset({
    "Net", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver", "get_solver", "set_mode_cpu", "set_mode_gpu", "set_device", "set_random_seed",
    "solver_count", "set_solver_count", "solver_rank", "set_solver_rank", "set_multiprocess",
    "has_nccl", "init_log", "layer_type_list", "Timer", "NCCL", "Layer", "NetSpec", "params",
    "to_proto", "Classifier", "Detector", "net_spec", "draw", "classifier", "detector",
    "coord_map",
})


def __getattr__(name: str):
    if name in _CAFFE_NAMES:
        return getattr(_pycaffe(), name)
    if name == "proto":  # pyforge's own schema package, which is also caffe.proto's
        return _importlib.import_module("pyforge.proto")
    raise AttributeError(f"module 'pyforge' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | _CAFFE_NAMES | {"proto"})


def _pycaffe():
    """The ``caffe`` package installed with pyforge (not another one earlier on sys.path)."""
    caffe = _importlib.import_module("caffe")
    if not getattr(caffe, "__pyforge__", False):
        raise ImportError(f"`import pyforge as caffe` uses pyforge's 'caffe' package, but "
                          f"another 'caffe' comes first on sys.path "
                          f"({getattr(caffe, '__file__', '?')}); use that one with "
                          "`import caffe`, or put pyforge's first")
    return caffe
