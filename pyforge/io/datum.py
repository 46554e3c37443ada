"""Decoding ``caffe.Datum`` records into arrays."""

from __future__ import annotations

import io

import numpy as np

from ..errors import DataError
from ..proto import caffe_pb2


def parse_datum(raw: bytes, where: str) -> caffe_pb2.Datum:
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(raw)
    except Exception as exc:  # protobuf raises DecodeError (or RuntimeWarning-like errors)
        raise DataError(f"{where}: not a valid Datum record ({len(raw)} bytes): {exc}") from None
    return datum


def datum_array(datum: caffe_pb2.Datum, where: str, force_color: bool = False,
                force_gray: bool = False) -> np.ndarray:
    """The datum's image as (C, H, W): uint8 from ``data``, float32 from ``float_data``."""
    if datum.encoded:
        return _decode_image(datum.data, where, force_color, force_gray)
    c, h, w = datum.channels, datum.height, datum.width
    if c <= 0 or h <= 0 or w <= 0:
        raise DataError(f"{where}: Datum has shape {c}x{h}x{w}; channels, height and width "
                        "must be positive")
    size = c * h * w
    if datum.data:
        if len(datum.data) != size:
            raise DataError(f"{where}: Datum data has {len(datum.data)} bytes, expected "
                            f"{c}x{h}x{w} = {size}")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(c, h, w)
    if len(datum.float_data) != size:
        raise DataError(f"{where}: Datum float_data has {len(datum.float_data)} values, "
                        f"expected {c}x{h}x{w} = {size}")
    return np.asarray(datum.float_data, dtype=np.float32).reshape(c, h, w)


def _decode_image(data: bytes, where: str, force_color: bool, force_gray: bool) -> np.ndarray:
    """Decode an encoded (JPEG/PNG) datum to (C, H, W) uint8 in BGR order, as OpenCV gives."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"{where}: the record is an encoded image; decoding it needs Pillow "
                        "(pip install Pillow)") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:
        raise DataError(f"{where}: cannot decode the encoded image: {exc}") from None
    if force_gray or (image.mode in ("L", "1", "I;16", "I") and not force_color):
        return np.asarray(image.convert("L"), dtype=np.uint8)[None]
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1))  # BGR, like OpenCV
