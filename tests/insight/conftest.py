"""Fixtures of the insight tests: pyforge's own glog log of a reference run."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pyforge import api
from pyforge.log import GlogFormatter, get_logger


def train_with_glog_file(solver: str, log_file: Path, weights: str = "") -> None:
    """Run ``pyforge train`` in-process and write its log lines, glog prefix included, to
    ``log_file``: what ``pyforge train ... 2> log_file`` writes."""
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(GlogFormatter())
    logger = get_logger()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def no_snapshots(param) -> None:
        # The tables do not depend on snapshots; writing none keeps the test from needing a
        # writable snapshot folder.
        param.snapshot = 0
        param.snapshot_after_train = False

    try:
        api.train(solver, weights=weights, overrides=no_snapshots)
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)


@pytest.fixture(scope="session")
def pyforge_sgd_inv_log(caffe_ref, tmp_path_factory) -> Path:
    """pyforge's log of the reference run ``sgd_inv`` (Caffe's log of it is
    ``runs/sgd_inv/caffe.log.gz``): same solver, same initial weights, same data."""
    log_file = tmp_path_factory.mktemp("pyforge_log") / "pyforge_sgd_inv.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(caffe_ref)
        train_with_glog_file("runs/sgd_inv/solver.prototxt", log_file,
                             weights="init/snap_iter_0.caffemodel")
    assert os.path.getsize(log_file) > 0
    return log_file
