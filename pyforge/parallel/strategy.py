"""How the training loop runs across processes: one strategy object, chosen at launch.

The loop calls the same methods whatever the launch and never asks which one it is:

- :class:`SingleProcessTraining` (the default) makes every call cost nothing and reads the
  signals where Caffe reads them, after the update;
- :class:`DataParallelTraining` (``mpiexec -n N pyforge train``) is Caffe's data parallelism:
  every rank trains on its own shard of the data (records r, r+N, ...), the gradients are summed
  in one collective after each backward pass and scaled by 1/N, the control flags (stop,
  snapshot, a non-finite loss) ride in the same collective so that every rank acts on a signal
  at the same iteration, and rank 0 alone logs, tests and writes snapshots.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..errors import PyforgeError
from ..signals import NONE, SNAPSHOT, SNAPSHOT_STOP, STOP
from .comm import Communicator

if TYPE_CHECKING:
    from ..net.net import Net

T = TypeVar("T")

#: The control flags sent after the gradients in the data-parallel collective, in slot order.
CONTROL_FLAGS = ("stop", "snapshot", "nonfinite")


class TrainingStrategy(abc.ABC):
    """What the solver asks of the processes it trains in (see the module's docstring)."""

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def is_leader(self) -> bool:
        """Rank 0: the process that logs, tests and writes snapshots for the job."""
        return self.comm.rank == 0

    #: Slots the train net reserves after its gradients for :data:`CONTROL_FLAGS`.
    control_slots = 0

    @abc.abstractmethod
    def quiet_followers(self, logger: logging.Logger) -> None:
        """Leave only errors in the log of every process but the leader."""

    @abc.abstractmethod
    def shard_data(self, net: Net) -> None:
        """Give each rank its share of the train net's data."""

    @abc.abstractmethod
    def join(self, net: Net, identity: Callable[[], object], batch: int, iter_size: int,
             logger: logging.Logger) -> None:
        """Check that every rank built the same solver (``identity()``, JSON) and give all
        of them the leader's weights."""

    def heartbeat(self, iteration: int) -> None:
        """Tell the leader this rank has reached ``iteration`` (for the stall report)."""
        self.comm.heartbeat(iteration)

    @abc.abstractmethod
    def exchange_gradients(self, net: Net, loss: np.float32, poll: Callable[[], str],
                           iteration: int) -> bool:
        """After the backward passes: make the gradients those of the whole job. True when
        another rank's loss was not finite (this one's was)."""

    @abc.abstractmethod
    def requested_action(self, poll: Callable[[], str]) -> str:
        """After the update: the signal request every rank acts on now (``signals.NONE``,
        ``STOP``, ...); ``poll()`` reads this process's pending signal."""

    @abc.abstractmethod
    def leader_decides(self, decide: Callable[[], T]) -> T:
        """Run ``decide()`` on the leader only and give every rank its result."""

    @abc.abstractmethod
    def leader_reads(self, read: Callable[[], None]) -> None:
        """Run ``read()`` on the leader only (files need not be on every machine); its
        PyforgeError is raised on every rank."""

    @abc.abstractmethod
    def share_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        """Overwrite every rank's arrays with the leader's, in place."""

    @abc.abstractmethod
    def share(self, value: T) -> T:
        """The leader's ``value``, on every rank."""

    @abc.abstractmethod
    def gather_rank_states(self, net: Net) -> list | None:
        """Every rank's data cursors and random states, for a snapshot (None: one process,
        whose state the snapshot already holds)."""

    @abc.abstractmethod
    def adopt_rank_state(self, net: Net, rank_states: list | None) -> None:
        """At resume: this rank's own entry of :meth:`gather_rank_states`'s list."""

    @abc.abstractmethod
    def abort_job(self, logger: logging.Logger, error: PyforgeError) -> None:
        """An error on one rank: end every rank (the others may wait in a collective)."""

    def close(self) -> None:
        self.comm.close()


class SingleProcessTraining(TrainingStrategy):
    """One process: nothing to exchange or share."""

    def __init__(self, comm: Communicator | None = None) -> None:
        super().__init__(comm or Communicator())

    def quiet_followers(self, logger: logging.Logger) -> None:
        pass

    def shard_data(self, net: Net) -> None:
        pass

    def join(self, net: Net, identity: Callable[[], object], batch: int, iter_size: int,
             logger: logging.Logger) -> None:
        pass

    def exchange_gradients(self, net: Net, loss: np.float32, poll: Callable[[], str],
                           iteration: int) -> bool:
        return False

    def requested_action(self, poll: Callable[[], str]) -> str:
        # Caffe's place: Solver::Step reads the requested action after ApplyUpdate.
        return poll()

    def leader_decides(self, decide: Callable[[], T]) -> T:
        return decide()

    def leader_reads(self, read: Callable[[], None]) -> None:
        read()

    def share_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        pass

    def share(self, value: T) -> T:
        return value

    def gather_rank_states(self, net: Net) -> list | None:
        return None

    def adopt_rank_state(self, net: Net, rank_states: list | None) -> None:
        pass

    def abort_job(self, logger: logging.Logger, error: PyforgeError) -> None:
        pass


class DataParallelTraining(TrainingStrategy):
    """Caffe's data parallelism over a communicator of several ranks (see the module)."""

    control_slots = len(CONTROL_FLAGS)

    def __init__(self, comm: Communicator) -> None:
        super().__init__(comm)
        self._agreed = NONE

    def quiet_followers(self, logger: logging.Logger) -> None:
        if not self.is_leader:
            logger.setLevel(logging.ERROR)

    def shard_data(self, net: Net) -> None:
        for layer in net.layers:
            if hasattr(layer, "set_shard"):
                layer.set_shard(self.comm.rank, self.comm.size)

    def join(self, net: Net, identity: Callable[[], object], batch: int, iter_size: int,
             logger: logging.Logger) -> None:
        digest = hashlib.sha256(json.dumps(identity()).encode()).hexdigest()
        digests = self.comm.allgather_object(digest)
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise PyforgeError(f"ranks {differing} built a different net or solver than rank 0 "
                               "(check that every machine has the same files and pyforge "
                               "version); stopping every rank")
        self.comm.broadcast_(net.param_data)
        size = self.comm.size
        logger.info("Data parallel over %d ranks: effective batch %d (batch %d x iter_size %d x "
                    "%d ranks); rank r reads records r, r+%d, ...", size, batch * iter_size * size,
                    batch, iter_size, size, size)

    def exchange_gradients(self, net: Net, loss: np.float32, poll: Callable[[], str],
                           iteration: int) -> bool:
        """One in-place sum over the ranks of the gradients and, in the slots after them, the
        control flags; then the average, as Caffe does (sum, then scale by 1/N). This rank's
        signal is read here, so that every rank acts on the agreed one at the same iteration."""
        request = poll()
        flags = net.diff_buffer[len(net.param_diff):]
        flags[:] = 0
        flags[CONTROL_FLAGS.index("stop")] = request in (STOP, SNAPSHOT_STOP)
        flags[CONTROL_FLAGS.index("snapshot")] = request in (SNAPSHOT, SNAPSHOT_STOP)
        flags[CONTROL_FLAGS.index("nonfinite")] = not np.isfinite(loss)
        self.comm.allreduce_sum_(net.diff_buffer, iteration)
        net.param_diff *= np.float32(1.0 / self.comm.size)
        stop = flags[CONTROL_FLAGS.index("stop")] > 0
        snap = flags[CONTROL_FLAGS.index("snapshot")] > 0
        self._agreed = (SNAPSHOT_STOP if stop and snap else STOP if stop
                        else SNAPSHOT if snap else NONE)
        return bool(flags[CONTROL_FLAGS.index("nonfinite")] > 0 and np.isfinite(loss))

    def requested_action(self, poll: Callable[[], str]) -> str:
        request, self._agreed = self._agreed, NONE
        return request

    def leader_decides(self, decide: Callable[[], T]) -> T:
        return self.comm.broadcast_object(decide() if self.is_leader else None)

    def leader_reads(self, read: Callable[[], None]) -> None:
        error = None
        if self.is_leader:
            try:
                read()
            except PyforgeError as exc:
                error = exc
        error = self.comm.broadcast_object(error)
        if error is not None:
            raise error

    def share_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        for array in arrays:
            self.comm.broadcast_(array)

    def share(self, value: T) -> T:
        return self.comm.broadcast_object(value)

    def gather_rank_states(self, net: Net) -> list | None:
        return self.comm.allgather_object(net.get_state())

    def adopt_rank_state(self, net: Net, rank_states: list | None) -> None:
        if rank_states and self.comm.rank < len(rank_states):
            net.set_state(rank_states[self.comm.rank])

    def abort_job(self, logger: logging.Logger, error: PyforgeError) -> None:
        """MPI_Abort ends this process too, so the error is logged first, at any log level."""
        logger.setLevel(logging.INFO)
        logger.error("rank %d: %s", self.comm.rank, error)
        # Give the launcher time to forward the message before the abort tears the job down.
        sys.stderr.flush()
        time.sleep(1.0)
        self.comm.abort(error.exit_code)


def training_strategy(comm: Communicator | None = None) -> TrainingStrategy:
    """Data parallelism when ``comm`` spans several ranks, else the single-process strategy."""
    if comm is not None and comm.size > 1:
        return DataParallelTraining(comm)
    return SingleProcessTraining(comm)
