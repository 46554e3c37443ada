"""Capture pyforge's log messages (without the glog prefix) in tests."""

from __future__ import annotations

import contextlib
import logging

from pyforge.log import get_logger


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Captured:
    def __init__(self, collector: _Collector) -> None:
        self._collector = collector

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self._collector.records]

    @property
    def text(self) -> str:
        return "\n".join(self.messages)

    def levels(self) -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in self._collector.records]


@contextlib.contextmanager
def capture_log():
    """Collect every pyforge log record emitted inside the block."""
    logger = get_logger()
    collector = _Collector()
    old_level = logger.level
    logger.addHandler(collector)
    logger.setLevel(logging.INFO)
    try:
        yield Captured(collector)
    finally:
        logger.removeHandler(collector)
        logger.setLevel(old_level)
