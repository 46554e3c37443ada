"""pyforge train on the reference runs gives Caffe's losses, learning rates and test scores."""

from __future__ import annotations

import pytest

from pyforge import api
from tests.conformance.traces import compare, parse_messages, reference_traces
from tests.logcapture import capture_log

RUNS = ["sgd_inv", "sgd_step", "sgd_poly", "sgd_fixed_nomom", "nesterov", "adam"]


def _redirect_snapshots(tmp_path):
    def override(param):
        param.snapshot_prefix = str(tmp_path / "snap")

    return override


@pytest.mark.parametrize("run", RUNS)
def test_training_matches_caffe(run, in_caffe_ref, tmp_path):
    reference, _, envelope = reference_traces(in_caffe_ref / "runs" / run)
    with capture_log() as log:
        api.train(f"runs/{run}/solver.prototxt", weights="init/snap_iter_0.caffemodel",
                  overrides=_redirect_snapshots(tmp_path))
    ours = parse_messages(log.messages)
    assert compare(ours, reference, envelope) == []
    # Snapshots after update 30 and at the end, named as Caffe names them.
    assert (tmp_path / "snap_iter_30.caffemodel").exists()
    assert (tmp_path / "snap_iter_60.solverstate").exists()


@pytest.mark.parametrize("run", ["sgd_inv", "adam"])
def test_resume_from_caffe_solverstate_matches_caffe(run, in_caffe_ref, tmp_path):
    """Caffe's resume restarts the data cursor; pyforge reading Caffe's own state does too."""
    _, resumed, envelope = reference_traces(in_caffe_ref / "runs" / run)
    with capture_log() as log:
        api.train(f"runs/{run}/solver_resume.prototxt",
                  snapshot=f"runs/{run}/snap_iter_30.solverstate",
                  overrides=_redirect_snapshots(tmp_path))
    ours = parse_messages(log.messages)
    assert min(ours.loss) == 30
    assert compare(ours, resumed, envelope) == []
    assert "SGDSolver: restoring history" in log.messages
