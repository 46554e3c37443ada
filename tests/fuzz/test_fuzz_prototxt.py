"""Fuzzing the prototxt readers, the net builder and the solver builder.

Mutated versions of real prototxts (lines deleted, duplicated, swapped or moved; numbers made
negative, zero or huge; enum values, type strings and other strings replaced; truncated; junk
text or invalid UTF-8 inserted) must each load or raise a PyforgeError that names the file or
the layer. Nets that build also run one forward and backward pass, as ``pyforge time`` would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, read_net_param, read_solver_param
from pyforge.solvers import create_solver

from ._harness import (
    FUZZ_DATA,
    REFERENCE,
    KnownHang,
    check_rule,
    fuzz_settings,
    quiet_logger,
    text_mutation,
)

NET_SEEDS = {
    "lenet": REFERENCE / "lenet" / "lenet_train_test.prototxt",
    "cifar10_quick": REFERENCE / "shapes" / "examples_cifar10_cifar10_quick.prototxt",
    "cifar10_full": REFERENCE / "shapes" / "examples_cifar10_cifar10_full.prototxt",
    "zoo": FUZZ_DATA / "zoo_net.prototxt",
}
NET_TEXT = {name: path.read_text() for name, path in NET_SEEDS.items()}

SOLVER_SEEDS = {
    # Caffe's own solvers, pointed at a small net that needs no data files.
    name: (REFERENCE / "runs" / name / "solver.prototxt").read_text()
    .replace("lenet/lenet_train_test.prototxt", "net.prototxt")
    .replace(f"runs/{name}/snap", "snap")
    for name in ("sgd_inv", "adam", "nesterov", "sgd_step", "sgd_poly")
}
SOLVER_SEEDS["inline"] = (FUZZ_DATA / "solver_inline.prototxt").read_text()
SMALL_NET = (FUZZ_DATA / "lenet_dummy.prototxt").read_text()


#: An LRN layer with a local_size this large runs for minutes in a Numba kernel, where the
#: hang alarm cannot stop it (test_regressions.py::test_lrn_huge_local_size_does_not_hang).
LRN_HANG_SIZE = 100_001


def check_known_hang(param: caffe_pb2.NetParameter) -> None:
    """Raise KnownHang for a net that would hang in a Numba kernel (see LRN_HANG_SIZE)."""
    if any(layer.type == "LRN" and layer.lrn_param.local_size > LRN_HANG_SIZE
           for layer in param.layer):
        raise KnownHang("lrn-huge-local-size-hang")


def build_and_run(path: Path, phase: int, run: bool = True) -> None:
    """What ``pyforge time``/``test`` do with a net file: read, build, forward, backward."""
    param = read_net_param(path)
    param.state.phase = phase
    check_known_hang(param)
    net = Net(param, logger=quiet_logger(), source_file=str(path))
    try:
        if run:
            net.forward_loss()
            net.backward_all()
    finally:
        net.close()


def mutated_net():
    return st.sampled_from(sorted(NET_TEXT)).flatmap(
        lambda name: st.tuples(st.just(name), text_mutation(NET_TEXT[name])))


@fuzz_settings(200)
@given(mutated_net(), st.sampled_from([caffe_pb2.TRAIN, caffe_pb2.TEST]))
def test_mutated_net_builds_or_raises(in_caffe_ref, tmp_path, seed_and_text, phase):
    """read_net_param, then Net(param) with a phase, then one forward/backward pass. The
    reference folder is the working directory, so LeNet's LMDB sources exist."""
    name, data = seed_and_text
    path = tmp_path / f"{name}.prototxt"
    path.write_bytes(data)
    check_rule("net prototxt -> Net", lambda: build_and_run(path, phase),
               names=(str(path), "layer '"), data=data)


@pytest.mark.parametrize("name", sorted(NET_TEXT))
def test_net_seeds_build(in_caffe_ref, name):
    """The unmutated seeds build and run: the mutations start from valid nets."""
    for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        build_and_run(NET_SEEDS[name], phase)


def create_and_step(path: Path) -> None:
    param = read_solver_param(path)
    solver = create_solver(param, solver_file=str(path), logger=quiet_logger())
    try:
        # One iteration (with the initial test pass) unless the mutation made that a long
        # job: a million test iterations is what the file asks for, not a hang.
        heavy = any(n > 50 for n in param.test_iter) or param.iter_size > 50
        if not heavy:
            solver.step(1)
    finally:
        solver.close()


def mutated_solver():
    return st.sampled_from(sorted(SOLVER_SEEDS)).flatmap(
        lambda name: st.tuples(st.just(name), text_mutation(SOLVER_SEEDS[name])))


@fuzz_settings(120)
@given(mutated_solver())
def test_mutated_solver_creates_or_raises(tmp_path, monkeypatch, seed_and_text):
    """read_solver_param, then create_solver and one training step. The working directory is
    a scratch folder holding the small net, so snapshots and relative paths stay there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(SMALL_NET)
    name, data = seed_and_text
    path = tmp_path / f"{name}_solver.prototxt"
    path.write_bytes(data)
    check_rule("solver prototxt -> create_solver", lambda: create_and_step(path),
               names=(str(path), "layer '", "net.prototxt", "snap", ": no such file"),
               data=data)


@pytest.mark.parametrize("name", sorted(SOLVER_SEEDS))
def test_solver_seeds_create(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(SMALL_NET)
    path = tmp_path / "solver.prototxt"
    path.write_text(SOLVER_SEEDS[name])
    create_and_step(path)
