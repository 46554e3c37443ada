"""The OpenCV comparison harness itself, on BVLC layers that both engines implement."""

from __future__ import annotations

import numpy as np

from tests.forks.opencv_compare import Result, assert_close, run_both

BVLC_NET = """
name: "bvlc"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 9 dim: 11 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "relu1" }
layer { name: "pool1" type: "Pooling" bottom: "relu1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "bn1" type: "BatchNorm" bottom: "pool1" top: "bn1" }
layer { name: "fc" type: "InnerProduct" bottom: "bn1" top: "fc"
  inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_bvlc_layers_match_opencv(tmp_path):
    data = np.random.default_rng(5).standard_normal((2, 3, 9, 11)).astype(np.float32)
    results = run_both(tmp_path, BVLC_NET, {"data": data},
                       ["conv1", "relu1", "pool1", "bn1", "fc", "prob"], seed=11)
    assert_close(results)
    # The comparison saw real, non-trivial values (random weights reached every output).
    assert all(result.scale > 0 for result in results)
    assert results[-1].ours.shape == (2, 5)


def test_a_difference_beyond_the_tolerance_or_a_shape_difference_fails():
    base = np.linspace(-2.0, 2.0, 12, dtype=np.float32)
    assert Result("same", base, base + 1.9e-3).ok  # within 1e-3 of scale 2
    assert not Result("off", base, base + 2.1e-3).ok
    assert not Result("shape", base, base.reshape(3, 4)).ok
    assert Result("zeros", np.zeros(3), np.zeros(3)).ok
    assert not Result("zero_vs_tiny", np.zeros(3), np.full(3, 1e-6)).ok
    try:
        assert_close([Result("off", base, base + 1.0)])
    except AssertionError as exc:
        assert "off: max |diff| 1" in str(exc) and "MISMATCH" in str(exc)
    else:
        raise AssertionError("assert_close accepted a mismatch")
