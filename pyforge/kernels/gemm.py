"""Matrix products through BLAS from Numba: SciPy's OpenBLAS, the library the convolution
kernels' ``np.dot`` calls too.

The layers' matrix products never go through NumPy's own BLAS (a separate OpenBLAS in NumPy's
wheel; a few dot products of vectors, in the losses, still do): a script that imports NumPy
before pyforge starts that library with OpenBLAS's default idle spin of about a tenth of a
second per call, during which its threads take the cores from the next kernels (see
:func:`pyforge.config._blas_controller`). SciPy's BLAS is loaded by pyforge itself, after it has
set a short spin (:func:`pyforge.config.apply_thread_defaults`).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit


@jit
def matmul_into(a, b, out):
    """``out = a @ b`` for 2-D arrays, each C- or F-contiguous (transposed views included)."""
    np.dot(a, b, out)
