"""Fixtures of the insight tests: pyforge's own glog log of a reference run."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pyforge import api
from pyforge.log import GlogFormatter, get_logger


def train_with_glog_file(solver: str, log_file: Path, weights: str = "", year: bool = True,
                         metrics: Path | None = None) -> None:
    """Run ``pyforge train`` in-process and write its log lines, glog prefix included, to
    ``log_file``: what ``pyforge train ... 2> log_file`` writes (with
    ``GLOG_log_year_in_prefix=false`` when not ``year``); the metrics JSONL to ``metrics``."""
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(GlogFormatter(year=year))
    logger = get_logger()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def no_snapshots(param) -> None:
        # The tables do not depend on snapshots; writing none keeps the test from needing a
        # writable snapshot folder.
        param.snapshot = 0
        param.snapshot_after_train = False
        if metrics is not None:
            param.metrics_file = str(metrics)

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


@pytest.fixture(scope="session")
def pyforge_sgd_inv_yearless(caffe_ref, tmp_path_factory) -> tuple[Path, Path]:
    """pyforge's log of ``sgd_inv`` with GLOG_log_year_in_prefix=false, and its metrics
    JSONL."""
    folder = tmp_path_factory.mktemp("pyforge_yearless")
    log_file, metrics = folder / "pyforge_sgd_inv.log", folder / "metrics.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(caffe_ref)
        train_with_glog_file("runs/sgd_inv/solver.prototxt", log_file,
                             weights="init/snap_iter_0.caffemodel", year=False, metrics=metrics)
    return log_file, metrics
