"""The sgemm the convolution kernels call (pyforge.layers.blas.fortran_sgemm): Intel MKL's
where the mkl package is installed, else SciPy's OpenBLAS, as PYFORGE_BLAS asks."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

from pyforge.config import BLAS_ENV
from pyforge.errors import PyforgeError
from pyforge.kernels._jit import jit
from pyforge.kernels.conv import _tile_product
from pyforge.kernels.gemm import gemm_letters
from pyforge.layers import blas

try:
    importlib.metadata.distribution("mkl")
    HAS_MKL = True
except importlib.metadata.PackageNotFoundError:
    HAS_MKL = False


@pytest.fixture
def choose(monkeypatch):
    """Set PYFORGE_BLAS for one test, choosing the library again before and after it."""
    def set_choice(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(BLAS_ENV, raising=False)
        else:
            monkeypatch.setenv(BLAS_ENV, value)
        blas._sgemm_library.cache_clear()

    yield set_choice
    monkeypatch.undo()
    blas._sgemm_library.cache_clear()


@jit
def _product(sgemm, weight, columns, offset, stride, width, result):
    ints, scalars, letters = gemm_letters()
    _tile_product(sgemm, ints, scalars, letters, weight, columns, offset, stride, width,
                  result, 0, width)


def _tile(sgemm, weight, columns, start, width):
    """Columns ``start`` to ``start + width`` of ``weight @ columns``, read in place."""
    result = np.full((weight.shape[0], width), np.nan, np.float32)
    _product(sgemm, weight, columns.reshape(-1), start, columns.shape[1], width,
             result.reshape(-1))
    return result


def test_an_unknown_choice_is_one_clear_error(choose):
    choose("atlas")
    with pytest.raises(PyforgeError, match="PYFORGE_BLAS='atlas': expected 'mkl' or 'scipy'"):
        blas.fortran_sgemm()


@pytest.mark.parametrize("choice", ["scipy", None, "mkl"])
def test_each_library_computes_a_tile_of_the_product(choose, choice):
    if choice == "mkl" and not HAS_MKL:
        choose("mkl")
        with pytest.raises(PyforgeError, match="MKL is not installed or its libmkl_rt"):
            blas.fortran_sgemm()
        return
    choose(choice)
    expected_name = "SciPy's OpenBLAS" if choice == "scipy" or not HAS_MKL else "Intel MKL"
    assert blas.blas_name() == expected_name
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((37, 29)).astype(np.float32)
    columns = rng.standard_normal((29, 101)).astype(np.float32)
    tile = _tile(blas.fortran_sgemm(), weight, columns, 13, 70)
    exact = weight.astype(np.float64) @ columns[:, 13:83].astype(np.float64)
    np.testing.assert_allclose(tile, exact, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not HAS_MKL, reason="Intel MKL is not installed")
def test_mkl_gives_the_same_bits_whatever_the_alignment(choose):
    """Two runs place the same operands at other addresses: MKL's strict reproducible mode
    (MKL_CBWR=AUTO,STRICT, set before it loads) keeps the bits."""
    choose(None)
    sgemm = blas.fortran_sgemm()
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((64, 300)).astype(np.float32)
    columns = rng.standard_normal((300, 777)).astype(np.float32)
    results = []
    for shift in range(4):  # operands moved by 0-3 floats from their first address
        w_room = np.empty(weight.size + 16, np.float32)
        c_room = np.empty(columns.size + 16, np.float32)
        w = w_room[shift:shift + weight.size].reshape(weight.shape)
        c = c_room[shift:shift + columns.size].reshape(columns.shape)
        w[...] = weight
        c[...] = columns
        results.append(_tile(sgemm, w, c, 0, 777))
    for other in results[1:]:
        np.testing.assert_array_equal(other.view(np.int32), results[0].view(np.int32))


@pytest.mark.parametrize("choice", ["scipy", None])
@pytest.mark.parametrize(("a_t", "b_t", "accumulate"), [(False, True, False), (False, False, False),
                                                        (True, False, True)])
def test_a_large_product_split_over_the_threads(choose, choice, a_t, b_t, accumulate):
    """InnerProduct's three products at CaffeNet fc7's size (16 x 4096 x 1024 > SPLIT_MACS):
    with MKL each thread computes its columns of the result; the values are the product's,
    added to what ``out`` held when accumulating."""
    choose(choice)
    rng = np.random.default_rng(5)
    m, k, n = 16, 2048, 1040  # n: not a whole number of cache lines per thread
    assert m * k * n >= blas.SPLIT_MACS
    a = rng.standard_normal((k, m) if a_t else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if b_t else (k, n)).astype(np.float32)
    op_a, op_b = (a.T if a_t else a), (b.T if b_t else b)
    out = rng.standard_normal((m, n)).astype(np.float32)
    expected = op_a.astype(np.float64) @ op_b.astype(np.float64)
    if accumulate:
        expected += out
    blas.matmul(op_a, op_b, out, accumulate=accumulate)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


NET = """
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 6 dim: 33 dim: 33 } shape { dim: 4 } } }
layer { name: "grouped" type: "Convolution" bottom: "data" top: "grouped"
        convolution_param { num_output: 8 kernel_size: 3 group: 2
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "tiled" type: "Convolution" bottom: "grouped" top: "tiled"
        convolution_param { num_output: 40 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "shifted" type: "Convolution" bottom: "tiled" top: "shifted"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "batched" type: "Convolution" bottom: "shifted" top: "batched"
        convolution_param { num_output: 8 kernel_size: 3 stride: 5
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "batched" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_a_net_trains_alike_on_either_library(choose):
    """Every convolution kind (grouped, tiled im2col, shifted taps, images side by side)
    and its backward give the same values, up to float32 rounding, with SciPy's OpenBLAS and
    with the default library (MKL where installed)."""
    from pyforge.net.net import Net
    from pyforge.proto import caffe_pb2, parse_text_proto

    runs = []
    for choice in ("scipy", None):
        choose(choice)
        param = parse_text_proto(NET, caffe_pb2.NetParameter(), "net.prototxt")
        net = Net(param, rng=np.random.default_rng(6))
        assert net.layer_by_name("shifted").shifted and net.layer_by_name("tiled").tiled
        assert net.layer_by_name("batched").images_per_product > 1
        net.blobs["data"].data[...] = np.random.default_rng(7).standard_normal((4, 6, 33, 33))
        net.blobs["label"].data[...] = [0, 1, 2, 1]
        net.forward_loss()
        net.backward_all()
        runs.append({"data": {k: b.data.copy() for k, b in net.blobs.items()},
                     "diff": {k: b.diff.copy() for k, b in net.blobs.items()},
                     "params": [b.diff.copy() for layer in net.layers for b in layer.blobs]})
    for key in runs[0]["data"]:
        for kind in ("data", "diff"):
            np.testing.assert_allclose(runs[1][kind][key], runs[0][kind][key], rtol=1e-4,
                                       atol=1e-5, err_msg=f"{kind} of {key}")
    for mine, theirs in zip(runs[1]["params"], runs[0]["params"]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)


def test_a_bad_choice_ends_a_command_with_one_line(choose, caffe_ref, capsys):
    from pyforge.cli import main

    choose("atlas")
    model = caffe_ref / "shapes" / "examples_mnist_lenet.prototxt"
    assert main(["time", f"--model={model}", "--iterations=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "pyforge: error: PYFORGE_BLAS='atlas': expected 'mkl' or 'scipy' (or unset)"
    assert "Traceback" not in "\n".join(err)


def test_without_mkl_the_default_is_openblas_and_asking_for_mkl_is_an_error(choose,
                                                                           monkeypatch):
    monkeypatch.setattr(blas, "_load_mkl", lambda: None)  # as on a machine without the wheel
    choose(None)
    assert blas.blas_name() == "SciPy's OpenBLAS"
    choose("MKL ")  # case and spaces do not matter
    with pytest.raises(PyforgeError, match="PYFORGE_BLAS=mkl, but Intel MKL is not installed"):
        blas.fortran_sgemm()
