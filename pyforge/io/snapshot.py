"""Caffe's snapshot files, binary and HDF5.

- ``<prefix>_iter_<N>.caffemodel``: a binary NetParameter; ``.caffemodel.h5``: groups
  ``/data/<layer>/<i>`` holding owner parameters (and ``/diff/<layer>/<i>`` with snapshot_diff).
- ``<prefix>_iter_<N>.solverstate``: a binary SolverState; ``.solverstate.h5``: datasets
  ``iter``, ``learned_net``, ``current_step`` and group ``history/<i>``.

pyforge adds what exact resume needs as JSON: in the SolverState field ``pyforge_state`` (number
10000, which Caffe skips as an unknown field) or, in HDF5, a dataset ``pyforge_state`` (which
Caffe never reads). Every file is written to a temporary name, fsynced and renamed
(:mod:`pyforge.atomic_write`). What goes into a solver state, and resuming from one, is the
solvers' side: :mod:`pyforge.solvers.state`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..atomic_write import write_atomically, write_chunks_atomically
from ..blob import BlobValues
from ..errors import WeightsError
from ..proto import caffe_pb2, read_binary_proto, read_binary_proto_arrays
from ..proto.upgrade import upgrade_net_param
from ..proto.wire import NET_BLOBS, STATE_BLOBS, STATE_HISTORY, blob_chunks, message_chunks

if TYPE_CHECKING:
    from ..net.net import Net

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def snapshot_filename(prefix: str, iteration: int, extension: str) -> str:
    """``<prefix>_iter_<N><extension>``, without zero padding, as Caffe names snapshots."""
    return f"{prefix}_iter_{iteration}{extension}"


def is_hdf5(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(8) == HDF5_MAGIC
    except IsADirectoryError:
        raise WeightsError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read: {exc.strerror}") from None


# --- weights -------------------------------------------------------------------------------
def read_weights(path: str) -> caffe_pb2.NetParameter:
    """Read a binary .caffemodel (upgraded as Caffe does) as a NetParameter."""
    _check_weights_file(path)
    param = read_binary_proto(path, caffe_pb2.NetParameter())
    return _upgraded(param, path)


def read_weight_values(path: str) -> list[tuple[str, dict[int, BlobValues]]]:
    """Each layer's name and parameter values from a binary .caffemodel (any version), read at
    disk speed: the values come straight from the file's bytes (:mod:`pyforge.proto.wire`)."""
    _check_weights_file(path)
    param, arrays = read_binary_proto_arrays(path, caffe_pb2.NetParameter(), NET_BLOBS)
    param = _upgraded(param, path)
    # The upgrades keep the blobs in file order (a V0 net's padding layers have none).
    headers = [blob for layer in param.layer for blob in layer.blobs]
    if len(headers) != len(arrays):
        raise WeightsError(f"{path}: {len(arrays)} parameter blobs in the file but "
                           f"{len(headers)} after upgrading the net")
    values = iter(BlobValues.from_arrays(h, a) for h, a in zip(headers, arrays))
    return [(layer.name, {i: next(values) for i in range(len(layer.blobs))})
            for layer in param.layer]


def _check_weights_file(path: str) -> None:
    _check_file(path, "weights")
    if is_hdf5(path):
        raise WeightsError(f"{path}: is an HDF5 file; load it with load_weights()")
    _refuse_solver_state(path)


def _refuse_solver_state(path: str) -> None:
    if path.endswith(".solverstate") or path.endswith(".solverstate.h5"):
        raise WeightsError(f"{path}: this is a solver state, not weights; pass it with --snapshot "
                           "to resume, or give its .caffemodel to --weights")


def _upgraded(param: caffe_pb2.NetParameter, path: str) -> caffe_pb2.NetParameter:
    if not len(param.layer) and not len(param.layers):
        raise WeightsError(f"{path}: holds no layers; not a .caffemodel")
    return upgrade_net_param(param, path)


def _check_file(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such {what} file")
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a directory, expected a .caffemodel file")


def load_weights(net: Net, path: str) -> None:
    """Copy parameters into ``net`` by layer name from a .caffemodel or .caffemodel.h5
    (Caffe's CopyTrainedLayersFrom, which sniffs the format)."""
    _check_file(path, "weights")
    _refuse_solver_state(path)
    if not is_hdf5(path):
        net.copy_params_from(read_weight_values(path), path)
        return
    import h5py

    try:
        with h5py.File(path, "r") as f:
            data = f.get("data")
            if not isinstance(data, h5py.Group):
                raise WeightsError(f"{path}: HDF5 file has no /data group; not a Caffe "
                                   ".caffemodel.h5")
            source: list[tuple[str, dict[int, np.ndarray]]] = []
            _read_h5_layers(data, "", path, source)
    except WeightsError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: cannot read HDF5 weights: {_one_line(exc)}") from None
    # In HDF5 files Caffe writes only owner parameters: a missing shared one is fine.
    net.copy_params_from(source, path, missing_shared_ok=True)


def _read_h5_layers(group, prefix: str, path: str, source: list) -> None:
    """The layers under ``group`` of /data. A layer name with a '/' (GoogLeNet's
    ``inception_3a/1x1``) is a nested group in HDF5: a group's digit-named datasets are its
    layer's parameters, its subgroups are further layers."""
    import h5py

    for key in group:
        child = group.get(key)
        name = f"{prefix}{key}"
        where = f"{path}: /data/{name}"
        if not isinstance(child, h5py.Group):
            if prefix:
                continue  # a parameter dataset of the enclosing layer, read there
            raise WeightsError(f"{where} should be a group of parameter datasets")
        arrays = {}
        for item in child:
            dataset = child.get(item)
            if isinstance(dataset, h5py.Group):
                continue  # a deeper layer: see the recursion below
            if not (item.isascii() and item.isdigit()):
                raise WeightsError(f"{where}/{item}: parameter datasets are named 0, 1, ...")
            if (not isinstance(dataset, h5py.Dataset) or dataset.shape is None
                    or dataset.dtype.kind not in "fiu"):
                raise WeightsError(f"{where}/{item}: expected a numeric dataset")
            arrays[int(item)] = np.asarray(dataset, dtype=np.float32)
        if arrays or not any(isinstance(child.get(item), h5py.Group) for item in child):
            source.append((name, arrays))
        _read_h5_layers(child, f"{name}/", path, source)


def write_model(path: str, net: Net, write_diff: bool = False, hdf5: bool = False) -> None:
    if not hdf5:
        write_chunks_atomically(path, net.to_chunks(write_diff))
        return
    _write_hdf5(path, lambda f: _fill_model_h5(f, net, write_diff))


def _fill_model_h5(f, net: Net, write_diff: bool) -> None:
    data = f.create_group("data")
    diff = f.create_group("diff") if write_diff else None
    for layer_id, (name, layer) in enumerate(zip(net.layer_names, net.layers)):
        layer_data = data.create_group(name)
        layer_diff = diff.create_group(name) if diff is not None else None
        for i, blob in enumerate(layer.blobs):
            net_param_id = net.param_ids_of_layer[layer_id][i]
            if net.param_owner[net_param_id] == -1:  # only owners, as Caffe writes
                layer_data.create_dataset(str(i), data=blob.data)
            if layer_diff is not None:  # diffs regardless of sharing
                layer_diff.create_dataset(str(i), data=blob.diff)


def _write_hdf5(path: str, fill) -> None:
    import h5py

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            fill(f)

    write_atomically(path, write)


# --- solver state ----------------------------------------------------------------------------
@dataclass
class SolverStateData:
    iteration: int
    learned_net: str | None
    current_step: int
    history: list[np.ndarray]
    #: pyforge's extra state (None for files written by Caffe).
    extra: dict | None


def write_solver_state(path: str, state: SolverStateData, hdf5: bool = False) -> None:
    extra = json.dumps(state.extra, separators=(",", ":")).encode() if state.extra else None
    if hdf5:
        def fill(f) -> None:
            f.create_dataset("iter", data=np.array([state.iteration], dtype=np.int32))
            f.create_dataset("learned_net", data=np.bytes_(state.learned_net or ""))
            f.create_dataset("current_step", data=np.array([state.current_step], np.int32))
            history = f.create_group("history")
            for i, array in enumerate(state.history):
                history.create_dataset(str(i), data=array)
            if extra is not None:
                f.create_dataset("pyforge_state", data=np.bytes_(extra))

        _write_hdf5(path, fill)
        return
    proto = caffe_pb2.SolverState(iter=state.iteration, current_step=state.current_step)
    if state.learned_net is not None:
        proto.learned_net = state.learned_net
    if extra is not None:
        proto.pyforge_state = extra
    history = [blob_chunks(array.shape, array) for array in state.history]
    write_chunks_atomically(path, message_chunks(proto, STATE_HISTORY, history))


def read_solver_state(path: str) -> SolverStateData:
    """Read a .solverstate or .solverstate.h5, Caffe's or pyforge's."""
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such solver state file")
    if is_hdf5(path):
        return _read_state_h5(path)
    proto, arrays = read_binary_proto_arrays(path, caffe_pb2.SolverState(), STATE_BLOBS)
    if len(proto.history) == 0 and not proto.HasField("iter"):
        raise WeightsError(f"{path}: holds no solver state (no iter, no history); is it a "
                           ".caffemodel? Use --weights for weights")
    history = []
    for i, (blob, found) in enumerate(zip(proto.history, arrays)):
        values = BlobValues.from_arrays(blob, found).data
        shape = tuple(blob.shape.dim)
        if values is None or values.size != int(np.prod(shape, dtype=np.int64)):
            raise WeightsError(f"{path}: history blob {i} holds "
                               f"{0 if values is None else values.size} values for shape {shape}")
        history.append(values.reshape(shape))
    extra = _decode_extra(proto.pyforge_state, path) if proto.HasField("pyforge_state") else None
    learned = proto.learned_net if proto.HasField("learned_net") else None
    if isinstance(learned, bytes):  # protobuf hands back invalid UTF-8 as bytes
        raise WeightsError(f"{path}: learned_net is not UTF-8 text")
    return SolverStateData(proto.iter, learned, proto.current_step, history, extra)


def _read_state_h5(path: str) -> SolverStateData:
    import h5py

    def number(f, name: str, default: int | None = None) -> int:
        dataset = f.get(name)
        if dataset is None and default is not None:
            return default
        if (not isinstance(dataset, h5py.Dataset) or dataset.shape is None
                or dataset.dtype.kind not in "iu" or dataset.size < 1):
            raise WeightsError(f"{path}: '{name}' should be an integer dataset")
        return int(np.asarray(dataset).reshape(-1)[0])

    try:
        with h5py.File(path, "r") as f:
            iteration = number(f, "iter")
            current_step = number(f, "current_step", 0)
            learned = _h5_string(f, "learned_net", path) if "learned_net" in f else None
            group = f.get("history")
            if not isinstance(group, h5py.Group):
                raise WeightsError(f"{path}: no 'history' group in this HDF5 file; not a "
                                   "Caffe .solverstate.h5")
            history = []
            for i in range(len(group)):
                dataset = group.get(str(i))
                if (not isinstance(dataset, h5py.Dataset) or dataset.shape is None
                        or dataset.dtype.kind not in "fiu"):
                    raise WeightsError(f"{path}: history/{i} should be a numeric dataset")
                history.append(np.asarray(dataset, dtype=np.float32))
            extra = (_decode_extra(_h5_string(f, "pyforge_state", path).encode(), path)
                     if "pyforge_state" in f else None)
    except WeightsError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: cannot read the HDF5 solver state: {_one_line(exc)}") \
            from None
    return SolverStateData(iteration, learned, current_step, history, extra)


def _h5_string(f, name: str, path: str) -> str:
    import h5py

    dataset = f.get(name)
    if not isinstance(dataset, h5py.Dataset) or dataset.shape is None or dataset.size < 1:
        raise WeightsError(f"{path}: '{name}' should be a string dataset")
    value = dataset[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        try:
            return value.rstrip(b"\0").decode()
        except UnicodeDecodeError:
            raise WeightsError(f"{path}: '{name}' is not UTF-8 text") from None
    return str(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _decode_extra(raw: bytes, path: str) -> dict:
    try:
        extra = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WeightsError(f"{path}: pyforge_state is not valid JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise WeightsError(f"{path}: pyforge_state should be a JSON object, found "
                           f"{type(extra).__name__}")
    return extra
