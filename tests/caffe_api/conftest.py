"""Fixtures for the pycaffe API tests: paths in the unpacked reference folder, fresh switches."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

LENET = "lenet/lenet_train_test.prototxt"
LENET_DEPLOY = "shapes/examples_mnist_lenet.prototxt"  # LeNet with an Input layer (64x1x28x28)
INIT_WEIGHTS = "init/snap_iter_0.caffemodel"

SOLVER = """net: "lenet/lenet_train_test.prototxt"
test_iter: 2
test_interval: {test_interval}
display: 1
max_iter: {max_iter}
random_seed: 1701
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
snapshot_after_train: false
snapshot_prefix: "{prefix}"
{extra}
"""


@pytest.fixture(autouse=True)
def fresh_switches():
    """pycaffe's switches (the random seed ...) are process-wide: restore them after a test."""
    from caffe._caffe import SWITCHES

    saved = {f.name: getattr(SWITCHES, f.name) for f in dataclasses.fields(SWITCHES)}
    yield
    for name, value in saved.items():
        setattr(SWITCHES, name, value)


def write_solver(folder: Path, max_iter: int = 5, test_interval: int = 1000,
                 extra: str = "") -> str:
    """A LeNet solver prototxt (Caffe's lenet_solver settings) snapshotting into ``folder``."""
    path = folder / "solver.prototxt"
    path.write_text(SOLVER.format(max_iter=max_iter, test_interval=test_interval,
                                  prefix=folder / "snap", extra=extra))
    return str(path)
