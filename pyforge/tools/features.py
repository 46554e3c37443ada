"""Caffe's ``tools/extract_features``: run a trained net in the TEST phase and store the values
of some of its blobs, one Datum per item of each batch, in new LMDB or LevelDB databases.

Each record is a Datum with the blob's legacy channels, height and width (1 for the axes the
blob lacks) and the item's values as ``float_data``, under the key ``%010d`` of a running
index (one count per database, from 0). No label is stored, as in Caffe. Records are committed
every 1000, with Caffe's ``Extracted features of N query images for feature blob B`` lines
(logged at ERROR level, as Caffe's tool logs them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil

from ..blob import Blob
from ..errors import DataError, PyforgeError
from ..io.db import BatchedWriter, backend_from_name, open_writer
from ..io.snapshot import load_weights
from ..log import get_logger
from ..net.net import Net
from ..proto import caffe_pb2, read_net_param
from ..rng import make_rng

COMMIT_EVERY = 1000


def legacy_shape(blob: Blob, where: str) -> tuple[int, int, int, int]:
    """Caffe's num, channels, height and width of a blob: its axes, 1 for those it lacks; a
    blob of more than 4 axes has none (Caffe: "Cannot use legacy accessors on Blobs with > 4
    axes")."""
    shape = blob.shape
    if len(shape) > 4:
        raise DataError(f"{where}: blob of shape {blob.shape_string()} has more than 4 axes; "
                        "extract_features stores num x channels x height x width")
    padded = tuple(shape) + (1,) * (4 - len(shape))
    return int(padded[0]), int(padded[1]), int(padded[2]), int(padded[3])


def extract_features(weights: str, model: str, blob_names: list[str],
                     dataset_names: list[str], num_mini_batches: int,
                     backend: str = "lmdb") -> list[int]:
    """Run ``num_mini_batches`` TEST forwards of ``model`` with ``weights`` and write each
    named blob's items to the database of the same position in ``dataset_names``. Returns the
    number of records written to each database. Databases partly written when an error stops
    the run are removed."""
    log = get_logger()
    if len(blob_names) != len(dataset_names):
        raise PyforgeError(f"the number of blob names ({len(blob_names)}: "
                           f"{','.join(blob_names)}) and of dataset names "
                           f"({len(dataset_names)}: {','.join(dataset_names)}) must be equal")
    if num_mini_batches < 0:
        raise PyforgeError(f"num_mini_batches must be >= 0, found {num_mini_batches}")
    backend_from_name(backend)
    seen: set[str] = set()
    for name in dataset_names:
        if not name:
            raise PyforgeError("a dataset name is empty (names are separated by ',')")
        if os.path.realpath(name) in seen:
            raise PyforgeError(f"dataset '{name}' is named twice")
        seen.add(os.path.realpath(name))
        if os.path.lexists(name):
            raise DataError(f"'{name}' already exists; remove it or choose another output path")
    param = read_net_param(model)
    param.state.CopyFrom(caffe_pb2.NetState(phase=caffe_pb2.TEST))
    net = Net(param, rng=make_rng(None), logger=log, source_file=model)
    writers: list[BatchedWriter] = []
    try:
        load_weights(net, weights)
        blobs = net.blobs
        for name in blob_names:
            if name not in blobs:
                raise PyforgeError(f"Unknown feature blob name '{name}' in the network {model} "
                                   f"(its blobs: {', '.join(blobs)})")
        for name in dataset_names:
            log.info("Opening dataset %s", name)
            writers.append(open_writer(name, backend, commit_every=COMMIT_EVERY))
        log.error("Extracting Features")
        counts = [0] * len(blob_names)
        for _ in range(num_mini_batches):
            net.forward_loss()
            for i, name in enumerate(blob_names):
                counts[i] = _write_items(blobs[name], name, writers[i], counts[i], log)
        for i, (name, writer) in enumerate(zip(blob_names, writers)):
            writer.close()
            log.error("Extracted features of %d query images for feature blob %s", counts[i],
                      name)
    except BaseException:
        for writer, name in zip(writers, dataset_names):
            with contextlib.suppress(Exception):
                writer.close()
            shutil.rmtree(name, ignore_errors=True)
        raise
    finally:
        net.close()
    log.error("Successfully extracted the features!")
    return counts


def _write_items(blob: Blob, name: str, writer: BatchedWriter, count: int,
                 log: logging.Logger) -> int:
    """One Datum per item of ``blob`` (float_data, legacy C/H/W), keyed by the running index
    from ``count``; returns the new count."""
    num, channels, height, width = legacy_shape(blob, f"feature blob '{name}'")
    if num == 0:
        return count
    items = blob.data.reshape(num, -1)
    for item in items:
        datum = caffe_pb2.Datum(channels=channels, height=height, width=width)
        datum.float_data.extend(item.tolist())
        writer.put(b"%010d" % count, datum.SerializeToString())
        count += 1
        if count % COMMIT_EVERY == 0:
            log.error("Extracted features of %d query images for feature blob %s", count, name)
    return count


def device_note(device: str, device_id: str) -> None:
    """Caffe's CPU/GPU arguments: GPU is accepted with a warning (pyforge computes on the
    CPU); the device id must be a non-negative integer, as Caffe checks."""
    log = get_logger()
    if device.upper() not in ("CPU", "GPU"):
        raise PyforgeError(f"expected CPU or GPU after the database type, found {device!r}")
    if device.upper() == "CPU":
        if device_id:
            raise PyforgeError(f"a device id ({device_id}) goes with GPU only")
        log.error("Using CPU")
        return
    try:
        number = int(device_id or "0")
    except ValueError:
        raise PyforgeError(f"device_id must be an integer, found {device_id!r}") from None
    if number < 0:
        raise PyforgeError(f"device_id must be >= 0, found {number}")
    log.warning("GPU (device %d) requested; pyforge computes on the CPU", number)
    log.error("Using CPU")


def split_names(text: str) -> list[str]:
    """Caffe splits the blob and dataset lists at every ','."""
    return text.split(",")

