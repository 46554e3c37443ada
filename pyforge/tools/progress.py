"""A plain progress bar for long tools, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def progress_bar(label: str, stream=None) -> Callable[[int, int], None] | None:
    """A ``report(done, total)`` callable drawing a bar with an ETA, or None off a terminal."""
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty():
        return None
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        elapsed = time.monotonic() - start
        eta = elapsed * (total - done) / done if done else 0.0
        end = "\n" if done >= total else ""
        stream.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                     f"ETA {eta:5.1f}s{end}")
        stream.flush()

    return report
