"""What SIGINT, SIGTERM, SIGHUP and SIGUSR1 do to a training run.

Caffe polls signal flags once per iteration (after the update, and before each test batch) and
acts on them: ``snapshot`` (write one and continue), ``stop`` (end training) or ``none``.
pyforge keeps that design and Caffe's flag values, with two differences users asked for:

- By default SIGINT (Ctrl-C) and SIGTERM (what batch schedulers send) finish the current
  iteration, write a snapshot and exit with status 0; Caffe's default for SIGINT is ``stop``.
  ``--sigint_effect=stop`` gives Caffe's behaviour (the final snapshot then follows
  ``snapshot_after_train``).
- A second SIGINT/SIGTERM while the first is being handled stops at once (exit 130). Snapshots
  are written atomically, so the last complete pair stays intact.

SIGHUP follows ``--sighup_effect`` (default ``snapshot``); SIGUSR1 always means "snapshot and
continue".
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

from .errors import UsageError

NONE, STOP, SNAPSHOT, SNAPSHOT_STOP = "none", "stop", "snapshot", "snapshot_stop"
#: The values --sigint_effect / --sighup_effect accept (Caffe's).
EFFECTS = (SNAPSHOT, STOP, NONE)


class SignalActions:
    """Signal flags turned into solver actions; the solver calls the object to poll them."""

    def __init__(self, sigint_effect: str | None = None, sighup_effect: str = SNAPSHOT) -> None:
        for name, value in (("sigint_effect", sigint_effect), ("sighup_effect", sighup_effect)):
            if value is not None and value not in EFFECTS:
                raise UsageError(f'invalid --{name} "{value}"; expected one of '
                                 f"{', '.join(EFFECTS)}")
        self.stop_effect = sigint_effect or SNAPSHOT_STOP
        self.hup_effect = sighup_effect
        self._pending: list[str] = []
        self._stopping = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        handlers = {signal.SIGINT: self._on_stop, signal.SIGTERM: self._on_stop}
        if hasattr(signal, "SIGHUP"):
            handlers[signal.SIGHUP] = self._on_hup
        if hasattr(signal, "SIGUSR1"):
            handlers[signal.SIGUSR1] = self._on_usr1
        for signum, handler in handlers.items():
            self._previous[signum] = signal.signal(signum, handler)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_stop(self, signum, frame) -> None:
        if self._stopping and self.stop_effect in (STOP, SNAPSHOT_STOP):
            raise KeyboardInterrupt  # the second one: stop now
        if self.stop_effect in (STOP, SNAPSHOT_STOP):
            self._stopping = True
        self._pending.append(self.stop_effect)

    def _on_hup(self, signum, frame) -> None:
        self._pending.append(self.hup_effect)

    def _on_usr1(self, signum, frame) -> None:
        self._pending.append(SNAPSHOT)

    def __call__(self) -> str:
        """The next requested action (each request is returned once)."""
        while self._pending:
            action = self._pending.pop(0)
            if action != NONE:
                return action
        return NONE


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM acts as Ctrl-C does outside training (while a net is built, in ``test`` and
    ``time``): the command stops at once with ``pyforge: interrupted`` and status 130, instead
    of dying silently with 143. Training installs its own handlers (:class:`SignalActions`)
    on top and puts this one back when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def ignore_interrupts() -> Callable[[], None]:
    """Ignore SIGINT and SIGTERM from now on; returns what restores the previous handlers.

    Once a command has been interrupted it only has to exit: a user who keeps pressing Ctrl-C
    would otherwise get Python's own KeyboardInterrupt traceback, or death by SIGINT, from the
    interpreter's shutdown instead of ``pyforge: interrupted`` and status 130."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {signum: signal.signal(signum, signal.SIG_IGN)
                for signum in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore
