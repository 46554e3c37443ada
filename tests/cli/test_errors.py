"""Bad input: one clear line on stderr, a non-zero exit and no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pyforge.cli import main

SOLVER = """net: "{net}"
base_lr: 0.01
lr_policy: "{policy}"
{extra}
max_iter: 1
display: 1
snapshot_after_train: false
random_seed: 1
"""

NET = """name: "tiny"
layer {{ name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param {{ shape {{ dim: 2 dim: 3 }} shape {{ dim: 2 dim: 1 }}
    data_filler {{ type: "gaussian" }} }} }}
layer {{ name: "ip" type: "{ip_type}" bottom: "x" top: "z"
  inner_product_param {{ num_output: 1 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }}
{extra}
"""


def run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def error_lines(err: str) -> list[str]:
    """The lines pyforge printed as the error (log lines are glog-prefixed)."""
    return [line for line in err.splitlines() if line.startswith("pyforge:")]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def make_solver(tmp_path, policy="fixed", extra="", ip_type="InnerProduct", net_extra=""):
    net = write(tmp_path, "net.prototxt", NET.format(ip_type=ip_type, extra=net_extra))
    return write(tmp_path, "solver.prototxt", SOLVER.format(net=net, policy=policy, extra=extra))


def assert_one_error(code, err, *fragments):
    assert code != 0
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_unknown_layer_type_suggests_the_closest_types(tmp_path, capsys):
    code, err = run(["train", make_solver(tmp_path, ip_type="InnerProdukt")], capsys)
    line = assert_one_error(code, err, "layer 'ip'", "unknown layer type 'InnerProdukt'",
                            "did you mean 'InnerProduct'", "layer types are known")
    # The full list of 70-odd types would make a line of a thousand characters.
    assert "SoftmaxWithLoss" not in line and len(line) < 200


def test_unknown_field_gives_file_line_column_and_caret(tmp_path, capsys):
    solver = make_solver(tmp_path, extra="momentun: 0.9")
    code, err = run(["train", "--solver=" + solver], capsys)
    line = assert_one_error(code, err, f"{solver}:4:1:", 'no field named "momentun"',
                            "did you mean 'momentum'")
    assert line
    rest = err.splitlines()[err.splitlines().index(line) + 1:]
    assert rest[0].strip() == "momentun: 0.9"
    assert rest[1].strip() == "^" and rest[1].index("^") == rest[0].index("m")


def test_missing_data_source(tmp_path, capsys):
    net = write(tmp_path, "net.prototxt", """name: "n"
layer { name: "mnist" type: "Data" top: "data" top: "label"
  data_param { source: "no/such_lmdb" batch_size: 4 backend: LMDB } }""")
    solver = write(tmp_path, "solver.prototxt",
                   SOLVER.format(net=net, policy="fixed", extra=""))
    code, err = run(["train", solver], capsys)
    assert_one_error(code, err, "layer 'mnist' (Data)", "no/such_lmdb", "does not exist")


def test_missing_solver_file(tmp_path, capsys):
    code, err = run(["train", str(tmp_path / "nope.prototxt")], capsys)
    assert_one_error(code, err, "nope.prototxt", "no such solver file")
    assert code == 2  # a file named on the command line: the command line is wrong


def test_missing_net_file(tmp_path, capsys):
    solver = write(tmp_path, "solver.prototxt",
                   SOLVER.format(net=str(tmp_path / "absent_net.prototxt"), policy="fixed",
                                 extra=""))
    code, err = run(["train", solver], capsys)
    assert_one_error(code, err, "absent_net.prototxt", "no such file")


def test_missing_weights_file(tmp_path, capsys):
    code, err = run(["train", make_solver(tmp_path), "--weights", str(tmp_path / "w.caffemodel")],
                    capsys)
    assert_one_error(code, err, "w.caffemodel")


def test_weights_shape_mismatch_names_layer_and_both_shapes(in_caffe_ref, tmp_path, capsys):
    net = (in_caffe_ref / "lenet" / "lenet_train_test.prototxt").read_text()
    net = net.replace("num_output: 500", "num_output: 400")
    write(tmp_path, "lenet.prototxt", net)
    solver = write(tmp_path, "solver.prototxt",
                   SOLVER.format(net=str(tmp_path / "lenet.prototxt"), policy="fixed", extra=""))
    code, err = run(["train", solver, "-weights=init/snap_iter_0.caffemodel"], capsys)
    line = assert_one_error(code, err, "layer 'ip1'", "shape mismatch", "500 800", "400 800")
    assert "layer 'ip2'" in line and "10 500" in line and "10 400" in line  # all mismatches


@pytest.mark.parametrize("policy,extra,expected", [
    ("sigmoid", "gamma: -0.1\nstepsize: 10", "gamma >= 0"),
    ("sigmoid", "gamma: 0.1", "stepsize > 0"),
    ("step", "gamma: 0.1", "stepsize > 0"),
    ("step", "gamma: -1\nstepsize: 10", "gamma >= 0"),
    ("inv", "gamma: -0.0001\npower: 0.75", "gamma >= 0"),
    ("exp", "gamma: -0.5", "gamma >= 0"),
    ("multistep", "gamma: 0.1\nstepvalue: 20\nstepvalue: 10", "increasing stepvalues"),
    ("poly", "power: 2\nmax_iter: 0", "max_iter > 0"),
    ("cosine", "", "unknown lr_policy 'cosine'"),
])
def test_lr_policy_parameter_checks(tmp_path, capsys, policy, extra, expected):
    solver = make_solver(tmp_path, policy=policy, extra=extra)
    if policy == "poly":  # the template sets max_iter: 1; override it
        path = tmp_path / "solver.prototxt"
        path.write_text(path.read_text().replace("max_iter: 1\n", ""))
    code, err = run(["train", solver], capsys)
    assert_one_error(code, err, f"lr_policy '{policy}'" if policy != "cosine" else "cosine",
                     expected)


def test_snapshot_and_weights_together_refused(tmp_path, capsys):
    code, err = run(["train", make_solver(tmp_path), "--snapshot=a.solverstate",
                     "--weights=b.caffemodel"], capsys)
    assert_one_error(code, err, "not both")


def test_resuming_from_a_caffemodel_explains(tmp_path, capsys, in_caffe_ref):
    solver = str(in_caffe_ref / "runs" / "sgd_inv" / "solver.prototxt")
    code, err = run(["train", solver, "--snapshot=init/snap_iter_0.caffemodel"], capsys)
    assert_one_error(code, err, "weights-only", "--weights")


def test_debug_shows_the_traceback(tmp_path, capsys):
    code, err = run(["train", str(tmp_path / "nope.prototxt"), "--debug"], capsys)
    assert code != 0 and "Traceback" in err


def test_installed_command_exits_nonzero_without_traceback(tmp_path):
    exe = shutil.which("pyforge")
    argv = [exe] if exe else [sys.executable, "-m", "pyforge"]
    result = subprocess.run(argv + ["train", str(tmp_path / "missing.prototxt")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [f"pyforge: error: {tmp_path}/missing.prototxt: "
                                          "no such solver file"]
