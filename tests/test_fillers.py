"""Fillers: Caffe's distributions and parameters, seeded, with Caffe's fan rules."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import NetError
from pyforge.fillers import FILLERS, fill
from pyforge.proto import caffe_pb2, parse_text_proto
from pyforge.rng import make_rng


def filled(text: str, shape, seed: int = 1701) -> np.ndarray:
    param = parse_text_proto(text, caffe_pb2.FillerParameter(), "filler")
    blob = Blob(shape)
    fill(blob, param, make_rng(seed), "test")
    return blob.data


def test_registry_holds_caffes_fillers():
    assert FILLERS.names() == sorted(["constant", "uniform", "gaussian", "positive_unitball",
                                      "xavier", "msra", "bilinear"])


def test_default_filler_is_constant_zero():
    data = filled("", (3, 4))
    assert data.dtype == np.float32 and not data.any()


def test_constant():
    assert np.all(filled('type: "constant" value: 2.5', (2, 3)) == np.float32(2.5))


def test_uniform_range_and_mean():
    data = filled('type: "uniform" min: -2 max: 3', (200, 500))
    assert data.min() >= -2 and data.max() <= 3
    assert abs(data.mean() - 0.5) < 0.02
    assert abs(data.std() - 5 / np.sqrt(12)) < 0.02


def test_gaussian_mean_std():
    data = filled('type: "gaussian" mean: 1 std: 0.5', (200, 500))
    assert abs(data.mean() - 1) < 0.01 and abs(data.std() - 0.5) < 0.01


def test_gaussian_sparse_keeps_sparse_over_num_outputs():
    data = filled('type: "gaussian" std: 1 sparse: 5', (50, 2000))
    kept = np.count_nonzero(data) / data.size
    assert abs(kept - 5 / 50) < 0.01


def test_gaussian_needs_positive_std():
    with pytest.raises(NetError, match="std must be > 0"):
        filled('type: "gaussian" std: 0', (2, 2))


def test_sparse_only_for_gaussian():
    with pytest.raises(NetError, match="sparse"):
        filled('type: "xavier" sparse: 3', (2, 2))


def test_positive_unitball_rows_sum_to_one():
    data = filled('type: "positive_unitball"', (7, 3, 4, 5))
    assert np.all(data >= 0)
    np.testing.assert_allclose(data.reshape(7, -1).sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("norm,n", [("FAN_IN", 3 * 5 * 5), ("FAN_OUT", 20 * 5 * 5),
                                    ("AVERAGE", (3 * 5 * 5 + 20 * 5 * 5) / 2)])
def test_xavier_bound_uses_variance_norm(norm, n):
    data = filled(f'type: "xavier" variance_norm: {norm}', (20, 3, 5, 5), seed=3)
    bound = np.sqrt(3 / n)
    assert data.max() <= bound and data.min() >= -bound
    assert data.max() > 0.9 * bound and data.min() < -0.9 * bound
    # Caffe's xavier is uniform: std = bound / sqrt(3) = sqrt(1 / n), not sqrt(2 / n).
    assert abs(data.std() - np.sqrt(1 / n)) < 0.1 * np.sqrt(1 / n)


def test_msra_std():
    data = filled('type: "msra"', (256, 64, 3, 3))
    n = 64 * 3 * 3
    assert abs(data.std() - np.sqrt(2 / n)) < 0.01 * np.sqrt(2 / n) * 10
    assert abs(data.mean()) < 0.001


def test_xavier_on_two_axes_uses_count_over_shape1_for_fan_out():
    data = filled('type: "xavier" variance_norm: FAN_OUT', (10, 40))
    bound = np.sqrt(3 / (400 / 40))
    assert data.max() <= bound and data.max() > 0.8 * bound


def test_bilinear_kernel_matches_caffes_formula():
    data = filled('type: "bilinear"', (2, 1, 4, 4))
    f = np.ceil(4 / 2)
    c = (4 - 1) / (2 * f)
    expect = np.array([[(1 - abs(x / f - c)) * (1 - abs(y / f - c)) for x in range(4)]
                       for y in range(4)], dtype=np.float32)
    np.testing.assert_allclose(data[0, 0], expect)
    np.testing.assert_allclose(data[1, 0], expect)


def test_bilinear_needs_square_4d():
    with pytest.raises(NetError, match="square"):
        filled('type: "bilinear"', (2, 1, 4, 3))


def test_unknown_filler_lists_known():
    with pytest.raises(Exception, match="unknown filler 'xavierr'.*xavier"):
        filled('type: "xavierr"', (2, 2))


def test_same_seed_same_values_other_seed_other_values():
    a = filled('type: "gaussian"', (10, 10), seed=5)
    b = filled('type: "gaussian"', (10, 10), seed=5)
    c = filled('type: "gaussian"', (10, 10), seed=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
