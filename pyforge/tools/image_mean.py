"""Caffe's ``tools/compute_image_mean``: the mean image of a Datum database, as a BlobProto.

The mean is accumulated as Caffe accumulates it, in float32, record by record in key order
(so the file has Caffe's values bit for bit), then divided by the record count. The file is a
``1 x C x H x W`` BlobProto in the legacy num/channels/height/width fields, which is what
``transform_param { mean_file }`` reads. The per-channel means are logged as Caffe logs them
(``mean_value channel [c]:v``), ready to paste as ``mean_value`` entries.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ..errors import DataError
from ..io.datum import NATIVE, datum_array, decode_image, parse_datum
from ..io.db import backend_from_name, open_reader
from ..log import fmt, get_logger
from ..proto import caffe_pb2, write_binary_proto

LOG_EVERY = 10000

Progress = Callable[[int, int], object]


def compute_image_mean(
    db_path: str | os.PathLike,
    mean_file: str | os.PathLike | None = None,
    backend: str | int = "lmdb",
    progress: Progress | None = None,
) -> tuple[np.ndarray, list[float]]:
    """The (C, H, W) float32 mean image of the database and its per-channel means; written to
    ``mean_file`` when given. Every record must have the first record's shape."""
    log = get_logger()
    db_path = os.fspath(db_path)
    reader = open_reader(db_path, backend_from_name(backend), "compute_image_mean")
    try:
        total = len(reader)
        where0 = f"{db_path} record {reader.key(0).decode(errors='replace')!r}"
        first = parse_datum(reader.value(0), where0)
        if first.encoded:
            log.info("Decoding Datum")
        shape = None
        sums = None
        log.info("Starting iteration")
        for index in range(total):
            key = reader.key(index).decode(errors="replace")
            where = f"{db_path} record {key!r}"
            datum = parse_datum(reader.value(index), where)
            if datum.encoded:
                # Caffe's DecodeDatumNative: the file's own channels.
                image = decode_image(datum.data, where, NATIVE)
            else:
                image = datum_array(datum, where)
            if shape is None:
                shape = image.shape
                sums = np.zeros(shape, dtype=np.float32)
            elif image.shape != shape:
                raise DataError(f"{where}: image is {'x'.join(map(str, image.shape))} (CxHxW), "
                                f"the first record {'x'.join(map(str, shape))}; a mean needs "
                                "one size (convert with --resize_height/--resize_width)")
            # float32 += uint8/float32 element by element: Caffe's sums exactly.
            np.add(sums, image, out=sums, dtype=np.float32)
            done = index + 1
            if done % LOG_EVERY == 0:
                log.info("Processed %d files.", done)
                if progress is not None and done < total:
                    progress(done, total)
    finally:
        reader.close()
    if total % LOG_EVERY:
        log.info("Processed %d files.", total)
    if progress is not None:
        progress(total, total)
    mean = sums / np.float32(total)
    channels, height, width = mean.shape
    if mean_file is not None:
        log.info("Write to %s", os.fspath(mean_file))
        proto = caffe_pb2.BlobProto(num=1, channels=channels, height=height, width=width)
        proto.data.extend(mean.ravel().tolist())
        write_binary_proto(mean_file, proto)
    log.info("Number of channels: %d", channels)
    channel_means = []
    for c in range(channels):
        # Caffe sums each channel in a float, in order: cumsum keeps that order (sum() would
        # add pairwise).
        total_c = np.cumsum(mean[c].ravel(), dtype=np.float32)[-1]
        value = float(total_c / np.float32(height * width))
        channel_means.append(value)
        log.info("mean_value channel [%d]:%s", c, fmt(value))
    return mean, channel_means
