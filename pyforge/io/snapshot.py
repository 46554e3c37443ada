"""Caffe's snapshot files: ``.caffemodel`` (NetParameter) and ``.solverstate`` (SolverState)."""

from __future__ import annotations

import os

from ..errors import WeightsError
from ..proto import caffe_pb2, read_binary_proto, write_binary_proto
from ..proto.upgrade import upgrade_net_param


def snapshot_filename(prefix: str, iteration: int, extension: str) -> str:
    """``<prefix>_iter_<N><extension>``, without zero padding, as Caffe names snapshots."""
    return f"{prefix}_iter_{iteration}{extension}"


def read_weights(path: str) -> caffe_pb2.NetParameter:
    """Read a .caffemodel (binary NetParameter, upgraded as Caffe does) or a .caffemodel.h5."""
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such weights file")
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a directory, expected a .caffemodel file")
    if _is_hdf5(path):
        return _read_hdf5_weights(path)
    if path.endswith(".solverstate"):
        raise WeightsError(f"{path}: this is a solver state, not weights; pass it with --snapshot "
                           "to resume, or give its .caffemodel to --weights")
    param = read_binary_proto(path, caffe_pb2.NetParameter())
    if not len(param.layer) and not len(param.layers):
        raise WeightsError(f"{path}: holds no layers; not a .caffemodel")
    return upgrade_net_param(param, path)


def _is_hdf5(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read: {exc.strerror}") from None


def _read_hdf5_weights(path: str) -> caffe_pb2.NetParameter:
    """Caffe's HDF5 weights: group /data/<layer>/<i> per parameter blob."""
    import h5py
    import numpy as np

    param = caffe_pb2.NetParameter()
    with h5py.File(path, "r") as f:
        if "data" not in f:
            raise WeightsError(f"{path}: HDF5 file has no /data group; not a Caffe .caffemodel.h5")
        for layer_name in f["data"]:
            group = f["data"][layer_name]
            lp = param.layer.add(name=layer_name)
            for i in range(len(group)):
                if str(i) not in group:
                    raise WeightsError(f"{path}: /data/{layer_name} lacks dataset '{i}'")
                array = np.asarray(group[str(i)], dtype=np.float32)
                blob = lp.blobs.add()
                blob.shape.dim.extend(array.shape)
                blob.data.extend(array.ravel())
    return param


def write_model(path: str, net_param: caffe_pb2.NetParameter) -> None:
    write_binary_proto(path, net_param)


def write_solver_state(path: str, state: caffe_pb2.SolverState) -> None:
    write_binary_proto(path, state)
