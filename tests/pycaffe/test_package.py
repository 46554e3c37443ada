"""`import pyforge as caffe`: pycaffe's names, loaded lazily."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import pyforge as caffe
from pyforge.log import get_logger


def test_import_pyforge_stays_cheap():
    code = ("import sys, pyforge; "
            "print(sorted(m for m in ('numpy', 'google.protobuf', 'pyforge.pycaffe', "
            "'pyforge.net', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_pycaffe_names():
    from pyforge.layers.python_layer import PythonLayerBase
    from pyforge.proto import caffe_pb2

    assert (caffe.TRAIN, caffe.TEST) == (caffe_pb2.TRAIN, caffe_pb2.TEST)
    assert caffe.proto.caffe_pb2 is caffe_pb2
    assert caffe.Layer is PythonLayerBase
    for name in ("Net", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
                 "AdaDeltaSolver", "AdamSolver", "get_solver", "set_mode_cpu", "set_mode_gpu",
                 "set_device", "set_random_seed", "NetSpec", "layers", "params", "to_proto",
                 "Classifier", "draw", "io", "init_log", "log", "Timer", "layer_type_list"):
        assert getattr(caffe, name) is not None, name
        assert name in dir(caffe)
    assert caffe.__version__ == "0.1.0"
    with pytest.raises(AttributeError):
        _ = caffe.no_such_thing


def test_layers_is_netspecs_factory_and_still_reaches_the_package():
    import pyforge.layers.base as base
    from pyforge import layers as L
    from pyforge.layers import LAYERS

    top = L.Convolution(L.Input(), num_output=1)
    assert type(top).__name__ == "Top"
    assert L.LAYERS is LAYERS  # attributes of the package of layer implementations
    assert L.base is base
    assert "conv1" in str(caffe.to_proto(L.ReLU(L.Input(), name="conv1")))


def test_log_is_pycaffes_function_and_still_reaches_the_module():
    import pyforge.log

    assert callable(caffe.log)
    assert caffe.log.get_logger is pyforge.log.get_logger
    assert pyforge.log.fmt(0.5) == "0.5"


def test_init_log_prints_glog_lines(capsys):
    logger = get_logger()
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        caffe.init_log()
        caffe.log("hello from pycaffe")
        err = capsys.readouterr().err
        assert err.startswith("I") and err.rstrip().endswith("] hello from pycaffe")
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    assert logging.getLogger("pyforge").level == saved[1]


def test_timer():
    timer = caffe.Timer()
    timer.start()
    timer.stop()
    assert timer.ms >= 0 and timer.seconds == timer.ms / 1000
