"""Caffe's glog-style log lines on stderr.

Caffe logs every line as ``Iyyyymmdd hh:mm:ss.uuuuuu <thread id> <file>:<line>] <message>``
(glog with the year, as the reference runs show). pyforge writes the same prefix, with its own
Python file and line, so that tools which parse Caffe logs read pyforge's unchanged.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

LOGGER_NAME = "pyforge"
_LEVEL_LETTER = {
    logging.DEBUG: "I",
    logging.INFO: "I",
    logging.WARNING: "W",
    logging.ERROR: "E",
    logging.CRITICAL: "F",
}


class GlogFormatter(logging.Formatter):
    """Formats records as glog does: level letter, date, time with microseconds, tid, file:line."""

    def format(self, record: logging.LogRecord) -> str:
        letter = _LEVEL_LETTER.get(record.levelno, "I")
        seconds = int(record.created)
        micros = int(round((record.created - seconds) * 1e6))
        if micros >= 1_000_000:
            seconds, micros = seconds + 1, micros - 1_000_000
        stamp = time.strftime("%Y%m%d %H:%M:%S", time.localtime(seconds))
        tid = getattr(record, "native_tid", None) or threading.get_native_id()
        message = record.getMessage()
        return f"{letter}{stamp}.{micros:06d} {tid} {record.filename}:{record.lineno}] {message}"


def get_logger() -> logging.Logger:
    """The package logger; :func:`configure` attaches the stderr handler."""
    return logging.getLogger(LOGGER_NAME)


def configure(level: int = logging.INFO, stream=None) -> logging.Logger:
    """Send pyforge's log lines to ``stream`` (stderr by default) in glog format."""
    logger = get_logger()
    for handler in list(logger.handlers):
        if getattr(handler, "_pyforge", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(GlogFormatter())
    handler._pyforge = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def fmt(value: float) -> str:
    """A number as C++ ``ostream <<`` prints it: ``%g`` with 6 significant digits."""
    return f"{value:g}"
