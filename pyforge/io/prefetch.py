"""Background preparation of batches, as Caffe's prefetch thread does.

Batches are numbered from 0. Batch ``k`` is a pure function of ``k`` (its records and its
random crop/mirror draws), so the thread may run ahead freely and a run can resume exactly at
any batch index.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Prefetcher:
    """Runs ``load(k)`` for k = start, start+1, ... in a daemon thread, ``depth`` batches ahead.

    ``next()`` returns the batches in order; an exception raised by ``load`` is re-raised there.
    """

    def __init__(self, load: Callable[[int], Any], depth: int = 4, start: int = 0) -> None:
        self._load = load
        self._depth = max(1, depth)
        self.next_index = start
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue(self._depth)
        self._stop = threading.Event()

    def _run(self, start: int, q: queue.Queue, stop: threading.Event) -> None:
        index = start
        while not stop.is_set():
            try:
                item = (index, self._load(index), None)
            except BaseException as exc:  # surfaced in next()
                item = (index, None, exc)
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return
            index += 1

    def _start(self) -> None:
        self._stop = threading.Event()
        self._queue = queue.Queue(self._depth)
        self._thread = threading.Thread(
            target=self._run, args=(self.next_index, self._queue, self._stop), daemon=True,
            name="pyforge-prefetch",
        )
        self._thread.start()

    def next(self) -> Any:
        if self._thread is None:
            self._start()
        index, batch, error = self._queue.get()
        if error is not None:
            self.stop()
            raise error
        assert index == self.next_index
        self.next_index += 1
        return batch

    def seek(self, index: int) -> None:
        """Continue from batch ``index`` (used when resuming)."""
        self.stop()
        self.next_index = index

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
