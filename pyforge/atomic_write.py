"""Writing a file so that a crash never leaves half of it: the one place that does it.

A temporary file beside the target (``.<name>.tmp<pid>``, in the same folder so that the rename
stays on one file system) is written, flushed to the disk, renamed over the target, and then the
folder itself is flushed so that the rename survives a power cut. Whatever interrupts the write
(an error, a second Ctrl-C, SIGKILL), the target holds either its previous content or the
complete new one; the temporary file is removed when Python still can.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable

from .errors import PyforgeError

#: The errors of fsync on a folder that the file system or the OS cannot do (Windows, some
#: network and FUSE file systems): the rename has happened, only its durability is unknown.
_CANNOT_SYNC_FOLDER = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES,
                       errno.EPERM, errno.EISDIR)


_TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.tmp(?P<pid>[0-9]+)", re.S)


def temporary_path(path: str | os.PathLike) -> str:
    """``<folder>/.<name>.tmp<pid>``: hidden, beside ``path``, one per process."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}.tmp{os.getpid()}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; a pid out of range
        return pid <= 0x7FFFFFFF
    return True


def remove_abandoned_temporaries(folder: str, is_target: Callable[[str], bool]) -> list[str]:
    """Remove the temporary files that processes no longer alive left in ``folder`` (a
    SIGKILL between writing and renaming leaves one) while writing a file whose name
    ``is_target`` accepts; returns their names. Nothing else is touched: not another
    program's files, not the temporaries of a process still running."""
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    removed = []
    for name in names:
        match = _TEMPORARY_NAME.fullmatch(name)
        if not match or not is_target(match.group("name")) or _alive(int(match.group("pid"))):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:  # gone already, or not ours to remove
            continue
        removed.append(name)
    return removed


def write_atomically(path: str | os.PathLike, fill: Callable[[str], None]) -> None:
    """Replace ``path`` by what ``fill(temporary_path)`` writes, atomically and durably.

    ``fill`` writes the whole file at the path it is given (h5py and NumPy open files by path).
    An ``OSError`` becomes a :class:`PyforgeError` naming ``path``."""
    target = os.fspath(path)
    tmp = temporary_path(target)
    try:
        fill(tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except (OSError, ValueError):  # never created (ValueError: a NUL byte in the path)
            pass
        if isinstance(exc, OSError):
            folder = os.path.dirname(target) or "."
            reason = (f"its folder {folder} does not exist (was it removed?)"
                      if exc.errno == errno.ENOENT and not os.path.isdir(folder)
                      else _reason(exc))
            raise PyforgeError(f"{target}: cannot write: {reason}") from None
        raise
    try:
        _fsync_folder(os.path.dirname(target) or ".")
    except OSError as exc:
        raise PyforgeError(f"{target}: written, but its folder could not be flushed to disk: "
                           f"{_reason(exc)}") from None


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` by ``data`` (see :func:`write_atomically`)."""
    write_chunks_atomically(path, [data])


def write_chunks_atomically(path: str | os.PathLike,
                            chunks: Iterable[bytes | memoryview]) -> None:
    """Replace ``path`` by the concatenation of ``chunks`` (see :func:`write_atomically`),
    written one after the other, so that arrays given as memoryviews are never copied."""

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)

    write_atomically(path, fill)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` in UTF-8 (see :func:`write_atomically`)."""
    write_bytes_atomically(path, text.encode("utf-8"))


def _fsync_file(path: str) -> None:
    # Reopened rather than synced through the writer's handle: h5py closes its own.
    with open(path, "rb+") as handle:
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_folder(folder: str) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        if exc.errno in _CANNOT_SYNC_FOLDER:
            return
        raise
    try:
        os.fsync(descriptor)
    except OSError as exc:
        if exc.errno not in _CANNOT_SYNC_FOLDER:
            raise
    finally:
        os.close(descriptor)


def _reason(exc: OSError) -> str:
    """The OS's words (``No space left on device``); h5py's whole message when it has none."""
    return exc.strerror or str(exc)
