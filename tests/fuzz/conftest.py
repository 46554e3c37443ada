"""Fixtures of the fuzz tests: a memory cap, scratch folders and the per-reader tally."""

from __future__ import annotations

import resource

import pytest

from ._harness import DEEP, KNOWN_BUGS, PROFILE, SCALE, TALLY

#: Address space the fuzz tests may add to what the process already maps. Mutated shapes ask
#: for terabytes; with this cap such a request fails at once (as it would on a smaller machine)
#: instead of being overcommitted and filled for minutes.
HEADROOM = 2 * 2**30


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[0])
    return pages * resource.getpagesize()


@pytest.fixture(autouse=True, scope="module")
def memory_cap():
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = _mapped_bytes() + HEADROOM
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (OSError, ValueError):  # not Linux: run without the cap
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    terminalreporter.section(f"pyforge fuzz: inputs tried per reader (profile {PROFILE}"
                             f"{f', x{SCALE}' if DEEP else ''})")
    for reader in sorted(TALLY):
        counts = TALLY[reader]
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        terminalreporter.write_line(f"{reader}: {sum(counts.values())} ({detail})")
    if KNOWN_BUGS:
        terminalreporter.write_line(
            "known:<name> = escapes of a bug recorded in tests/fuzz/test_regressions.py")
