"""User-facing errors.

Every problem caused by the user's files or flags is raised as a :class:`PyforgeError`. The CLI
prints its message as one line on stderr and exits with its ``exit_code``; a Python traceback is
shown only with ``--debug``. Internal bugs stay ordinary exceptions.
"""

from __future__ import annotations

# Exit statuses, documented in the README. The rule: 2 when the command line alone is wrong
# (fix the command), 1 when what it names is wrong (fix a file or the data).
EXIT_OK = 0
#: Bad input: a file that does not parse, a setting out of range, a net that does not build,
#: weights that do not fit, data that does not read.
EXIT_ERROR = 1
#: A bad command line: an unknown flag, a missing argument, a flag value the flag does not
#: accept (click's own convention), or a file named on the command line that does not exist.
EXIT_USAGE = 2
EXIT_DIVERGED = 3  # training stopped on a non-finite value
EXIT_INTERRUPTED = 130  # stopped at once by a signal (128 + SIGINT, the shell's convention)


class PyforgeError(Exception):
    """An error in the user's input, reported as one clear line."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, detail: str | None = None) -> None:
        # One line, whatever the input held: control characters from file names, field values
        # or paths read out of files are shown escaped.
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))
        super().__init__(message)
        self.message = message
        #: Extra lines shown under the message (for example the offending source line).
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class ParseError(PyforgeError):
    """A text-format or binary protobuf file that does not parse."""


class NetError(PyforgeError):
    """A net definition that cannot be built (unknown layer type, bad shapes, bad wiring)."""


class SolverError(PyforgeError):
    """A solver definition that breaks one of Caffe's checks."""


class DataError(PyforgeError):
    """A data source that is missing, unreadable or inconsistent."""


class WeightsError(PyforgeError):
    """Weights or solver state that do not fit the net."""


class ExportError(PyforgeError):
    """A net that cannot be exported (a layer ONNX cannot express), or an export whose check
    against pyforge's own forward fails."""


class UsageError(PyforgeError):
    """A command line the command cannot run: a flag value it does not accept, a required
    flag missing, or a file named on the command line that does not exist."""

    exit_code = EXIT_USAGE


#: The attribute that holds the CLI's one line about an exception from the user's own code.
_USER_CODE_LINE = "pyforge_user_code_line"


def note_user_code_error(exc: BaseException, note: str, line: str) -> None:
    """Mark an exception raised by the user's own code that pyforge ran (a Python layer).

    The exception keeps its type and message, so callers catch it as they would without
    pyforge (pycaffe does the same); ``note`` (where it happened) is added as a PEP 678 note,
    shown under the traceback, and ``line`` is what the CLI prints instead of a traceback."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # Python 3.10: the same list, which tracebacks show from 3.11 on
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]
    setattr(exc, _USER_CODE_LINE, line)


def user_code_error_line(exc: BaseException) -> str | None:
    """The one line describing ``exc`` if the user's own code raised it, else None."""
    return getattr(exc, _USER_CODE_LINE, None)
