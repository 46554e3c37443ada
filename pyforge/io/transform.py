"""Caffe's DataTransformer: crop, mirror, mean subtraction and scale, in Caffe's order."""

from __future__ import annotations

import numpy as np

from ..blob import proto_shape, proto_values
from ..errors import DataError, NetError
from ..kernels.transform import transform_batch
from ..proto import caffe_pb2, read_binary_proto, resolve_path

TRAIN = caffe_pb2.TRAIN


class DataTransformer:
    """Applies a TransformationParameter to batches of (N, C, H, W) images.

    Random choices (mirror, TRAIN crop offsets) for batch ``k`` come from a generator seeded
    with ``(seed, k)``, so a batch is the same whether it is prepared early by the prefetch
    thread or again after a resume. Caffe also mirrors randomly in TEST when ``mirror`` is set;
    only the crop offset depends on the phase (centre crop in TEST).
    """

    def __init__(self, param: caffe_pb2.TransformationParameter, phase: int, seed: int,
                 where: str, source_file: str | None = None) -> None:
        self.param = param
        self.phase = phase
        self.seed = seed
        self.where = where
        self.scale = np.float32(param.scale)
        self.crop = int(param.crop_size)
        self.mirror = param.mirror
        if param.mean_file and len(param.mean_value):
            raise NetError(f"{where}: give either mean_file or mean_value, not both")
        self.mean_image: np.ndarray | None = None
        if param.mean_file:
            path = param.mean_file
            if "\0" in path:  # the OS refuses such a path with a ValueError, not an OSError
                raise DataError(f"{where}: mean_file {path!r} contains a NUL character")
            path = resolve_path(path, source_file, "mean_file")
            blob = read_binary_proto(path, caffe_pb2.BlobProto())
            shape = proto_shape(blob)
            values = proto_values(blob, "data")
            if values is None or len(shape) != 4 or shape[0] != 1:
                raise DataError(f"{where}: mean_file '{path}' must hold a 1 x C x H x W blob, "
                                f"found shape {shape}")
            if values.size != int(np.prod(shape)):
                raise DataError(f"{where}: mean_file '{path}' has shape "
                                f"{'x'.join(map(str, shape))} but holds {values.size} values, "
                                f"expected {int(np.prod(shape))}")
            if not np.isfinite(values).all():
                bad = int((~np.isfinite(values)).sum())
                raise DataError(f"{where}: mean_file '{path}' holds {bad} NaN or infinite "
                                f"value(s) of {values.size}; compute it again "
                                "(pyforge compute-image-mean)")
            self.mean_image = values.reshape(shape[1:])
        self.mean_values = [np.float32(v) for v in param.mean_value]
        self._mean_cache: dict[tuple[int, int, int], np.ndarray] = {}

    def output_shape(self, channels: int, height: int, width: int) -> tuple[int, int, int]:
        if self.crop:
            if self.crop > height or self.crop > width:
                raise DataError(f"{self.where}: crop_size {self.crop} is larger than the "
                                f"{height}x{width} images")
            return channels, self.crop, self.crop
        return channels, height, width

    def _mean(self, shape: tuple[int, int, int]) -> np.ndarray:
        mean = self._mean_cache.get(shape)
        if mean is not None:
            return mean
        c, h, w = shape
        if self.mean_image is not None:
            if self.mean_image.shape != shape:
                raise DataError(f"{self.where}: mean_file has shape {self.mean_image.shape} but "
                                f"the data is {c}x{h}x{w}")
            mean = self.mean_image
        elif self.mean_values:
            if len(self.mean_values) != 1 and len(self.mean_values) != c:
                raise DataError(f"{self.where}: give 1 mean_value or one per channel ({c}), "
                                f"found {len(self.mean_values)}")
            per_channel = np.array(self.mean_values * (c if len(self.mean_values) == 1 else 1),
                                   dtype=np.float32)
            mean = np.broadcast_to(per_channel[:, None, None], shape).copy()
        else:
            mean = np.zeros(shape, dtype=np.float32)
        self._mean_cache[shape] = mean
        return mean

    def _draws(self, batch_index: int, heights, widths, n: int):
        """Mirror flags and crop offsets of the ``n`` records of batch ``batch_index``, whose
        sizes are ``heights`` x ``widths`` (ints, or arrays for records of different sizes)."""
        rng = None
        if self.mirror or (self.crop and self.phase == TRAIN):
            rng = np.random.default_rng([self.seed, batch_index])
        mirror = np.zeros(n, dtype=np.bool_)
        if self.mirror:
            mirror = rng.integers(0, 2, size=n).astype(np.bool_)
        h_off = np.zeros(n, dtype=np.int64)
        w_off = np.zeros(n, dtype=np.int64)
        if self.crop:
            if self.phase == TRAIN:
                h_off = rng.integers(0, np.subtract(heights, self.crop) + 1, size=n)
                w_off = rng.integers(0, np.subtract(widths, self.crop) + 1, size=n)
            else:
                h_off[:] = np.subtract(heights, self.crop) // 2
                w_off[:] = np.subtract(widths, self.crop) // 2
        return mirror, h_off, w_off

    def transform(self, raw: np.ndarray, batch_index: int, out: np.ndarray) -> None:
        """Transform ``raw`` (N, C, H, W) into ``out`` (N, C, crop or H, crop or W)."""
        n, c, h, w = raw.shape
        mirror, h_off, w_off = self._draws(batch_index, h, w, n)
        transform_batch(raw, h_off, w_off, mirror, self._mean((c, h, w)), self.scale, out)

    def transform_records(self, raws: list[np.ndarray], batch_index: int,
                          out: np.ndarray) -> None:
        """Transform the (C, H, W) records of one batch into ``out``. Records of different
        sizes are each cropped on their own (Caffe's DataTransformer crops record by record,
        so under ``crop_size`` a batch may mix sizes); each must be at least the crop."""
        shapes = {raw.shape for raw in raws}
        if len(shapes) == 1:
            self.transform(np.stack(raws), batch_index, out)
            return
        heights = np.array([raw.shape[1] for raw in raws])
        widths = np.array([raw.shape[2] for raw in raws])
        for raw in raws:
            self.output_shape(*raw.shape)  # the crop must fit every record
        mirror, h_off, w_off = self._draws(batch_index, heights, widths, len(raws))
        for i, raw in enumerate(raws):
            transform_batch(raw[None], h_off[i : i + 1], w_off[i : i + 1], mirror[i : i + 1],
                            self._mean(raw.shape), self.scale, out[i : i + 1])
