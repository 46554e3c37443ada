"""The one place where Numba is configured for pyforge's kernels.

Kernels are compiled with ``cache=True`` (compiled code is reused across runs) and without
``fastmath``, so that NaN and infinity propagate exactly as in Caffe. ``pjit`` adds
``parallel=True`` for kernels whose ``prange`` iterations write disjoint memory.
"""

from __future__ import annotations

import functools

import numba

jit = functools.partial(numba.njit, cache=True, fastmath=False, nogil=True)
pjit = functools.partial(numba.njit, cache=True, fastmath=False, nogil=True, parallel=True)
prange = numba.prange
