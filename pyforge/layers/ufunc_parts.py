"""NumPy work split over the kernels' threads, for the few steps Numba does not do well.

NumPy's float32 ``power`` (SIMD) is several times faster than Numba's call of the C library's
``powf`` per element, but it runs on one thread: LRN spent most of its time there. A layer
holding a :class:`UfuncParts` hands it a function of flat arrays, which it runs on equal
contiguous parts of them at once. NumPy's elementwise functions give each element the same
bits whatever the part it lands in, so the result does not depend on the thread count.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

#: Parts smaller than this are not worth a thread's hand-over (a few microseconds).
MIN_PART = 1 << 16


class UfuncParts:
    """A small pool of threads, started on first use and sized to Numba's thread count."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._size = 0

    def run(self, function: Callable[..., None], *arrays: np.ndarray) -> None:
        """``function(*parts)`` for equal contiguous parts of the flattened ``arrays`` (all of
        one size and C-contiguous), the first part on the calling thread."""
        size = arrays[0].size
        parts = max(1, min(numba.get_num_threads(), size // MIN_PART))
        if parts == 1:
            function(*arrays)
            return
        flats = [a.reshape(-1) for a in arrays]
        bounds = [size * i // parts for i in range(parts + 1)]
        pool = self._pool_of(parts - 1)
        jobs = [pool.submit(function, *(f[lo:hi] for f in flats))
                for lo, hi in zip(bounds[1:-1], bounds[2:])]
        function(*(f[:bounds[1]] for f in flats))
        for job in jobs:
            job.result()

    def _pool_of(self, workers: int) -> ThreadPoolExecutor:
        if self._pool is None or self._size != workers:
            self.close()
            self._pool = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="pyforge-ufunc")
            self._size = workers
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
