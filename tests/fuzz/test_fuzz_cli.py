"""The worst inputs the fuzzers found, through the command line (pyforge.cli.main).

Whatever the input, ``pyforge train/test/time`` must exit non-zero with no Python traceback on
stderr. Inputs that hit a known bug (test_regressions.py) currently end in ``pyforge: internal
error: ...`` (exit 1): still no traceback, which is what is checked here.
"""

from __future__ import annotations

import json
from collections import Counter

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyforge.cli import main
from pyforge.errors import EXIT_ERROR, PyforgeError
from pyforge.proto import caffe_pb2, read_net_param

from ._harness import (
    FUZZ_DATA,
    REFERENCE,
    TALLY,
    check_rule,
    fuzz_settings,
    hang_guard,
    text_mutation,
)
from .test_fuzz_prototxt import NET_TEXT, check_known_hang

CAFFEMODEL = REFERENCE / "init" / "snap_iter_0.caffemodel"
TINY_NET = ('name: "tiny"\n'
            'layer { name: "x" type: "DummyData" top: "x" top: "label" dummy_data_param { '
            'shape { dim: 2 dim: 3 } shape { dim: 2 } '
            'data_filler { type: "constant" value: 1 } } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
            'inner_product_param { num_output: 2 } }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "y" bottom: "label" '
            'top: "loss" }\n')
SOLVER = ('net: "tiny.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 2\n'
          'snapshot_prefix: "snap"\n')


def run_cli(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    with hang_guard(), np.errstate(all="ignore"):
        code = main(argv)
    return code, capsys.readouterr().err


def assert_clean_failure(code: int, err: str) -> None:
    assert code != 0, f"exit status 0 for a bad input; stderr:\n{err[-2000:]}"
    assert "Traceback" not in err, f"a traceback on stderr:\n{err[-4000:]}"
    assert any(line.startswith("pyforge: ") for line in err.splitlines()), (
        f"no 'pyforge: error' line on stderr:\n{err[-2000:]}")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch folder with a tiny net and its solver, as the current folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYFORGE_DEBUG", raising=False)
    (tmp_path / "tiny.prototxt").write_text(TINY_NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    return tmp_path


def write(folder, name: str, data: str | bytes) -> str:
    path = folder / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return str(path)


def tiny_weights(folder, short: bool = False) -> str:
    """Weights for TINY_NET; with ``short``, its weight blob lacks one value."""
    net = caffe_pb2.NetParameter(name="tiny")
    layer = net.layer.add(name="ip", type="InnerProduct")
    for shape in ((2, 3), (2,)):
        blob = layer.blobs.add()
        blob.shape.dim.extend(shape)
        blob.data.extend([0.1] * int(np.prod(shape)))
    if short:
        layer.blobs[0].data.pop()
    return write(folder, "tiny.caffemodel", net.SerializeToString())


def state_h5_iter_empty(folder) -> str:
    path = folder / "bad.solverstate.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("iter", data=np.zeros(0, np.int32))
        f.create_group("history")
    return str(path)


def state_json_list(folder) -> str:
    state = caffe_pb2.SolverState(iter=1, pyforge_state=json.dumps([]).encode())
    for shape in ((2, 3), (2,)):
        blob = state.history.add()
        blob.shape.dim.extend(shape)
        blob.data.extend([0.0] * int(np.prod(shape)))
    return write(folder, "bad.solverstate", state.SerializeToString())


def hdf5_net_list_not_utf8(folder) -> str:
    write(folder, "list.txt", b"\xff\xfe f0.h5")
    return write(folder, "h5.prototxt", 'layer { name: "h5" type: "HDF5Data" top: "data" '
                                        'hdf5_data_param { source: "list.txt" batch_size: 2 } }')


HUGE_INPUT = ('layer { name: "x" type: "Input" top: "x" input_param { '
              'shape { dim: 1000000 dim: 1000000 dim: 1000000 } } }')
ZERO_BATCH_SPP = ('layer { name: "x" type: "Input" top: "x" input_param { '
                  'shape { dim: 0 dim: 2 dim: 4 dim: 4 } } }\n'
                  'layer { name: "s" type: "SPP" bottom: "x" top: "y" '
                  'spp_param { pyramid_height: 2 } }')

#: name -> function(folder) giving the argv; each is one of the worst inputs found.
CASES = {
    "huge_input_shape": lambda d: [
        "test", "--model", write(d, "net.prototxt", HUGE_INPUT), "--weights", tiny_weights(d),
        "--iterations", "1"],
    "caffemodel_blob_short": lambda d: [
        "test", "--model", "tiny.prototxt", "--weights", tiny_weights(d, short=True),
        "--iterations", "1"],
    "caffemodel_truncated": lambda d: [
        "test", "--model", "tiny.prototxt", "--iterations", "1",
        "--weights", write(d, "t.caffemodel", CAFFEMODEL.read_bytes()[:777])],
    "caffemodel_h5_corrupt": lambda d: [
        "test", "--model", "tiny.prototxt", "--iterations", "1",
        "--weights", str(FUZZ_DATA / "corrupt_weights.caffemodel.h5")],
    "solverstate_h5_iter_empty": lambda d: [
        "train", "solver.prototxt", "--snapshot", state_h5_iter_empty(d)],
    "solverstate_json_list": lambda d: [
        "train", "solver.prototxt", "--snapshot", state_json_list(d)],
    "solverstate_random_bytes": lambda d: [
        "train", "solver.prototxt", "--snapshot", write(d, "x.solverstate", b"\xff" * 33)],
    "hdf5_list_not_utf8": lambda d: [
        "test", "--model", hdf5_net_list_not_utf8(d), "--weights", tiny_weights(d),
        "--iterations", "1"],
    "solver_is_a_caffemodel": lambda d: ["train", str(CAFFEMODEL)],
    "solver_lr_policy_unknown": lambda d: [
        "train", write(d, "bad_solver.prototxt", SOLVER.replace('"fixed"', '"bogus"'))],
    "solver_truncated": lambda d: ["train", write(d, "bad_solver.prototxt", SOLVER[:37])],
    "net_with_invalid_utf8": lambda d: [
        "time", "--model", write(d, "bin.prototxt", TINY_NET.encode()[:50] + b"\xc3\x28"
                                 + TINY_NET.encode()[50:]), "--iterations", "1"],
    "gaussian_std_negative": lambda d: [
        "time", "--model", write(d, "net.prototxt", TINY_NET.replace(
            'type: "constant" value: 1', 'type: "gaussian" std: -1')), "--iterations", "1"],
}




def test_empty_batch_runs_as_in_caffe(workdir, capsys):
    """A zero-sized batch (Caffe allows it, e.g. after a Filter) runs and gives empty tops."""
    code, err = run_cli(["time", "--model", write(workdir, "net.prototxt", ZERO_BATCH_SPP),
                         "--iterations", "1"], capsys)
    assert code == 0 and "Traceback" not in err


@pytest.mark.parametrize("case", sorted(CASES))
def test_worst_inputs_fail_cleanly_through_the_cli(workdir, capsys, case):
    code, err = run_cli(CASES[case](workdir), capsys)
    assert_clean_failure(code, err)
    assert code == EXIT_ERROR, f"exit status {code}, expected {EXIT_ERROR} for bad input"
    tally = TALLY.setdefault("CLI worst cases", Counter())
    tally["internal error" if "pyforge: internal error" in err else "pyforge: error"] += 1


@fuzz_settings(25)
@given(st.sampled_from(["zoo", "cifar10_quick"]).flatmap(lambda n: text_mutation(NET_TEXT[n])))
def test_mutated_net_through_pyforge_time(workdir, capsys, data):
    """``pyforge time --model=<mutated net>``: exit 0, or non-zero with no traceback."""
    path = workdir / "mutated.prototxt"
    path.write_bytes(data)

    def run() -> None:
        try:
            check_known_hang(read_net_param(path))
        except PyforgeError:
            pass  # the CLI reports it; run it to see how
        code, err = run_cli(["time", "--model", str(path), "--iterations", "1"], capsys)
        if code != 0:
            assert_clean_failure(code, err)

    check_rule("net prototxt -> pyforge time (CLI)", run, data=data)
