"""The training strategies in one process: what the loop gets from each, with the other rank of
a two-rank job played by a scripted communicator (tests/parallel/test_mpi.py runs the real
MPI one under mpiexec)."""

from __future__ import annotations

import hashlib
import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from pyforge.errors import PyforgeError, WeightsError
from pyforge.parallel.comm import Communicator
from pyforge.parallel.strategy import (
    CONTROL_FLAGS,
    DataParallelTraining,
    SingleProcessTraining,
    training_strategy,
)
from pyforge.signals import NONE, SNAPSHOT, SNAPSHOT_STOP, STOP

f32 = np.float32


class OtherRank(Communicator):
    """Rank ``rank`` of two; the other rank's contributions are set by the test."""

    size = 2

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank
        self.other_buffer: np.ndarray | None = None
        self.leader_object = None  # what rank 0 broadcasts when this is rank 1
        self.other_object = None  # what the other rank contributes to allgather
        self.broadcasts: list[np.ndarray] = []

    def allreduce_sum_(self, buf, iteration=-1):
        buf += self.other_buffer

    def broadcast_(self, buf, root=0):
        self.broadcasts.append(buf)

    def broadcast_object(self, obj, root=0):
        return obj if self.rank == root else self.leader_object

    def allgather_object(self, obj):
        pair = [obj, self.other_object]
        return pair if self.rank == 0 else pair[::-1]


def net_with_gradients(values) -> SimpleNamespace:
    """The two arrays the exchange uses: the gradients, and the flag slots after them."""
    buffer = np.zeros(len(values) + len(CONTROL_FLAGS), f32)
    buffer[:len(values)] = values
    return SimpleNamespace(diff_buffer=buffer, param_diff=buffer[:len(values)])


def other_rank_sends(gradients, stop=False, snapshot=False, nonfinite=False) -> np.ndarray:
    return np.array([*gradients, stop, snapshot, nonfinite], f32)


def test_gradients_are_averaged_and_signals_agreed_in_one_collective():
    comm = OtherRank()
    parallel = DataParallelTraining(comm)
    net = net_with_gradients([2.0, -4.0, 1.0])
    comm.other_buffer = other_rank_sends([4.0, 0.0, 1.0], stop=True)
    polls = []
    elsewhere = parallel.exchange_gradients(net, f32(0.5), lambda: polls.append(1) or NONE, 7)
    np.testing.assert_array_equal(net.param_diff, [3.0, -2.0, 1.0])
    assert not elsewhere and polls == [1]  # this rank's signal is read at the exchange ...
    # ... and after the update every rank gets the agreed request, without polling again.
    assert parallel.requested_action(lambda: pytest.fail("polled after the exchange")) == STOP
    assert parallel.requested_action(lambda: SNAPSHOT) == NONE  # used once


@pytest.mark.parametrize(("mine", "theirs", "agreed"), [
    (SNAPSHOT, dict(stop=True), SNAPSHOT_STOP),
    (SNAPSHOT_STOP, {}, SNAPSHOT_STOP),
    (NONE, dict(snapshot=True), SNAPSHOT),
    (NONE, {}, NONE),
])
def test_requests_of_both_ranks_combine(mine, theirs, agreed):
    comm = OtherRank()
    parallel = DataParallelTraining(comm)
    comm.other_buffer = other_rank_sends([0.0], **theirs)
    parallel.exchange_gradients(net_with_gradients([0.0]), f32(1), lambda: mine, 0)
    assert parallel.requested_action(lambda: NONE) == agreed


def test_a_non_finite_loss_elsewhere_is_reported_only_by_the_finite_ranks():
    comm = OtherRank()
    parallel = DataParallelTraining(comm)
    comm.other_buffer = other_rank_sends([0.0], nonfinite=True)
    assert parallel.exchange_gradients(net_with_gradients([1.0]), f32(1), lambda: NONE, 0)
    # The rank whose own loss is not finite reports where, itself.
    comm.other_buffer = other_rank_sends([0.0], nonfinite=False)
    assert not parallel.exchange_gradients(net_with_gradients([1.0]), f32(np.nan),
                                           lambda: NONE, 0)


def test_the_leaders_read_error_is_raised_on_every_rank():
    def read_a_bad_state() -> None:
        raise WeightsError("bad state")

    leader = DataParallelTraining(OtherRank(rank=0))
    with pytest.raises(WeightsError, match="bad state"):
        leader.leader_reads(read_a_bad_state)
    comm = OtherRank(rank=1)
    comm.leader_object = WeightsError("bad state")
    follower = DataParallelTraining(comm)
    with pytest.raises(WeightsError, match="bad state"):
        follower.leader_reads(lambda: pytest.fail("a follower read the files"))


def test_followers_take_the_leaders_decisions_and_their_own_rank_state():
    comm = OtherRank(rank=1)
    comm.leader_object = ("leader's result",)
    follower = DataParallelTraining(comm)
    assert follower.leader_decides(lambda: pytest.fail("a follower decided")) == (
        "leader's result",)
    assert follower.share("mine") == ("leader's result",)
    states = []
    net = SimpleNamespace(set_state=states.append, get_state=lambda: {"cursor": 1})
    follower.adopt_rank_state(net, [{"cursor": 0}, {"cursor": 1}])
    assert states == [{"cursor": 1}]
    comm.other_object = {"cursor": 0}
    assert follower.gather_rank_states(net) == [{"cursor": 0}, {"cursor": 1}]


def digest(identity) -> str:
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def test_joining_ranks_that_built_different_solvers_is_refused():
    comm = OtherRank()
    comm.other_object = digest(["another net", "solver"])
    net = SimpleNamespace(param_data=np.ones(3, f32))
    logger = logging.getLogger("test_strategy")
    with pytest.raises(PyforgeError, match=r"ranks \[1\] built a different net or solver"):
        DataParallelTraining(comm).join(net, lambda: ["net", "solver"], 16, 1, logger)
    assert comm.broadcasts == []


def test_joined_ranks_take_rank_0s_weights_and_log_the_effective_batch(caplog):
    comm = OtherRank()
    net = SimpleNamespace(param_data=np.ones(3, f32))
    parallel = DataParallelTraining(comm)
    comm.other_object = digest(["net", "solver"])
    logger = logging.getLogger("test_strategy")
    with caplog.at_level(logging.INFO, logger="test_strategy"):
        parallel.join(net, lambda: ["net", "solver"], 16, 2, logger)
    assert comm.broadcasts == [net.param_data]
    assert ("Data parallel over 2 ranks: effective batch 64 (batch 16 x iter_size 2 x 2 ranks); "
            "rank r reads records r, r+2, ...") in caplog.messages


def test_only_the_leader_logs_and_writes():
    logger = logging.getLogger("test_strategy.follower")
    DataParallelTraining(OtherRank(rank=1)).quiet_followers(logger)
    assert logger.level == logging.ERROR
    assert DataParallelTraining(OtherRank(rank=0)).is_leader
    assert not DataParallelTraining(OtherRank(rank=1)).is_leader
    assert DataParallelTraining.control_slots == len(CONTROL_FLAGS) == 3


def test_single_process_exchanges_nothing_and_reads_signals_after_the_update():
    parallel = SingleProcessTraining()
    net = net_with_gradients([2.0, 3.0])
    assert not parallel.exchange_gradients(net, f32(np.nan), lambda: pytest.fail("polled"), 0)
    np.testing.assert_array_equal(net.param_diff, [2.0, 3.0])
    assert parallel.requested_action(lambda: SNAPSHOT) == SNAPSHOT  # Caffe's place
    assert parallel.leader_decides(lambda: 42) == 42
    assert parallel.gather_rank_states(net) is None
    assert parallel.is_leader and parallel.rank == 0 and parallel.control_slots == 0


def test_the_strategy_follows_the_communicators_size():
    assert isinstance(training_strategy(), SingleProcessTraining)
    assert isinstance(training_strategy(Communicator()), SingleProcessTraining)
    assert isinstance(training_strategy(OtherRank()), DataParallelTraining)
