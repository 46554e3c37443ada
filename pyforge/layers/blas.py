"""The layers' matrix products (see :mod:`pyforge.kernels.gemm`): ``out = a @ b`` and
``out += a @ b`` in place (BLAS's beta = 1, no temporary the size of ``out``: 151 MB for
CaffeNet's fc6 weight gradient) through SciPy's BLAS, and the Fortran sgemm the convolutions
and the large fully connected products call (Intel MKL's where it is installed)."""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata

import numba
import numpy as np
from numba.extending import get_cython_function_address
from scipy.linalg.blas import sgemm

from ..config import BLAS_ENV, blas_choice, prepare_mkl
from ..errors import PyforgeError
from ..kernels.gemm import gemm_by_threads, matmul_into


def _operand(matrix: np.ndarray, order: str) -> tuple[np.ndarray, bool]:
    """(array laid out in ``order``, "C" or "F", transposed) such that ``matrix`` is
    ``array.T`` when transposed, else ``array``: no copy when ``matrix`` is C- or
    F-contiguous."""
    if matrix.flags[f"{order}_CONTIGUOUS"]:
        return matrix, False
    if matrix.T.flags[f"{order}_CONTIGUOUS"]:
        return matrix.T, True
    return np.array(matrix, order=order), False


def accumulate_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out += a @ b`` in place for a C-contiguous float32 ``out``: BLAS computes the
    column-major ``out.T += b.T @ a.T`` (BLAS reads column-major arrays)."""
    op_a, trans_a = _operand(b.T, "F")
    op_b, trans_b = _operand(a.T, "F")
    result = sgemm(1.0, op_a, op_b, beta=1.0, c=out.T, trans_a=trans_a, trans_b=trans_b,
                   overwrite_c=True)
    if not np.shares_memory(result, out):  # a BLAS that copied: keep the values anyway
        out[...] = result.T


#: Products of at least this many multiply-adds, with MKL, are split over the threads by
#: columns of the result (gemm_by_threads). Measured with CaffeNet's fully connected layers at
#: batch 16 on 2 threads: fc6's data gradient 45.7 -> 11.3 ms (against SciPy's 2-thread
#: OpenBLAS), its forward 17.9 -> 14.9 ms, its weight gradient 11.5 -> 10.6 ms; at 26 M
#: multiply-adds (LeNet's ip1 at batch 64) no gain, and below the threads' start-up costs more.
SPLIT_MACS = 1 << 25


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> None:
    """``out = a @ b``, or ``out += a @ b``, for a C-contiguous float32 ``out`` (``a`` and
    ``b`` C- or F-contiguous, transposed views included): split over the threads through MKL
    when it is the library and the product is large, else one multi-threaded BLAS call."""
    threads = min(numba.get_num_threads(), out.shape[1] // 16)
    macs = out.shape[0] * out.shape[1] * a.shape[1]
    if threads > 1 and macs >= SPLIT_MACS and blas_name() == MKL and out.flags.c_contiguous:
        (a_base, a_t), (b_base, b_t) = _operand(a, "C"), _operand(b, "C")
        gemm_by_threads(fortran_sgemm(), a_base, a_t, b_base, b_t, 1.0 if accumulate else 0.0,
                        out, threads)
    elif accumulate:
        accumulate_matmul(a, b, out)
    else:
        matmul_into(a, b, out)


def fortran_sgemm() -> ctypes._CFuncPtr:
    """The Fortran ``sgemm`` (every argument by address) as a ctypes function, for the
    convolution kernels, which hand BLAS tiles of matrices in place
    (:func:`pyforge.kernels.conv.conv_forward_tiled` and the other forwards). Passed to them as
    an argument, not read as a global, so that Numba can cache them.

    Intel MKL's (Caffe's own choice of BLAS, ``BLAS := mkl``) where the ``mkl`` package is
    installed: on one thread, on the zoo nets' convolution shapes, its sgemm ran 1.1-2.0x as
    fast as OpenBLAS's on this project's machine, the most on the narrowest (16-64 channels).
    Else SciPy's OpenBLAS. ``PYFORGE_BLAS`` (:data:`BLAS_ENV`) picks one."""
    return _sgemm_library()[1]


def blas_name() -> str:
    """The library :func:`fortran_sgemm` calls."""
    return _sgemm_library()[0]


_SGEMM = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))
MKL = "Intel MKL"


@functools.cache
def _sgemm_library() -> tuple[str, ctypes._CFuncPtr, object]:
    """(name, sgemm, the loaded library, kept loaded) as ``PYFORGE_BLAS`` asks."""
    choice = blas_choice()
    if choice not in ("", "mkl", "scipy"):
        raise PyforgeError(f"{BLAS_ENV}={choice!r}: expected 'mkl' or 'scipy' (or unset)")
    if choice != "scipy":
        library = _load_mkl()
        if library is not None:
            return MKL, _SGEMM(ctypes.cast(library.sgemm_, ctypes.c_void_p).value), library
        if choice == "mkl":
            raise PyforgeError(f"{BLAS_ENV}=mkl, but Intel MKL is not installed or its "
                               "libmkl_rt does not load (pip install mkl)")
    address = get_cython_function_address("scipy.linalg.cython_blas", "sgemm")
    return "SciPy's OpenBLAS", _SGEMM(address), None


def _load_mkl() -> ctypes.CDLL | None:
    """libmkl_rt from the ``mkl`` wheel, or None where it is not installed."""
    try:
        files = importlib.metadata.distribution("mkl").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    paths = [f for f in files if f.name.startswith("libmkl_rt.so")]
    if not paths:
        return None
    prepare_mkl()
    try:
        return ctypes.CDLL(str(paths[0].locate()))
    except OSError:
        return None


__all__ = ["accumulate_matmul", "blas_name", "fortran_sgemm", "matmul", "matmul_into"]
