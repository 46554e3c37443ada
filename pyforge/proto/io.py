"""Reading and writing Caffe's protobuf files (text prototxt and binary)."""

from __future__ import annotations

import difflib
import os
import re
import unicodedata
from pathlib import Path
from typing import TypeVar

from google.protobuf import message as _message
from google.protobuf import text_format

from ..atomic_write import write_bytes_atomically
from ..errors import ParseError, PyforgeError
from ..log import get_logger
from . import caffe_pb2
from .forks import UNREAD_FORK_FIELDS, adopt_fork_numbers, fork_of
from .upgrade import upgrade_net_param, upgrade_solver_param
from .wire import WireError, strip_arrays

M = TypeVar("M", bound=_message.Message)

_LOCATION = re.compile(r"^(\d+):(\d+)\s*:\s*(.*)$", re.S)
_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"')


def _suggest_field(message_type: str, field: str) -> str:
    """'; did you mean ...?' for a misspelt field name, or which fork defines the field."""
    if field in UNREAD_FORK_FIELDS:
        return f"; '{field}' is defined by {UNREAD_FORK_FIELDS[field]}"
    name = message_type.split(".")[-1]
    descriptor = getattr(caffe_pb2, name, None)
    if descriptor is not None and hasattr(descriptor, "DESCRIPTOR"):
        known = [f.name for f in descriptor.DESCRIPTOR.fields]
        close = difflib.get_close_matches(field, known, n=1)
        if close:
            fork = fork_of(name, close[0])
            return f"; did you mean '{close[0]}'" + (f" ({fork})?" if fork else "?")
    return ""


#: Error lines are cut to about this many characters: a source line or a token can be
#: megabytes long (an unterminated string swallows the rest of the file).
MAX_LINE = 200
_SOURCE_WINDOW = 150
_LONG_QUOTED = re.compile(r"'([^']{60,})'", re.S)
_GOT_CHAR = re.compile(r"got (\S)$")
_BOM = "\ufeff"


def _shorten_tokens(what: str) -> str:
    """Quoted tokens of more than 60 characters in protobuf's message, cut to their start."""

    def cut(match: re.Match) -> str:
        token = match.group(1)
        return f"'{token[:40]}...' ({len(token):,} characters)"

    return _LONG_QUOTED.sub(cut, what)


def _name_invisible(what: str) -> str:
    """``got X`` where X cannot be seen: its code point and name instead."""
    match = _GOT_CHAR.search(what)
    if not match or match.group(1).isascii() and match.group(1).isprintable():
        return what
    char = match.group(1)
    if char == _BOM:
        name = "a UTF-8 byte order mark, invisible in most editors; only a file's first " \
               "character may be one"
    else:
        name = unicodedata.name(char, "an unnamed character").lower()
    return what[: match.start()] + f"got U+{ord(char):04X} ({name})"


def source_excerpt(source: str, col: int) -> str:
    """The source line under an error and a caret at ``col`` (1-based), cut to a window
    around the column when the line is long."""
    source = source.expandtabs(1)
    start, end = 0, len(source)
    if end > _SOURCE_WINDOW:
        start = max(0, min(col - 1 - _SOURCE_WINDOW // 2, end - _SOURCE_WINDOW))
        end = start + _SOURCE_WINDOW
    head = "..." if start > 0 else ""
    tail = "..." if end < len(source) else ""
    caret = " " * (len(head) + max(col - 1 - start, 0))
    return f"  {head}{source[start:end]}{tail}\n  {caret}^"


def parse_text_proto(text: str, message: M, filename: str) -> M:
    """Parse protobuf text format into ``message``; errors become ``file:line:col: message``
    with the source line (cut around the column when long) and a caret."""
    if text.startswith(_BOM):
        # Editors on Windows add it; Caffe's C++ parser refuses the file, pyforge skips it.
        get_logger().warning("%s starts with a UTF-8 byte order mark (U+FEFF); reading the "
                             "file without it (Caffe's parser would refuse it: save the file "
                             "as UTF-8 without BOM to share it with Caffe)", filename)
        text = text[1:]
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raw = str(exc)
        match = _LOCATION.match(raw)
        line = col = None
        what = raw
        if match:
            line, col, what = int(match.group(1)), int(match.group(2)), match.group(3).strip()
        # protobuf repeats the whole source line in some messages; the caret line shows it.
        what = re.sub(r"^'.*?': ", "", what, flags=re.S).rstrip(".")
        what = _name_invisible(_shorten_tokens(what))
        field_match = _NO_FIELD.search(what)
        if field_match:
            what += _suggest_field(field_match.group(1), field_match.group(2))
        if line is None:
            raise ParseError(f"{filename}: {what}") from None
        lines = text.splitlines()
        detail = None
        if 1 <= line <= len(lines):
            detail = source_excerpt(lines[line - 1], col)
        raise ParseError(f"{filename}:{line}:{col}: {what}", detail) from None
    _check_required(message, filename)
    return message


def _check_required(message: _message.Message, filename: str) -> None:
    """Caffe rejects a message missing a required field (only ClipParameter has them)."""
    if not message.IsInitialized():
        missing = ", ".join(message.FindInitializationErrors())
        raise ParseError(f"{filename}: missing required field(s): {missing}")


_WHOLE_FLOAT = re.compile(r"^(\s*\w+: -?\d+)\.0$", re.M)


def debug_string(message: _message.Message) -> str:
    """Text format as Caffe's ``DebugString()`` prints it (``power: 2``, not ``power: 2.0``)."""
    return _WHOLE_FLOAT.sub(r"\1", text_format.MessageToString(message))


def read_text_proto(path: str | os.PathLike, message: M) -> M:
    """Read a prototxt file into ``message``; a missing or unreadable file is a clear error."""
    if not str(path):
        raise PyforgeError("an empty path was given where a prototxt file is expected")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PyforgeError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PyforgeError(f"{path}: is a directory, expected a prototxt file") from None
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"{path}: not a text prototxt (byte {exc.start} is not UTF-8); "
            "binary .caffemodel/.solverstate files are passed with --weights/--snapshot"
        ) from None
    except OSError as exc:
        raise PyforgeError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:  # an embedded NUL byte
        raise PyforgeError(f"{path!r}: not a valid path (it contains a NUL byte)") from None
    return parse_text_proto(text, message, str(path))


def read_binary_file(path: str | os.PathLike) -> bytes:
    """The bytes of a binary protobuf file; a missing or unreadable file is a clear error."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PyforgeError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PyforgeError(f"{path}: is a directory, expected a binary protobuf file") from None
    except OSError as exc:
        raise PyforgeError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise PyforgeError(f"{path!r}: not a valid path (it contains a NUL byte)") from None


def read_binary_proto(path: str | os.PathLike, message: M) -> M:
    """Read a binary protobuf file (.caffemodel, .solverstate, .binaryproto) into ``message``."""
    return read_binary_proto_arrays(path, message, ())[0]


def read_binary_proto_arrays(path: str | os.PathLike, message: M,
                             blob_paths: tuple[tuple[int, ...], ...]) -> tuple[M, list]:
    """:func:`read_binary_proto`, with the BlobProtos at ``blob_paths``
    (:data:`pyforge.proto.wire.NET_BLOBS` or ``STATE_BLOBS``) read without their packed
    values, which come back as arrays in file order (:func:`pyforge.proto.wire.strip_arrays`):
    a 250 MB .caffemodel reads at disk speed."""
    data = read_binary_file(path)
    try:
        data, arrays = strip_arrays(data, blob_paths)
        message.ParseFromString(data)
    except (_message.DecodeError, WireError) as exc:
        raise ParseError(
            f"{path}: not a valid binary {message.DESCRIPTOR.name} ({len(data)} bytes): {exc}"
        ) from None
    if isinstance(message, caffe_pb2.NetParameter):
        # A fork's .caffemodel may hold a fork field at a number that pyforge gives to another.
        adopt_fork_numbers(message, data, str(path))
    _check_required(message, str(path))
    return message, arrays


def write_binary_proto(path: str | os.PathLike, message: _message.Message) -> None:
    """Write ``message`` to ``path`` atomically (:mod:`pyforge.atomic_write`): whatever
    interrupts the write, ``path`` holds either its previous content or the complete new one."""
    write_bytes_atomically(path, message.SerializeToString())


def resolve_path(path: str, referrer: str | os.PathLike | None, what: str = "file") -> str:
    """Resolve a path named inside a prototxt as Caffe does: against the current directory.

    Caffe users often run from another folder than the one they wrote paths for. When the path
    does not exist relative to the current directory but does relative to the folder of the file
    that names it (``referrer``), that one is used and the substitution is logged.
    """
    if not path or os.path.isabs(path) or os.path.exists(path) or referrer is None:
        return path
    candidate = os.path.join(os.path.dirname(os.fspath(referrer)), path)
    if os.path.exists(candidate):
        get_logger().info(
            "%s '%s' does not exist relative to the current directory; using '%s' "
            "(relative to %s)",
            what,
            path,
            candidate,
            referrer,
        )
        return candidate
    return path


def read_net_param(path: str | os.PathLike) -> caffe_pb2.NetParameter:
    """Read a net prototxt (text) or a binary NetParameter, upgraded to the current format."""
    param = caffe_pb2.NetParameter()
    read_text_proto(path, param)
    return upgrade_net_param(param, str(path))


def read_solver_param(path: str | os.PathLike) -> caffe_pb2.SolverParameter:
    """Read a solver prototxt, upgrading ``solver_type`` and defaulting ``snapshot_prefix``."""
    param = caffe_pb2.SolverParameter()
    read_text_proto(path, param)
    return upgrade_solver_param(param, str(path))
