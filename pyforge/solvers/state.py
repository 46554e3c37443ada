"""Snapshots and resuming (Caffe's Solver::Snapshot and Restore), from the solver's side.

:mod:`pyforge.io.snapshot` reads and writes the files (``.caffemodel``, ``.solverstate`` and
their HDF5 forms); this module decides what goes in them and brings a solver back from them:
Caffe's SolverState fields (iteration, lr step, update history, the weights file), and the
record pyforge adds for an exact resume (data cursors, random states, the smoothed-loss window,
the watches), with the checks that refuse a state written by another solver type or for another
net, and warnings for the settings changed since. It lives with the solvers, not in ``io/``,
because it reads and sets the solver's loop state; ``io/`` knows nothing of solvers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import TYPE_CHECKING

import numpy as np

from ..atomic_write import remove_abandoned_temporaries
from ..errors import PyforgeError, WeightsError
from ..io.snapshot import (
    SolverStateData,
    load_weights,
    read_solver_state,
    snapshot_filename,
    write_model,
    write_solver_state,
)
from ..kernels.checks import all_finite
from ..log import fmt
from ..net.weights import nonfinite_note
from ..proto import caffe_pb2, parse_text_proto
from ..proto.io import debug_string

if TYPE_CHECKING:
    from .solver import Solver


# --- writing ----------------------------------------------------------------------------------
def write_snapshot(solver: Solver) -> str:
    """Write ``<prefix>_iter_<N>.caffemodel`` and ``.solverstate`` (``.h5`` for HDF5), the
    model first since the state names it; returns the model's path ("" on the ranks that do
    not write)."""
    p = solver.param
    extra = resume_record(solver)
    rank_states = solver.parallel.gather_rank_states(solver.net)
    if rank_states is not None:
        # Each rank's data cursors and random states, so that every rank resumes exactly.
        extra["rank_states"] = rank_states
    if not solver.parallel.is_leader:
        solver.last_snapshot_iter = solver.iter
        return ""
    remove_abandoned_snapshot_files(p.snapshot_prefix, solver.logger)
    hdf5 = p.snapshot_format == caffe_pb2.SolverParameter.HDF5
    suffix = ".h5" if hdf5 else ""
    kind = "HDF5 file" if hdf5 else "binary proto file"
    model_file = snapshot_filename(p.snapshot_prefix, solver.iter, ".caffemodel" + suffix)
    solver.logger.info("Snapshotting to %s %s", kind, model_file)
    write_model(model_file, solver.net, write_diff=p.snapshot_diff, hdf5=hdf5)
    state_file = snapshot_filename(p.snapshot_prefix, solver.iter, ".solverstate" + suffix)
    solver.logger.info("Snapshotting solver state to %s %s", kind, state_file)
    state = SolverStateData(solver.iter, model_file, solver.lr_state.current_step,
                            [blob.data for blob in solver.history], extra)
    write_solver_state(state_file, state, hdf5=hdf5)
    solver.last_snapshot = (model_file, state_file)
    solver.last_snapshot_iter = solver.iter
    return model_file


def remove_abandoned_snapshot_files(prefix: str, logger: logging.Logger) -> None:
    """Remove the temporary snapshot files (``.<prefix>_iter_<N>.caffemodel.tmp<pid>``) that
    runs killed while writing them left beside ``prefix``: pyforge's own, of this prefix, of
    processes no longer alive. Jobs that get killed often would otherwise fill their folder."""
    folder, base = os.path.split(prefix)
    snapshot_name = re.compile(re.escape(base) + r"_(iter_[0-9]+|best)\.(caffemodel|solverstate)"
                               r"(\.h5)?")
    removed = remove_abandoned_temporaries(folder, lambda n: bool(snapshot_name.fullmatch(n)))
    if removed:
        logger.info("Removed %d temporary snapshot file(s) left by a run that was killed while "
                    "writing: %s", len(removed), ", ".join(removed[:3])
                    + (", ..." if len(removed) > 3 else ""))


def resume_record(solver: Solver) -> dict:
    """What an exact resume needs beyond Caffe's SolverState fields (stored as JSON)."""
    return {
        "format": 1,
        "solver_type": solver.type_name,
        "net": solver.net.fingerprint(),
        "solver_param": debug_string(solver.param),
        "train_net": solver.net.get_state(),
        "test_nets": [net.get_state() for net in solver.test_nets],
        "smoothed_loss": {
            "losses": [float(x) for x in solver.losses],
            "value": float(solver.smoothed_loss),
            "start_iter": solver.loss_start_iter,
        },
        **solver.watchers.state(),
    }


# --- resuming ---------------------------------------------------------------------------------
def restore_solver(solver: Solver, path: str, force: bool = False) -> None:
    """Resume ``solver`` from a .solverstate[.h5] (or the .caffemodel beside one).

    A state written by Caffe restores what Caffe restores (the data cursors restart, as in
    Caffe). A state written by pyforge also restores the data cursors, random generators and
    the smoothed-loss window, so the run continues exactly; it is refused when it was written
    by another solver type or for another net, unless ``force``. Under data parallelism rank 0
    reads the files (they need not be on every machine) and sends what they hold."""
    parallel = solver.parallel
    parallel.leader_reads(lambda: _restore_here(solver, path, force))
    parallel.share_arrays([solver.net.param_data,
                           *(blob.data.reshape(-1) for blob in solver.history)])
    position = parallel.share((solver.iter, solver.lr_state.current_step, solver.resume_window,
                               solver.watchers.state(), solver.restored_rank_states))
    (solver.iter, solver.lr_state.current_step, solver.resume_window, watches,
     rank_states) = position
    solver.watchers.load(watches)
    parallel.adopt_rank_state(solver.net, rank_states)
    solver.resumed = True


def _restore_here(solver: Solver, path: str, force: bool) -> None:
    path = solverstate_for(path, solver.logger)
    state = read_solver_state(path)
    if state.extra is not None:
        with malformed_state(path):
            _check_compatible(solver, path, state.extra, force)
    if len(state.history) != len(solver.history):
        raise WeightsError(
            f"{path}: holds {len(state.history)} history blobs but a {solver.type_name} solver "
            f"on this net needs {len(solver.history)} ({len(solver.net.learnable)} learnable "
            f"parameter blobs x {solver.history_sets}); it was written by another solver type "
            "(AdaDelta and Adam keep two blobs per parameter) or for another net")
    for i, (blob, array) in enumerate(zip(solver.history, state.history)):
        if array.shape != blob.shape:
            raise WeightsError(f"{path}: history blob {i} has shape {array.shape}, the net's "
                               f"parameter {i} has {blob.shape}")
    learnable = solver.net.learnable
    nonfinite = [(learnable[i % len(learnable)].layer, learnable[i % len(learnable)].index,
                  array) for i, array in enumerate(state.history)
                 if not all_finite(np.ascontiguousarray(array).reshape(-1))]
    if nonfinite:
        raise WeightsError(f"{path}: the history of " + nonfinite_note(nonfinite)
                           + "; a diverged run or a damaged file")
    solver.iter = state.iteration
    if state.learned_net:
        load_weights(solver.net, learned_net_path(state.learned_net, path, solver.logger))
    solver.lr_state.current_step = state.current_step
    solver.logger.info("SGDSolver: restoring history")
    for blob, array in zip(solver.history, state.history):
        blob.data[...] = array
    solver.restored_rank_states = None
    if state.extra is not None:
        with malformed_state(path):
            _restore_extra(solver, state.extra)


def _restore_extra(solver: Solver, extra: dict) -> None:
    """Data cursors, random states, the smoothed-loss window and the watches."""
    solver.restored_rank_states = extra.get("rank_states")
    solver.net.set_state(extra.get("train_net", {}))
    for net, net_state in zip(solver.test_nets, extra.get("test_nets", [])):
        net.set_state(net_state)
    window = extra.get("smoothed_loss")
    if window:
        solver.resume_window = {"losses": [float(x) for x in window["losses"]],
                                "value": float(window["value"]),
                                "start_iter": int(window["start_iter"])}
    solver.watchers.load(extra)


def _check_compatible(solver: Solver, path: str, extra: dict, force: bool) -> None:
    problems = []
    saved_type = extra.get("solver_type")
    if saved_type and saved_type != solver.type_name:
        problems.append(f"it was written by solver type {saved_type}, this solver's type is "
                        f"{solver.type_name}")
    saved_net = extra.get("net")
    if saved_net is not None:
        difference = _net_difference(saved_net, solver.net.fingerprint())
        if difference:
            problems.append(f"it was written for another net ({difference})")
    if problems:
        message = f"{path}: " + "; ".join(problems)
        if not force:
            raise WeightsError(message + "; resuming would misread its history. Use a "
                               "matching solver and net, or --force to resume anyway")
        solver.logger.warning("%s; resuming anyway (--force)", message)
    saved_param = extra.get("solver_param")
    if saved_param:
        for line in settings_changed(saved_param, solver.param):
            solver.logger.warning("Solver setting changed since the snapshot: %s", line)


def solverstate_for(path: str, logger: logging.Logger) -> str:
    """Accept a .caffemodel[.h5] where the .solverstate belongs, when its partner exists."""
    for model_ext, state_ext in ((".caffemodel", ".solverstate"),
                                 (".caffemodel.h5", ".solverstate.h5")):
        if path.endswith(model_ext):
            partner = path[: -len(model_ext)] + state_ext
            if os.path.exists(partner):
                logger.info("%s holds weights only; resuming from its partner %s", path, partner)
                return partner
            raise WeightsError(f"{path}: this is a weights-only {model_ext} and no {partner} "
                               "is beside it; use --weights to fine-tune from it (weights only, "
                               "iteration 0), or pass a .solverstate to --snapshot to resume "
                               "(weights, iteration and solver history)")
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such solver state file")
    return path


@contextlib.contextmanager
def malformed_state(path: str):
    """pyforge's resume JSON of an unexpected shape is a clear error, not a crash."""
    try:
        yield
    except PyforgeError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
        raise WeightsError(f"{path}: pyforge_state is malformed ({type(exc).__name__}: "
                           f"{exc}); resume from a snapshot pyforge wrote, or remove the "
                           "field to resume as Caffe does") from None


def learned_net_path(learned_net: str, state_path: str, logger: logging.Logger) -> str:
    """The weights file a state names. Caffe stores the path as written at snapshot time
    (relative to that run's working directory); when it is not found from here, the file of
    that name beside the state is used."""
    if os.path.exists(learned_net):
        return learned_net
    beside = os.path.join(os.path.dirname(state_path), os.path.basename(learned_net))
    if os.path.exists(beside):
        logger.info("learned_net '%s' not found from the current directory; using '%s' beside "
                    "the solver state", learned_net, beside)
        return beside
    raise WeightsError(f"{state_path}: names weights '{learned_net}', which does not exist (nor "
                       f"'{beside}')")


def _net_difference(saved: list, current: list) -> str:
    saved_map = {name: (kind, shapes) for name, kind, shapes in saved}
    current_map = {name: (kind, shapes) for name, kind, shapes in current}
    notes = []
    for name, (kind, shapes) in saved_map.items():
        if name not in current_map:
            notes.append(f"layer '{name}' only in the snapshot")
        elif current_map[name] != (kind, shapes):
            notes.append(f"layer '{name}': {kind} {_shapes(shapes)} in the snapshot, "
                         f"{current_map[name][0]} {_shapes(current_map[name][1])} here")
    for name in current_map:
        if name not in saved_map:
            notes.append(f"layer '{name}' only in this net")
    return "; ".join(notes[:4]) + ("; ..." if len(notes) > 4 else "")


def _shapes(shapes: list) -> str:
    return ", ".join(str(tuple(s)) for s in shapes)


#: Settings whose change at resume is worth a warning (user_needs: "the old lr kept coming back").
_WATCHED_SETTINGS = ("type", "base_lr", "lr_policy", "gamma", "power", "stepsize", "stepvalue",
                     "max_iter", "momentum", "momentum2", "weight_decay", "regularization_type",
                     "iter_size", "clip_gradients", "delta", "rms_decay")


def settings_changed(saved_text: str, current: caffe_pb2.SolverParameter) -> list[str]:
    """``name: before -> after`` for each watched setting that differs from the snapshot's."""
    if not isinstance(saved_text, str):
        raise TypeError("solver_param should be text")
    try:
        saved = parse_text_proto(saved_text, caffe_pb2.SolverParameter(), "snapshot")
    except PyforgeError:
        return []
    changes = []
    for name in _WATCHED_SETTINGS:
        before, after = getattr(saved, name), getattr(current, name)
        if hasattr(before, "__len__") and not isinstance(before, str):
            before, after = list(before), list(after)
        if before != after:
            changes.append(f"{name}: {_show(before)} -> {_show(after)}")
    return changes


def _show(value) -> str:
    if isinstance(value, float):
        return fmt(value)
    return repr(value) if isinstance(value, str) else str(value)
