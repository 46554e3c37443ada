"""Caffe's glog-style log lines on stderr.

Caffe logs every line as ``Iyyyymmdd hh:mm:ss.uuuuuu <thread id> <file>:<line>] <message>``
(glog with the year, as the reference runs show). pyforge writes the same prefix, with its own
Python file and line, so that tools which parse Caffe logs read pyforge's unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
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


def stream_name(stream) -> str:
    """The file a stream writes to, for messages: its path when the OS knows it (stderr
    redirected to a file), else its name (``<stderr>``)."""
    try:
        return os.readlink(f"/proc/self/fd/{stream.fileno()}")
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return str(getattr(stream, "name", stream))


class GlogHandler(logging.StreamHandler):
    """pyforge's log handler: glog lines on a stream, by default whatever ``sys.stderr`` is
    when each line is written.

    Resolving stderr at each line means a handler never writes to a stream that was replaced
    and closed (as test harnesses and notebooks do), whichever thread logs. A line that cannot
    be written (a full disk under a redirected stderr, a closed stream) is dropped; the first
    such failure is reported once on the process's original stderr instead of Python's
    logging traceback for every line."""

    def __init__(self, stream=None) -> None:
        self._fixed_stream = stream
        self._warned = False
        super().__init__(stream)
        self.setFormatter(GlogFormatter())

    @property  # type: ignore[override]
    def stream(self):
        return self._fixed_stream if self._fixed_stream is not None else sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        self._fixed_stream = value if value is not sys.stderr else None

    def handleError(self, record: logging.LogRecord) -> None:
        if self._warned:
            return
        self._warned = True
        error = sys.exc_info()[1]
        reason = getattr(error, "strerror", None) or str(error)
        with contextlib.suppress(Exception):
            sys.__stderr__.write(f"pyforge: warning: cannot write the log to "
                                 f"{stream_name(self.stream)}: {reason}; lines that cannot be "
                                 "written are dropped\n")


def get_logger() -> logging.Logger:
    """The package logger; :func:`configure` attaches the stderr handler."""
    return logging.getLogger(LOGGER_NAME)


def configure(level: int = logging.INFO, stream=None) -> logging.Logger:
    """Send pyforge's log lines to ``stream`` (by default the current ``sys.stderr`` at each
    line) in glog format."""
    logger = get_logger()
    for handler in list(logger.handlers):
        if getattr(handler, "_pyforge", False):
            logger.removeHandler(handler)
    handler = GlogHandler(stream)
    handler._pyforge = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def fmt(value: float) -> str:
    """A number as C++ ``ostream <<`` prints it: ``%g`` with 6 significant digits."""
    return f"{value:g}"
