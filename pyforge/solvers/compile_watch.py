"""Numba compiles pyforge's kernels at their first call and keeps them in its cache; on a first
run (or after a kernel's source changed) that is many seconds in which nothing is printed, and
which would show as a slow first ``Iteration 0 (... s/N iters)``.

:class:`CompileWatch` listens to Numba's ``numba:compile`` events, which fire only when a
kernel is really compiled (a cache hit fires none): it says once that kernels are being
compiled, and adds up the seconds spent compiling so that the speed figures can leave them out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from numba.core import event as numba_event

COMPILE_EVENT = "numba:compile"


class CompileWatch(numba_event.Listener):
    """While registered (``with watch:``), counts the wall-clock seconds of kernel compilation
    (nested compilations of kernels called by a kernel count once) and logs one line at the
    first compilation.

    Numba compiles under one global lock, so compilations never overlap. One that began
    before the watch was registered (a data layer's prefetch thread starts at net setup) shows
    only its end: the whole time since registration was that compilation."""

    def __init__(self, logger: logging.Logger,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.logger = logger
        self.clock = clock
        #: Seconds spent compiling so far, while registered.
        self.seconds = 0.0
        self.compilations = 0
        self._depth = 0
        self._started = 0.0
        self._registered = 0.0
        self._seconds_at_registration = 0.0
        self._announced = False
        self._lock = threading.Lock()

    def on_start(self, event) -> None:
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self._started = self.clock()
        self._announce()

    def on_end(self, event) -> None:
        with self._lock:
            now = self.clock()
            if self._depth == 0:  # began before registration
                self.seconds = self._seconds_at_registration + (now - self._registered)
                self.compilations += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += now - self._started
                    self.compilations += 1
        self._announce()

    def _announce(self) -> None:
        with self._lock:
            if self._announced:
                return
            self._announced = True
        self.logger.info("Compiling kernels for this machine (first run only: Numba caches them "
                         "for the next runs); this can take a minute, and the speed figures "
                         "leave it out")

    def __enter__(self) -> CompileWatch:
        with self._lock:
            self._depth = 0
            self._registered = self.clock()
            self._seconds_at_registration = self.seconds
        numba_event.register(COMPILE_EVENT, self)
        return self

    def __exit__(self, *exc) -> None:
        numba_event.unregister(COMPILE_EVENT, self)
