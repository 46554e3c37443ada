"""pycaffe's API on pyforge: ``import caffe`` runs pycaffe scripts unchanged.

The package has pycaffe's layout and names: ``caffe.Net``, the solvers (``caffe.SGDSolver`` ...
``caffe.AdamSolver``, ``caffe.get_solver``), ``caffe.TRAIN``/``caffe.TEST``, the mode and
device switches, ``caffe.set_random_seed``, ``caffe.Layer`` (Python layers),
``caffe.init_log``/``caffe.log``, ``caffe.layer_type_list``, ``caffe.Timer``, ``caffe.io``,
``caffe.net_spec`` (``caffe.NetSpec``, ``caffe.layers``, ``caffe.params``,
``caffe.to_proto``), ``caffe.coord_map``, ``caffe.draw``, ``caffe.classifier``
(``caffe.Classifier``), ``caffe.detector`` (``caffe.Detector``) and ``caffe.proto.caffe_pb2``.

It is installed with pyforge (as Pillow installs ``PIL``) and computes with pyforge's engine;
the engine (the ``pyforge`` package) never imports it. Where BVLC's own pycaffe is installed
too, whichever ``caffe`` comes first on ``sys.path`` is imported; ``caffe.__file__`` tells.
"""

from pyforge.proto.caffe_pb2 import TEST, TRAIN

from . import coord_map, draw, io, net_spec, proto
from ._caffe import (
    NCCL,
    Layer,
    Timer,
    __version__,
    has_nccl,
    init_log,
    layer_type_list,
    log,
    set_device,
    set_mode_cpu,
    set_mode_gpu,
    set_multiprocess,
    set_random_seed,
    set_solver_count,
    set_solver_rank,
    solver_count,
    solver_rank,
)
from ._solver import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
    get_solver,
)
from .classifier import Classifier
from .detector import Detector
from .net_spec import NetSpec, layers, params, to_proto
from .pycaffe import Net

#: Marks this package as pyforge's (``import pyforge as caffe`` checks it is not BVLC's).
__pyforge__ = True

__all__ = [
    "AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "Classifier", "Detector", "Layer", "NCCL",
    "Net", "NesterovSolver", "NetSpec", "RMSPropSolver", "SGDSolver", "TEST", "TRAIN", "Timer",
    "__version__", "coord_map", "draw", "get_solver", "has_nccl", "init_log", "io",
    "layer_type_list", "layers", "log", "net_spec", "params", "proto", "set_device",
    "set_mode_cpu", "set_mode_gpu", "set_multiprocess", "set_random_seed", "set_solver_count",
    "set_solver_rank", "solver_count", "solver_rank", "to_proto",
]
