"""The ``caffe`` package: pycaffe's names and module layout, installed with pyforge; and
``import pyforge as caffe``, the thin alias that remains."""

from __future__ import annotations

import fnmatch
import importlib
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import caffe
import pyforge
from pyforge.log import get_logger
from tests.logcapture import capture_log

ROOT = Path(__file__).resolve().parents[2]

#: pycaffe 1.0's top-level names (python/caffe/__init__.py).
PYCAFFE_NAMES = (
    "Net", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver", "NCCL", "Timer", "init_log", "log", "set_mode_cpu", "set_mode_gpu",
    "set_device", "Layer", "get_solver", "layer_type_list", "set_random_seed", "solver_count",
    "set_solver_count", "solver_rank", "set_solver_rank", "set_multiprocess", "has_nccl",
    "__version__", "TRAIN", "TEST", "Classifier", "Detector", "io", "layers", "params",
    "NetSpec", "to_proto",
)


def _fresh_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout.strip()


def test_pycaffes_names():
    from pyforge.layers.python_layer import PythonLayerBase
    from pyforge.proto import caffe_pb2

    for name in PYCAFFE_NAMES:
        assert getattr(caffe, name) is not None, name
    assert (caffe.TRAIN, caffe.TEST) == (caffe_pb2.TRAIN, caffe_pb2.TEST) == (0, 1)
    assert caffe.Layer is PythonLayerBase
    assert caffe.__version__ == pyforge.__version__
    assert not caffe.has_nccl() and (caffe.solver_count(), caffe.solver_rank()) == (1, 0)
    with pytest.raises(AttributeError):
        _ = caffe.no_such_thing


def test_pycaffes_module_layout():
    """Each module a pycaffe script imports, with the names it takes from it."""
    import caffe.draw
    import caffe.proto.caffe_pb2
    from caffe import layers as L  # noqa: N812
    from caffe import params as P  # noqa: N812
    from caffe.classifier import Classifier
    from caffe.coord_map import coord_map_from_to, crop
    from caffe.detector import Detector
    from caffe.io import Transformer, load_image
    from caffe.net_spec import NetSpec, to_proto
    from caffe.proto import caffe_pb2
    from caffe.pycaffe import Net, SGDSolver
    from pyforge.proto import caffe_pb2 as pyforge_pb2

    assert (Net, SGDSolver, Classifier, Detector) == (caffe.Net, caffe.SGDSolver,
                                                      caffe.Classifier, caffe.Detector)
    assert (NetSpec, to_proto, L, P) == (caffe.NetSpec, caffe.to_proto, caffe.layers,
                                         caffe.params)
    assert caffe.draw.draw_net_to_file and Transformer and load_image
    assert coord_map_from_to and crop
    # The same message classes as the engine's: messages pass between both freely.
    assert caffe.proto.caffe_pb2.NetParameter is caffe_pb2.NetParameter
    assert caffe_pb2.NetParameter is pyforge_pb2.NetParameter
    assert caffe_pb2.PoolingParameter.MAX == P.Pooling.MAX == 0
    with pytest.raises(AttributeError):
        _ = caffe.pycaffe.NoSuchSolver


def test_caffe_is_installed_with_pyforge():
    """The wheel's packages: pyproject's package patterns (setuptools' find, fnmatch-style)
    take caffe and caffe.proto, and no test package."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = [d for d in ROOT.iterdir() if d.is_dir() and not d.name.startswith((".", "build"))]
    packages = {".".join(init.parent.relative_to(ROOT).parts)
                for top in tops for init in top.rglob("__init__.py")}
    found = {p for p in packages if any(fnmatch.fnmatchcase(p, pattern) for pattern in include)}
    assert {"caffe", "caffe.proto", "pyforge", "pyforge.layers", "pyforge.insight"} <= found
    assert not any(p.split(".")[0] in ("tests", "benchmarks") for p in found)


def test_import_pyforge_stays_cheap_and_the_engine_never_imports_caffe():
    modules = "('numpy', 'google.protobuf', 'caffe', 'pyforge.net', 'matplotlib')"
    code = f"import sys, pyforge; print(sorted(m for m in {modules} if m in sys.modules))"
    assert _fresh_python(code) == "[]"
    code = ("import sys, pyforge.net, pyforge.solvers, pyforge.io.snapshot, pyforge.api, "
            "pyforge.cli; print('caffe' in sys.modules)")
    assert _fresh_python(code) == "False"


def test_import_pyforge_as_caffe_is_a_thin_alias():
    for name in ("Net", "SGDSolver", "get_solver", "NetSpec", "params", "to_proto", "Layer",
                 "Classifier", "Detector", "set_mode_gpu", "draw", "coord_map", "net_spec"):
        assert getattr(pyforge, name) is getattr(caffe, name), name
        assert name in dir(pyforge)
    assert pyforge.proto.caffe_pb2.NetParameter is caffe.proto.caffe_pb2.NetParameter
    assert (pyforge.TRAIN, pyforge.TEST) == (caffe.TRAIN, caffe.TEST)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        _ = pyforge.no_such_thing


def test_engine_modules_that_pycaffe_names_point_to_import_caffe():
    """pyforge.io, pyforge.layers and pyforge.log are the engine's own modules; pycaffe's
    names asked of them say where those are."""
    import pyforge.io
    import pyforge.layers
    import pyforge.log

    with pytest.raises(AttributeError, match=r"'Transformer'.*`import caffe`, then "
                                             r"caffe.io.Transformer"):
        _ = pyforge.io.Transformer
    with pytest.raises(AttributeError, match=r"'Convolution'.*from caffe import layers as L"):
        _ = pyforge.layers.Convolution
    with pytest.raises(AttributeError, match="has no attribute 'nothing'$"):
        _ = pyforge.io.nothing
    assert pyforge.layers.LAYERS is importlib.import_module("pyforge.layers.base").LAYERS
    assert not callable(pyforge.log) and callable(caffe.log)


def test_the_alias_refuses_another_caffe_first_on_sys_path(monkeypatch, tmp_path):
    other = tmp_path / "caffe"
    other.mkdir()
    (other / "__init__.py").write_text("# BVLC's pycaffe stand-in\n")
    monkeypatch.delitem(sys.modules, "caffe")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match=rf"another 'caffe' comes first on sys.path "
                                          rf"\({other / '__init__.py'}\)"):
        _ = pyforge.Net
    assert importlib.import_module("caffe").__file__ == str(other / "__init__.py")


def test_set_mode_gpu_and_set_device_are_accepted_with_one_warning():
    with capture_log() as log:
        caffe.set_mode_gpu()
        caffe.set_device(1)
        caffe.set_mode_gpu()
        caffe.set_mode_cpu()
    warnings = [m for m in log.messages if "ignored" in m]
    assert warnings == ["caffe.set_mode_gpu() ignored: pyforge computes on the CPU"]


def test_nccl_is_absent_as_in_a_caffe_built_without_it():
    from pyforge.errors import PyforgeError

    with pytest.raises(PyforgeError, match="no NCCL"):
        caffe.NCCL(None, "")


def test_init_log_prints_glog_lines(capsys):
    logger = get_logger()
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        caffe.init_log()
        caffe.log("hello from pycaffe")
        err = capsys.readouterr().err
        assert err.startswith("I") and err.rstrip().endswith("] hello from pycaffe")
        caffe.init_log(1, True)  # pycaffe's (level, stderr) form: INFO is dropped
        caffe.log("not shown")
        assert capsys.readouterr().err == ""
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


def test_layer_type_list_has_caffes_types():
    types = caffe.layer_type_list()
    assert {"Data", "Convolution", "InnerProduct", "Python", "Crop", "Deconvolution"} <= set(types)
    assert types == sorted(types)
