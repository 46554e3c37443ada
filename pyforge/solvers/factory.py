"""From a SolverParameter to a solver: the settings are checked, the train and test nets are read
and built with their weights (Caffe's Solver::Init, InitTrainNet and InitTestNets), and then
handed to the solver's class, which never reads a file itself.

:func:`create_solver` is what ``pyforge train``, insight and the tests call; pycaffe's solver
classes call :func:`build_nets` and their own constructor.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import NetError, PyforgeError, SolverError
from ..io.snapshot import load_weights
from ..log import fmt, get_logger
from ..net.net import Net
from ..net.sharing import sharing_problem
from ..parallel.strategy import SingleProcessTraining, TrainingStrategy
from ..proto import caffe_pb2, read_net_param, resolve_path
from ..proto.io import debug_string
from ..rng import make_rng
from ..signals import NONE
from .data_layers import batch_size, dataset_size
from .lr_policy import LrPolicy, get_policy
from .registry import solver_class
from .solver import Action, Solver
from .state import remove_abandoned_snapshot_files


def create_solver(param: caffe_pb2.SolverParameter, solver_file: str | None = None,
                  logger: logging.Logger | None = None, action: Action | None = None,
                  parallel: TrainingStrategy | None = None) -> Solver:
    """The solver of the type ``param.type`` names (Caffe's SolverRegistry::CreateSolver),
    with its nets built. ``solver_file``: the prototxt ``param`` came from (relative paths
    inside it are tried against its folder, and errors name it); ``action``: polled for the
    request of a signal (``signals.NONE`` when there is none)."""
    cls = solver_class(param.type, solver_file)
    logger = logger or get_logger()
    parallel = parallel or SingleProcessTraining()
    net, test_nets = build_nets(cls, param, solver_file, logger, parallel)
    try:
        return cls(param, net, test_nets, logger=logger, action=action or (lambda: NONE),
                   parallel=parallel)
    except BaseException:
        for built in (net, *test_nets):  # their data threads would outlive the error
            built.close()
        raise


def build_nets(solver_type: type[Solver], param: caffe_pb2.SolverParameter,
               solver_file: str | None = None, logger: logging.Logger | None = None,
               parallel: TrainingStrategy | None = None,
               unseeded_rng: np.random.Generator | None = None) -> tuple[Net, list[Net]]:
    """Log the settings, check them for ``solver_type``, and build the train net and the test
    nets with their weights; warnings about the settings are logged once the nets exist.

    ``unseeded_rng``: the generator the nets fill from when ``param`` sets no random_seed
    (pycaffe's ``caffe.set_random_seed``); by default one seeded by the OS."""
    logger = logger or get_logger()
    parallel = parallel or SingleProcessTraining()
    logger.info("Initializing solver from parameters: \n%s", debug_string(param))
    try:
        solver_type.check_params(param)
        lr_policy = get_policy(param)
        _resolve_snapshot_prefix(param, solver_file, logger)
        if parallel.is_leader:  # only rank 0 writes snapshots
            _check_snapshot_prefix_is_writable(param)
            remove_abandoned_snapshot_files(param.snapshot_prefix, logger)
    except SolverError as exc:
        raise _in_file(exc, solver_file) from None
    if param.HasField("random_seed") and param.random_seed >= 0:
        # Caffe seeds each solver with random_seed + its rank; rank 0's weights are broadcast
        # when the ranks join, so only the per-rank random streams (dropout, crops) differ.
        rng = make_rng(param.random_seed + parallel.rank)
    else:
        rng = unseeded_rng if unseeded_rng is not None else make_rng(None)
    reader = _NetReader(param, solver_file, logger, rng)
    try:
        net = reader.train_net(parallel)
        test_nets = reader.test_nets()
        for i, test_net in enumerate(test_nets):
            # Checked now rather than at the first test pass, which may come hours later.
            problem = sharing_problem(test_net, net, f"test net #{i}")
            if problem is not None:
                raise NetError(f"{solver_file}: {problem}" if solver_file else problem)
    except SolverError as exc:
        reader.close()
        raise _in_file(exc, solver_file) from None
    except BaseException:
        # The nets built so far may hold data threads and open databases.
        reader.close()
        raise
    _warn_about_settings(param, lr_policy, net, test_nets, logger)
    return net, test_nets


def _in_file(exc: SolverError, solver_file: str | None) -> SolverError:
    """The error with the solver file named first (errors from settings carry no file)."""
    if solver_file and not exc.message.startswith(solver_file):
        return SolverError(f"{solver_file}: {exc.message}")
    return exc


def _resolve_snapshot_prefix(param: caffe_pb2.SolverParameter, solver_file: str | None,
                             logger: logging.Logger) -> None:
    prefix = param.snapshot_prefix
    directory = os.path.dirname(prefix)
    if directory and not os.path.isdir(directory) and solver_file:
        candidate = os.path.join(os.path.dirname(solver_file), directory)
        if os.path.isdir(candidate):
            param.snapshot_prefix = os.path.join(os.path.dirname(solver_file), prefix)
            logger.info("snapshot_prefix folder '%s' does not exist relative to the current "
                        "directory; using '%s' (relative to %s)", directory, candidate,
                        solver_file)


def _check_snapshot_prefix_is_writable(param: caffe_pb2.SolverParameter) -> None:
    """Fail now rather than at the first snapshot, hours into training."""
    if not (param.snapshot > 0 or param.snapshot_after_train):
        return
    if param.snapshot > 0 and not param.snapshot_prefix:
        raise SolverError("snapshot is set but snapshot_prefix is not")
    probe = f"{param.snapshot_prefix}_iter_probe{os.getpid()}.tempfile"
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except (OSError, ValueError):  # ValueError: a NUL byte in the prefix
        raise SolverError(f"cannot write to snapshot_prefix '{param.snapshot_prefix}'; make "
                          "sure its directory exists and is writable") from None


class _NetReader:
    """Reads and builds the nets a SolverParameter names, all filling from one generator."""

    def __init__(self, param: caffe_pb2.SolverParameter, solver_file: str | None,
                 logger: logging.Logger, rng: np.random.Generator) -> None:
        self.param = param
        self.solver_file = solver_file
        self.logger = logger
        self.rng = rng
        #: Every net built, so that a failure part way closes them all.
        self.built: list[Net] = []

    def close(self) -> None:
        for net in self.built:
            net.close()

    def train_net(self, parallel: TrainingStrategy) -> Net:
        p = self.param
        sources = [p.HasField("train_net_param"), p.HasField("train_net"),
                   p.HasField("net_param"), p.HasField("net")]
        if sum(sources) != 1:
            raise SolverError("give exactly one of net, net_param, train_net, train_net_param "
                              f"in the solver; found {sum(sources)}")
        if p.HasField("train_net_param"):
            self.logger.info("Creating training net specified in train_net_param.")
            net_param, source = caffe_pb2.NetParameter(), self.solver_file
            net_param.CopyFrom(p.train_net_param)
        elif p.HasField("train_net"):
            self.logger.info("Creating training net from train_net file: %s", p.train_net)
            net_param, source = self._read(p.train_net)
        elif p.HasField("net_param"):
            self.logger.info("Creating training net specified in net_param.")
            net_param, source = caffe_pb2.NetParameter(), self.solver_file
            net_param.CopyFrom(p.net_param)
        else:
            self.logger.info("Creating training net from net file: %s", p.net)
            net_param, source = self._read(p.net)
        state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN)
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        net_param.state.CopyFrom(state)
        net = Net(net_param, rng=self.rng, logger=self.logger, source_file=source,
                  reserve_diff=parallel.control_slots)
        self.built.append(net)
        self._load_weights(net)
        parallel.shard_data(net)
        return net

    def test_nets(self) -> list[Net]:
        p = self.param
        generic = p.HasField("net") or p.HasField("net_param")
        if p.HasField("net") and p.HasField("net_param"):
            raise SolverError("give only one of net and net_param")
        specific = len(p.test_net_param) + len(p.test_net)
        n_tests = len(p.test_iter)
        if generic:
            if n_tests < specific:
                raise SolverError(f"test_iter must be given for each test net: {n_tests} "
                                  f"test_iter for {specific} test net(s)")
        elif n_tests != specific:
            raise SolverError(f"test_iter must be given once per test net: {n_tests} test_iter "
                              f"for {specific} test net(s)")
        n_generic = n_tests - specific
        total = specific + (n_generic if generic else 0)
        if len(p.test_state) and len(p.test_state) != total:
            raise SolverError(f"test_state must be empty or given once per test net: "
                              f"{len(p.test_state)} test_state for {total} test net(s)")
        if total and p.test_interval <= 0:
            raise SolverError(f"test_interval must be > 0 when there are test nets, found "
                              f"{p.test_interval}")
        specs: list[tuple[str, caffe_pb2.NetParameter, str | None]] = []
        for net_param in p.test_net_param:
            specs.append(("test_net_param", net_param, self.solver_file))
        for name in p.test_net:
            net_param, source = self._read(name)
            specs.append((f"test_net file: {name}", net_param, source))
        for _ in range(n_generic if generic else 0):
            if p.HasField("net"):
                net_param, source = self._read(p.net)
                specs.append((f"net file: {p.net}", net_param, source))
            else:
                specs.append(("net_param", p.net_param, self.solver_file))
        nets = []
        for i, (label, net_param, source) in enumerate(specs):
            copy = caffe_pb2.NetParameter()
            copy.CopyFrom(net_param)
            state = caffe_pb2.NetState(phase=caffe_pb2.TEST)
            state.MergeFrom(copy.state)
            if len(p.test_state):
                state.MergeFrom(p.test_state[i])
            copy.state.CopyFrom(state)
            self.logger.info("Creating test net (#%d) specified by %s", i, label)
            net = Net(copy, rng=self.rng, logger=self.logger, source_file=source)
            self.built.append(net)
            net.debug_info = p.debug_info
            self._load_weights(net)
            nets.append(net)
        return nets

    def _read(self, path: str) -> tuple[caffe_pb2.NetParameter, str]:
        resolved = resolve_path(path, self.solver_file, "net")
        try:
            return read_net_param(resolved), resolved
        except PyforgeError as exc:
            # Name the solver file when the message cannot show the net path plainly.
            if self.solver_file and (not resolved or resolved not in exc.message):
                raise type(exc)(f"{self.solver_file}: net: {exc.message}", exc.detail) from None
            raise

    def _load_weights(self, net: Net) -> None:
        for entry in self.param.weights:
            for path in entry.split(","):
                path = path.strip()
                if not path:
                    continue
                resolved = resolve_path(path, self.solver_file, "weights")
                self.logger.info("Finetuning from %s", path)
                load_weights(net, resolved)


def _warn_about_settings(param: caffe_pb2.SolverParameter, lr_policy: LrPolicy, net: Net,
                         test_nets: list[Net], logger: logging.Logger) -> None:
    """Checks Caffe does not make, logged as warnings: lr-policy parameters that the policy
    ignores, the effective batch, and test passes that do not cover their test set."""
    p = param
    for name in ("gamma", "power", "stepsize", "stepvalue"):
        is_set = len(p.stepvalue) > 0 if name == "stepvalue" else p.HasField(name)
        if is_set and name not in lr_policy.uses:
            logger.warning("%s is set but lr_policy '%s' does not use it (it uses %s)", name,
                           p.lr_policy, ", ".join(lr_policy.uses))
    if p.momentum >= 1:  # Adam refuses it (its beta1); SGD, Nesterov and AdaDelta only warn
        logger.warning("momentum: %s >= 1: the update history never decays, so the steps "
                       "grow without bound; Caffe's examples use 0.9", fmt(p.momentum))
    batch = batch_size(net)
    if batch:
        logger.info("Effective batch size: %d (batch %d x iter_size %d)", batch * p.iter_size,
                    batch, p.iter_size)
    for i, test_net in enumerate(test_nets):
        batch = batch_size(test_net)
        size = dataset_size(test_net)
        if batch and size and i < len(p.test_iter) and p.test_iter[i] * batch != size:
            logger.warning(
                "Test net #%d scores test_iter %d x batch %d = %d items per test pass, but its "
                "data holds %d; %s", i, p.test_iter[i], batch, p.test_iter[i] * batch, size,
                "each pass sees a different part" if p.test_iter[i] * batch < size
                else "some items are scored twice")
