"""Caffe's glog-style log lines on stderr (and, with GLOG_log_dir, in glog's log files).

Caffe logs every line as ``Iyyyymmdd hh:mm:ss.uuuuuu <thread id> <file>:<line>] <message>``
(glog with the year, as the reference runs show; ``I1205 ...`` with
``GLOG_log_year_in_prefix=false`` or an older glog). pyforge writes the same prefix, with its
own Python file and line, so that tools which parse Caffe logs read pyforge's unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from typing import IO

from .config import GlogFlags, load_glog

LOGGER_NAME = "pyforge"
#: The program name in glog's log file names (glog takes argv[0]'s; Caffe's is "caffe").
PROGRAM = "pyforge"
_LEVEL_LETTER = {
    logging.DEBUG: "I",
    logging.INFO: "I",
    logging.WARNING: "W",
    logging.ERROR: "E",
    logging.CRITICAL: "F",
}
_SEVERITY_NAMES = ("INFO", "WARNING", "ERROR", "FATAL")
#: glog's minloglevel (0 INFO .. 3 FATAL) as the logging level below which lines are dropped.
_MIN_LEVELS = (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


def glog_microseconds(timestamp: float) -> int:
    """``timestamp`` (seconds since the epoch) in whole microseconds, rounded as the glog
    prefix prints it; differences of these are the differences of the printed times."""
    seconds = int(timestamp)
    return seconds * 1_000_000 + int(round((timestamp - seconds) * 1e6))


def _severity(levelno: int) -> int:
    return "IWEF".index(_LEVEL_LETTER.get(levelno, "I"))


class GlogFormatter(logging.Formatter):
    """Formats records as glog does: level letter, date (with or without the year), time with
    microseconds, thread id (right-aligned in 5 columns), file:line.

    A record may carry its own time as ``glog_time`` (``extra={"glog_time": t}``): the solver
    stamps lines whose time it also writes to the metrics file."""

    def __init__(self, year: bool = True) -> None:
        super().__init__()
        self.year = year

    def format(self, record: logging.LogRecord) -> str:
        letter = _LEVEL_LETTER.get(record.levelno, "I")
        seconds, micros = divmod(glog_microseconds(getattr(record, "glog_time",
                                                           record.created)), 1_000_000)
        stamp = time.strftime("%Y%m%d %H:%M:%S" if self.year else "%m%d %H:%M:%S",
                              time.localtime(seconds))
        tid = getattr(record, "native_tid", None) or threading.get_native_id()
        message = record.getMessage()
        return (f"{letter}{stamp}.{micros:06d} {tid:>5} {record.filename}:{record.lineno}] "
                f"{message}")


class GlogFileHandler(logging.Handler):
    """glog's log files in ``GLOG_log_dir``: ``<program>.<host>.<user>.log.<SEVERITY>.
    <yyyymmdd-hhmmss>.<pid>``, one per severity, each opened at its first line with glog's
    header and pointed to by the ``<program>.<SEVERITY>`` symlink. A line goes to the file of
    its severity and of every lower one (the INFO file holds everything).

    A folder where the file cannot be created is reported once on stderr (as glog does);
    the lines still go to stderr."""

    def __init__(self, flags: GlogFlags, formatter: GlogFormatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.folder = flags.log_dir
        self.user = flags.user_name or "invalid-user"
        self.year = flags.log_year_in_prefix
        self.host = os.uname().nodename
        self.start = time.time()
        self.files: dict[int, IO[str]] = {}
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        line = self.format(record) + "\n"
        when = getattr(record, "glog_time", record.created)
        for severity in range(_severity(record.levelno), -1, -1):
            handle = self.files.get(severity) or self._open(severity, when)
            if handle is None:
                return
            try:
                handle.write(line)
                handle.flush()
            except OSError as exc:  # a full disk: say so once, as for the file's creation
                self.failed = True
                sys.stderr.write(f"pyforge: warning: cannot write the log file {handle.name} "
                                 f"(GLOG_log_dir): {exc.strerror or exc}; logging to stderr "
                                 "only\n")
                return

    def _open(self, severity: int, when: float) -> IO[str] | None:
        local = time.localtime(when)
        name = (f"{PROGRAM}.{self.host}.{self.user}.log.{_SEVERITY_NAMES[severity]}."
                f"{time.strftime('%Y%m%d-%H%M%S', local)}.{os.getpid()}")
        path = os.path.join(self.folder, name)
        elapsed = max(0, int(when - self.start))
        line_format = "yyyymmdd hh:mm:ss.uuuuuu" if self.year else "mmdd hh:mm:ss.uuuuuu"
        try:
            handle = open(path, "x", encoding="utf-8")
            # The header too: a disk that fills here must not raise out of emit().
            handle.write(f"Log file created at: {time.strftime('%Y/%m/%d %H:%M:%S', local)}\n"
                         f"Running on machine: {self.host}\n"
                         f"Running duration (h:mm:ss): {elapsed // 3600}:"
                         f"{elapsed // 60 % 60:02d}:{elapsed % 60:02d}\n"
                         f"Log line format: [IWEF]{line_format} threadid file:line] msg\n")
        except OSError as exc:
            self.failed = True
            sys.stderr.write(f"pyforge: cannot create the log file {path} (GLOG_log_dir): "
                             f"{exc.strerror}; logging to stderr only\n")
            return None
        link = os.path.join(self.folder, f"{PROGRAM}.{_SEVERITY_NAMES[severity]}")
        try:
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(name, link)  # relative, so the folder can move
        except OSError:
            pass  # as glog: a missing symlink is no error
        self.files[severity] = handle
        return handle

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()
        self.files.clear()
        super().close()


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

    def __init__(self, stream=None, formatter: logging.Formatter | None = None) -> None:
        self._fixed_stream = stream
        self._warned = False
        super().__init__(stream)
        self.setFormatter(formatter or GlogFormatter())

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


def configure(level: int = logging.INFO, stream=None,
              flags: GlogFlags | None = None) -> logging.Logger:
    """Send pyforge's log lines to ``stream`` (by default whatever ``sys.stderr`` is at each
    line, see :class:`GlogHandler`) in glog format, honouring
    glog's flags (``flags``, by default read from the environment, see
    :class:`pyforge.config.GlogFlags`): GLOG_minloglevel drops the lines below it,
    GLOG_log_year_in_prefix=false writes Caffe-era prefixes without the year, GLOG_log_dir
    also writes glog's log files there unless GLOG_logtostderr is set. (Caffe's tools log to
    stderr in any case: they set alsologtostderr.)"""
    flags = flags if flags is not None else load_glog()
    logger = get_logger()
    for handler in list(logger.handlers):
        if getattr(handler, "_pyforge", False):
            logger.removeHandler(handler)
            if isinstance(handler, GlogFileHandler):
                handler.close()
    formatter = GlogFormatter(year=flags.log_year_in_prefix)
    handlers: list[logging.Handler] = [GlogHandler(stream, formatter)]
    if flags.log_dir and not flags.logtostderr:
        handlers.append(GlogFileHandler(flags, formatter))
    for handler in handlers:
        handler._pyforge = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    floor = (_MIN_LEVELS[flags.minloglevel] if 0 <= flags.minloglevel < 4
             else logging.INFO if flags.minloglevel < 0 else logging.CRITICAL + 1)
    logger.setLevel(max(level, floor))
    logger.propagate = False
    return logger


def fmt(value: float) -> str:
    """A number as C++ ``ostream <<`` prints it: ``%g`` with 6 significant digits."""
    return f"{value:g}"
