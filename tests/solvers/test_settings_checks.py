"""Every number is checked before training: a NaN or infinite setting (solver fields, layer
settings, weights read from files) and an impossible value are bad input, one line naming the
file, the field (and layer) and the value, exit 1; never "training diverged at iteration 0"
(exit 3), which would point away from the cause."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pyforge import api
from pyforge.errors import DataError, SolverError
from pyforge.io.snapshot import read_weights
from pyforge.io.transform import DataTransformer
from pyforge.proto import caffe_pb2, write_binary_proto
from pyforge.solvers.sgd import SGDSolver
from tests.cli.test_errors import NET, SOLVER, assert_one_error, make_solver, run, write
from tests.logcapture import capture_log


def solver_with(tmp_path, extra: str, policy: str = "fixed") -> str:
    """The small net's solver with the fields in ``extra`` set (replacing the template's)."""
    path = make_solver(tmp_path, policy=policy)
    fields = {line.split(":")[0] for line in extra.splitlines()}
    kept = [line for line in Path(path).read_text().splitlines()
            if line.split(":")[0] not in fields]
    return write(tmp_path, "solver.prototxt", "\n".join(kept + extra.splitlines()) + "\n")


@pytest.mark.parametrize("extra,field,shown", [
    ("base_lr: nan", "base_lr", "nan"),
    ("base_lr: inf", "base_lr", "inf"),
    ("base_lr: -inf", "base_lr", "-inf"),
    ("momentum: nan", "momentum", "nan"),
    ("weight_decay: inf", "weight_decay", "inf"),
    ("gamma: nan", "gamma", "nan"),
    ("power: nan", "power", "nan"),
    ("clip_gradients: nan", "clip_gradients", "nan"),
    ("delta: nan", "delta", "nan"),
    ("momentum2: inf", "momentum2", "inf"),
    ("rms_decay: nan", "rms_decay", "nan"),
    ("base_lr: 1e39", "base_lr", "inf"),  # too large for a float: parsed as inf
])
def test_non_finite_solver_settings_are_bad_input(tmp_path, capsys, extra, field, shown):
    solver = solver_with(tmp_path, extra)
    code, err = run(["train", solver], capsys)
    assert_one_error(code, err, f"{solver}: {field} must be a finite number, found {shown}")
    assert code == 1 and "diverged" not in err


@pytest.mark.parametrize("extra,expected", [
    ("max_iter: -5", "max_iter must be >= 0 (iterations), found -5"),
    ("base_lr: -0.01", "base_lr must be >= 0 (a negative rate climbs the loss), found -0.01"),
    ("display: -1", "display must be >= 0 (0: no display lines), found -1"),
    ("snapshot: -1", "snapshot must be >= 0 (0: no periodic snapshots), found -1"),
    ("weight_decay: -0.1", "weight_decay must be >= 0 (a negative decay grows the weights)"),
    ("momentum: -0.5", "momentum must be >= 0, found -0.5"),
    ("test_interval: -1", "test_interval must be >= 0"),
    ("early_stop_patience: -1", "early_stop_patience must be >= 0"),
    ("stepvalue: -3", "stepvalue must be >= 0 (iterations), found [-3]"),
])
def test_impossible_solver_values_are_refused(tmp_path, capsys, extra, expected):
    solver = solver_with(tmp_path, extra)
    code, err = run(["train", solver], capsys)
    assert_one_error(code, err, f"{solver}: {expected}")
    assert code == 1


@pytest.mark.parametrize("solver_type", ["AdaGrad", "RMSProp", "AdaDelta", "Adam"])
def test_adaptive_solvers_need_a_positive_delta(tmp_path, capsys, solver_type):
    solver = solver_with(tmp_path, f'type: "{solver_type}"\ndelta: 0\n'
                         + ("momentum: 0.9\n" if solver_type in ("AdaDelta", "Adam") else ""))
    code, err = run(["train", solver], capsys)
    assert_one_error(code, err, f"{solver_type} needs delta > 0", "found delta: 0")


def test_sgd_ignores_delta_and_warns_about_momentum_of_one(tmp_path):
    param = caffe_pb2.SolverParameter(delta=0, momentum=1.0, base_lr=0.1, lr_policy="fixed")
    SGDSolver.check_params(param)  # delta is not used by SGD
    solver = solver_with(tmp_path, "momentum: 1.0")
    with capture_log() as log:
        api.train(solver)
    assert "momentum: 1 >= 1: the update history never decays" in log.text


@pytest.mark.parametrize("filler,expected", [
    ('weight_filler { type: "gaussian" std: nan }',
     "layer 'ip' (InnerProduct): inner_product_param.weight_filler.std must be a finite number, "
     "found nan"),
    ('weight_filler { type: "uniform" min: nan max: 1 }',
     "layer 'ip' (InnerProduct): inner_product_param.weight_filler.min must be a finite number, "
     "found nan"),
    ('weight_filler { type: "xavier" } bias_filler { type: "constant" value: inf }',
     "layer 'ip' (InnerProduct): inner_product_param.bias_filler.value must be a finite number, "
     "found inf"),
])
def test_non_finite_filler_settings_name_the_layer_and_field(tmp_path, capsys, filler,
                                                           expected):
    net = NET.format(ip_type="InnerProduct", extra="").replace(
        'weight_filler { type: "xavier" }', filler)
    write(tmp_path, "net.prototxt", net)
    solver = write(tmp_path, "solver.prototxt", SOLVER.format(
        net=tmp_path / "net.prototxt", policy="fixed", extra=""))
    code, err = run(["train", solver], capsys)
    assert_one_error(code, err, f"{tmp_path / 'net.prototxt'}: {expected}")
    assert code == 1 and "diverged" not in err


@pytest.mark.parametrize("layer_extra,expected", [
    ("loss_weight: nan", "layer 'loss' (EuclideanLoss): loss_weight[0] must be a finite number"),
    ("param { lr_mult: inf }", "layer 'loss' (EuclideanLoss): param[0].lr_mult must be a finite"),
])
def test_non_finite_loss_weight_and_multipliers(tmp_path, capsys, layer_extra, expected):
    net = NET.format(ip_type="InnerProduct", extra="").replace(
        'top: "loss" }', f'top: "loss" {layer_extra} }}')
    write(tmp_path, "net.prototxt", net)
    solver = write(tmp_path, "solver.prototxt", SOLVER.format(
        net=tmp_path / "net.prototxt", policy="fixed", extra=""))
    code, err = run(["train", solver], capsys)
    assert_one_error(code, err, expected)
    assert code == 1


@pytest.mark.parametrize("transform,expected", [
    ("scale: nan", "transform_param.scale must be a finite number, found nan"),
    ("mean_value: 1 mean_value: inf mean_value: 2",
     "transform_param.mean_value[1] must be a finite number, found inf"),
])
def test_non_finite_transform_values(tmp_path, capsys, transform, expected):
    """``pyforge time`` builds the net too: the same check, the same exit status."""
    net = write(tmp_path, "net.prototxt", f"""name: "n"
layer {{ name: "d" type: "Data" top: "data" top: "label" transform_param {{ {transform} }}
  data_param {{ source: "nowhere" batch_size: 2 backend: LMDB }} }}""")
    code, err = run(["time", f"--model={net}"], capsys)
    assert_one_error(code, err, f"{net}: layer 'd' (Data): {expected}")
    assert code == 1


def test_non_finite_mean_file_is_refused(tmp_path):
    mean = caffe_pb2.BlobProto(num=1, channels=1, height=2, width=2,
                               data=[1.0, math.nan, 2.0, math.inf])
    write_binary_proto(tmp_path / "mean.binaryproto", mean)
    param = caffe_pb2.TransformationParameter(mean_file=str(tmp_path / "mean.binaryproto"))
    with pytest.raises(DataError, match=r"layer 'd': mean_file '.*mean\.binaryproto' holds 2 "
                                        r"NaN or infinite value\(s\) of 4"):
        DataTransformer(param, caffe_pb2.TRAIN, 1, "layer 'd'")


@pytest.fixture
def trained(tmp_path):
    """A solver on the small net, trained for 2 iterations with a snapshot at each."""
    solver = make_solver(tmp_path, extra=f'snapshot: 1\nsnapshot_prefix: "{tmp_path}/snap"')
    path = tmp_path / "solver.prototxt"
    path.write_text(path.read_text().replace("max_iter: 1\n", "max_iter: 2\n"))
    api.train(solver)
    return solver, tmp_path


def test_nan_in_a_weights_file_is_bad_input_for_train_and_test(trained, capsys):
    solver, folder = trained
    model = read_weights(str(folder / "snap_iter_2.caffemodel"))
    ip = next(layer for layer in model.layer if layer.name == "ip")
    ip.blobs[0].data[2] = math.nan
    ip.blobs[1].data[0] = math.inf
    bad = folder / "bad.caffemodel"
    write_binary_proto(bad, model)
    code, err = run(["train", solver, f"--weights={bad}"], capsys)
    assert_one_error(code, err, f"{bad}: layer 'ip' param 0 has 1 NaN among its 3 values (the "
                                "first at [0, 2]) (and 1 more blob(s)); a diverged run or a "
                                "damaged file")
    assert code == 1 and "training diverged" not in err
    code, err = run(["test", f"--model={folder / 'net.prototxt'}", f"--weights={bad}",
                     "--iterations=1"], capsys)
    assert_one_error(code, err, f"{bad}: layer 'ip' param 0 has 1 NaN")
    assert code == 1


def test_nan_in_a_resumed_history_is_bad_input(trained, capsys):
    solver, folder = trained
    from pyforge.io.snapshot import read_solver_state, write_solver_state

    state = read_solver_state(str(folder / "snap_iter_1.solverstate"))
    state.history[1] = np.full_like(state.history[1], np.inf)
    write_solver_state(str(folder / "snap_iter_1.solverstate"), state)
    code, err = run(["train", solver, f"--snapshot={folder / 'snap_iter_1.solverstate'}"],
                    capsys)
    assert_one_error(code, err, "snap_iter_1.solverstate: the history of layer 'ip' param 1 "
                                "has 1 infinite among its 1 values (the first at [0])")
    assert code == 1


def test_solver_check_params_reports_the_first_non_finite_field_and_how_many_more():
    param = caffe_pb2.SolverParameter(base_lr=math.nan, momentum=math.inf, lr_policy="fixed")
    with pytest.raises(SolverError, match=r"^base_lr must be a finite number, found nan \(and 1 "
                                          r"more non-finite field\(s\)\)$"):
        SGDSolver.check_params(param)
