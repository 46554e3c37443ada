"""The layers' matrix products, all through SciPy's BLAS (see :mod:`pyforge.kernels.gemm`):
``out = a @ b`` and ``out += a @ b`` in place (BLAS's beta = 1, no temporary the size of
``out``: 151 MB for CaffeNet's fc6 weight gradient)."""

from __future__ import annotations

import ctypes
import functools

import numpy as np
from numba.extending import get_cython_function_address
from scipy.linalg.blas import sgemm

from ..kernels.gemm import matmul_into


def _fortran_operand(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """(array, transposed) such that op(array) is ``matrix`` with no copy when ``matrix`` is
    C- or F-contiguous (BLAS reads column-major arrays)."""
    if matrix.flags.f_contiguous:
        return matrix, False
    if matrix.flags.c_contiguous:
        return matrix.T, True
    return np.asfortranarray(matrix), False


def accumulate_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out += a @ b`` in place for a C-contiguous float32 ``out``: BLAS computes the
    column-major ``out.T += b.T @ a.T``."""
    op_a, trans_a = _fortran_operand(b.T)
    op_b, trans_b = _fortran_operand(a.T)
    result = sgemm(1.0, op_a, op_b, beta=1.0, c=out.T, trans_a=trans_a, trans_b=trans_b,
                   overwrite_c=True)
    if not np.shares_memory(result, out):  # a BLAS that copied: keep the values anyway
        out[...] = result.T


@functools.cache
def fortran_sgemm() -> ctypes._CFuncPtr:
    """SciPy's Fortran ``sgemm`` (every argument by address) as a ctypes function, for the
    kernels that hand BLAS strided operands (:func:`pyforge.kernels.conv.conv_forward_shifted`).
    Passed to them as an argument, not read as a global, so that Numba can cache them."""
    address = get_cython_function_address("scipy.linalg.cython_blas", "sgemm")
    return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(address)


__all__ = ["accumulate_matmul", "fortran_sgemm", "matmul_into"]
