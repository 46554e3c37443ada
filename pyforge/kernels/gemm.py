"""Matrix products through BLAS from Numba.

:func:`matmul_into` is ``np.dot``, which Numba hands to SciPy's OpenBLAS. :func:`gemm_into`
and :func:`gemm_by_threads` call a Fortran ``sgemm`` handed in by address
(:func:`pyforge.layers.blas.fortran_sgemm`: Intel MKL's where it is installed), as the
convolution kernels do.

The layers' matrix products never go through NumPy's own BLAS (a separate OpenBLAS in NumPy's
wheel; a few dot products of vectors, in the losses, still do): a script that imports NumPy
before pyforge starts that library with OpenBLAS's default idle spin of about a tenth of a
second per call, during which its threads take the cores from the next kernels (see
:func:`pyforge.config._blas_controller`). SciPy's BLAS is loaded by pyforge itself, after it has
set a short spin (:func:`pyforge.config.apply_thread_defaults`).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange


@jit
def matmul_into(a, b, out):
    """``out = a @ b`` for 2-D arrays, each C- or F-contiguous (transposed views included)."""
    np.dot(a, b, out)


# --- products through a Fortran sgemm handed in by address (pyforge.layers.blas) ---------------
@jit
def gemm_letters():
    """The by-address arguments of :func:`gemm_into`: ints, alpha and beta, 'N' and 'T'."""
    ints = np.empty(6, np.int32)
    scalars = np.empty(2, np.float32)
    scalars[0] = 1.0
    scalars[1] = 0.0
    letters = np.empty(2, np.uint8)
    letters[0] = 78  # 'N'
    letters[1] = 84  # 'T'
    return ints, scalars, letters


@jit
def gemm_into(sgemm, ints, scalars, letters, a, trans_a, b, trans_b, out):
    """``out = op(a) @ op(b)`` for C-contiguous 2-D arrays (op transposes where asked), as
    ``np.dot`` computes it, through ``sgemm`` (the library the convolutions' other products
    use; ``scalars[1]`` is beta: 1 adds to ``out``)."""
    gemm_columns(sgemm, ints, scalars, letters, a, trans_a, b, trans_b, out, 0,
                 out.shape[1])


@jit
def gemm_columns(sgemm, ints, scalars, letters, a, trans_a, b, trans_b, out, first, count):
    """:func:`gemm_into` for columns ``first`` to ``first + count`` of ``out`` alone. In
    Fortran's column-major terms this is ``out.T[first:first+count] = op(b).T[first:...] @
    op(a).T``: every operand is read in place, ``op(b).T``'s rows starting ``first`` rows in
    (``first`` elements into ``b``, or ``first`` rows of ``b`` when it is transposed)."""
    rows, cols = out.shape
    ints[0] = count
    ints[1] = rows
    ints[2] = a.shape[0] if trans_a else a.shape[1]
    ints[3] = b.shape[1]
    ints[4] = a.shape[1]
    ints[5] = cols
    flat_b = b.reshape(b.size)
    flat_out = out.reshape(out.size)
    start = first * b.shape[1] if trans_b else first
    sgemm(letters[1 if trans_b else 0:].ctypes, letters[1 if trans_a else 0:].ctypes,
          ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes, scalars[0:].ctypes,
          flat_b[start:].ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes,
          scalars[1:].ctypes, flat_out[first:].ctypes, ints[5:].ctypes)


@pjit
def gemm_by_threads(sgemm, a, trans_a, b, trans_b, beta, out, threads):
    """``out = op(a) @ op(b)`` (beta 0) or ``out += op(a) @ op(b)`` (beta 1), each of
    ``threads`` threads computing its share of the columns of ``out`` with a single-threaded
    ``sgemm``: for the fully connected layers' products, whose few rows (the batch) make one
    product per image pointless."""
    cols = out.shape[1]
    for t in prange(threads):
        ints, scalars, letters = gemm_letters()
        scalars[1] = beta
        # shares of whole cache lines (16 floats), so that no two threads write one line
        first = (t * cols // threads) // 16 * 16
        end = cols if t == threads - 1 else ((t + 1) * cols // threads) // 16 * 16
        if end > first:
            gemm_columns(sgemm, ints, scalars, letters, a, trans_a, b, trans_b, out, first,
                         end - first)
