"""pycaffe's small functions: logging set-up, the layer type list and a timer."""

from __future__ import annotations

import logging
import time

from ..log import configure, get_logger

# glog's severities, as pycaffe's init_log(level) takes them.
_GLOG_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.CRITICAL}


def init_log(level: int = 0) -> None:
    """Print pyforge's log lines (Caffe's, in glog format) on stderr from severity ``level``
    (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL). Without this call the pycaffe API shows only
    warnings and errors."""
    configure(_GLOG_LEVELS.get(int(level), logging.INFO))


def log(message: str) -> None:
    """Log ``message`` at INFO, as pycaffe's ``caffe.log`` does."""
    get_logger().info("%s", message)


def layer_type_list() -> list[str]:
    """The layer types a net may use (Caffe's LayerRegistry::LayerTypeList), sorted."""
    from ..layers import LAYERS

    return LAYERS.names()


class Timer:
    """Wall-clock timer with Caffe's interface: ``start()``, ``stop()``, ``ms``."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._elapsed = 0.0
        self._running = False

    def start(self) -> None:
        self._start = time.perf_counter()
        self._running = True

    def stop(self) -> None:
        if self._running and self._start is not None:
            self._elapsed = time.perf_counter() - self._start
            self._running = False

    @property
    def ms(self) -> float:
        """Milliseconds between the last start and stop (up to now while running)."""
        if self._running and self._start is not None:
            return (time.perf_counter() - self._start) * 1e3
        return self._elapsed * 1e3

    @property
    def seconds(self) -> float:
        return self.ms / 1e3
