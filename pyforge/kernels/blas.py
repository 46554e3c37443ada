"""BLAS threading around Numba kernels that call BLAS per image.

Kernels such as the convolution run ``np.dot`` (BLAS, through SciPy's OpenBLAS) once per image
inside ``prange``: Numba's threads share the images, and each GEMM must then run on one thread,
or two levels of threads fight for the same cores. :func:`single_threaded_blas` limits BLAS to
one thread for the duration of such a call (about 10 us).
"""

from __future__ import annotations

import contextlib
import functools


@functools.lru_cache(maxsize=1)
def _controller():
    # Importing SciPy's BLAS module loads the library Numba's np.dot calls, so the controller
    # finds it.
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas():
    with _controller().limit(limits=1, user_api="blas"):
        yield
