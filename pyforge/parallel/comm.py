"""The communicator: one small interface, a single-process implementation and an MPI one.

The MPI implementation never blocks without a bound: each collective is started non-blocking
and polled until ``timeout`` seconds, so a rank that died or stalled makes the others stop with
an error instead of hanging, and rank 0 names the ranks that went silent (see the heartbeats of
:class:`MPICommunicator`).
"""

from __future__ import annotations

import pickle
import threading
import time

import numpy as np

from ..config import mpi_launch_size
from ..errors import PyforgeError

#: Environment variables set by MPI launchers (MPICH/Hydra, Open MPI, PMIx, Slurm's PMI).
HEARTBEAT_TAG = 77


class StalledRankError(PyforgeError):
    """A collective did not complete in time: a rank died or stalled."""


class Communicator:
    """Single-process communicator: rank 0 of 1, every collective a no-op."""

    rank = 0
    size = 1
    name = "single process"

    def allreduce_sum_(self, buf: np.ndarray, iteration: int = -1) -> None:
        """Sum ``buf`` over the ranks, in place."""

    def broadcast_(self, buf: np.ndarray, root: int = 0) -> None:
        """Overwrite ``buf`` with root's values, in place."""

    def broadcast_object(self, obj, root: int = 0):
        return obj

    def allgather_object(self, obj) -> list:
        return [obj]

    def heartbeat(self, iteration: int) -> None:
        """Tell rank 0 this rank has reached ``iteration``."""

    def abort(self, code: int = 1) -> None:
        """End every rank of the job."""

    def close(self) -> None:
        pass


SingleProcess = Communicator


class MPICommunicator(Communicator):
    """MPI_COMM_WORLD through mpi4py, with bounded waits.

    Each rank > 0 runs a small thread that sends rank 0, every ``BEAT_SECONDS``, the iteration
    it has reached. A frozen or dead rank stops beating, so when a collective times out rank 0
    can name the ranks that went silent or fell behind."""

    BEAT_SECONDS = 0.5

    def __init__(self, timeout: float) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.name = f"MPI rank {self.rank} of {self.size} on {MPI.Get_processor_name()}"
        self.timeout = timeout
        self._iteration = -1
        self._stop = threading.Event()
        self._last_seen = [-1] * self.size
        self._last_time = [time.monotonic()] * self.size
        self._beat_buffers: dict[int, np.ndarray] = {}
        self._beat_requests: dict = {}
        self._thread = None
        # Heartbeats need MPI calls from a second thread.
        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
            return
        if self.rank == 0:
            for r in range(1, self.size):
                self._post_beat(r)
        else:
            self._thread = threading.Thread(target=self._beat_loop, daemon=True,
                                            name="pyforge-heartbeat")
            self._thread.start()

    def _post_beat(self, r: int) -> None:
        buf = np.zeros(1, dtype=np.int64)
        self._beat_buffers[r] = buf
        self._beat_requests[r] = self.comm.Irecv(buf, source=r, tag=HEARTBEAT_TAG)

    def _beat_loop(self) -> None:
        buf = np.zeros(1, dtype=np.int64)
        while not self._stop.wait(self.BEAT_SECONDS):
            buf[0] = self._iteration
            request = self.comm.Isend(buf, dest=0, tag=HEARTBEAT_TAG)
            while not request.Test():
                if self._stop.wait(0.01):
                    request.Cancel()
                    request.Wait()
                    return

    def _collect_beats(self) -> None:
        now = time.monotonic()
        for r in list(self._beat_requests):
            while self._beat_requests[r].Test():
                self._last_seen[r] = int(self._beat_buffers[r][0])
                self._last_time[r] = now
                self._post_beat(r)

    def heartbeat(self, iteration: int) -> None:
        self._iteration = iteration
        if self.rank == 0:
            self._last_seen[0] = iteration
            self._collect_beats()

    def _wait(self, request, what: str, iteration: int) -> None:
        deadline = time.monotonic() + self.timeout
        while not request.Test():
            if self.rank == 0:
                self._collect_beats()
            if time.monotonic() > deadline:
                raise StalledRankError(self._stall_message(what, iteration))
            time.sleep(0.0002)

    def _stall_message(self, what: str, iteration: int) -> str:
        if self.rank != 0:
            return (f"rank {self.rank}: {what} did not complete within {self.timeout:g} s at "
                    f"iteration {iteration}; another rank died or stalled (rank 0 names it)")
        self._collect_beats()
        now = time.monotonic()
        silent = [r for r in range(1, self.size)
                  if now - self._last_time[r] > 4 * self.BEAT_SECONDS
                  or self._last_seen[r] < iteration]
        # (a rank stopped before its first heartbeat has no iteration to name)
        names = ", ".join(f"rank {r} ("
                          + (f"last seen at iteration {self._last_seen[r]}"
                             if self._last_seen[r] >= 0 else "no heartbeat since the start")
                          + f", {now - self._last_time[r]:.0f} s ago)" for r in silent)
        return (f"{what} did not complete within {self.timeout:g} s at iteration {iteration}: "
                f"{names or 'an unknown rank'} died or stalled; stopping every rank")

    def allreduce_sum_(self, buf: np.ndarray, iteration: int = -1) -> None:
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        self._wait(request, "the gradient allreduce", iteration)

    def broadcast_(self, buf: np.ndarray, root: int = 0) -> None:
        request = self.comm.Ibcast(buf, root=root)
        self._wait(request, "a broadcast", self._iteration)

    def broadcast_object(self, obj, root: int = 0):
        data = pickle.dumps(obj) if self.rank == root else b""
        length = np.array([len(data)], dtype=np.int64)
        self.broadcast_(length, root)
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root else np.empty(
            int(length[0]), dtype=np.uint8)
        self.broadcast_(buf, root)
        return pickle.loads(buf.tobytes())

    def allgather_object(self, obj) -> list:
        return [self.broadcast_object(obj if self.rank == r else None, root=r)
                for r in range(self.size)]

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)

    def close(self) -> None:
        """Stop the heartbeat thread and cancel the posted receives (MPI wants every request
        finished before it shuts down)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for request in self._beat_requests.values():
            request.Cancel()
            request.Wait()
        self._beat_requests.clear()


def launched_by_mpi() -> int:
    """The world size an MPI launcher announced in the environment (0 when none did)."""
    return mpi_launch_size()


def get_communicator(timeout: float | None = None) -> Communicator:
    """The MPI communicator under ``mpiexec -n N`` (N > 1), else the single-process one."""
    size = launched_by_mpi()
    if size <= 1:
        return Communicator()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise PyforgeError(f"launched by an MPI launcher with {size} processes but mpi4py is "
                           "not installed; pip install 'pyforge[mpi]' (or run without "
                           "mpiexec)") from None
    if timeout is None:
        from ..config import load

        timeout = load().mpi_timeout
    return MPICommunicator(timeout)
