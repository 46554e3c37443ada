"""Images and ``caffe.Datum`` records: decoding, reading image files, resizing and encoding.

Images are (C, H, W) uint8 arrays with colour channels in BGR order. Decoding, grey
conversion, resizing and encoding are OpenCV's own calls, the ones Caffe makes (cv::imdecode
with IMREAD_COLOR / IMREAD_GRAYSCALE / -1, cv::resize INTER_LINEAR, cv::imencode), so the pixels
are Caffe's.
"""

from __future__ import annotations

import contextlib
import os

import cv2
import numpy as np

from ..errors import DataError
from ..log import get_logger
from ..proto import caffe_pb2

#: decode modes: the file's own channels (OpenCV IMREAD_UNCHANGED, which Caffe uses for
#: encoded datums without force_color/force_gray), 3-channel BGR, or 1-channel grey.
NATIVE, COLOR, GRAY = "native", "color", "gray"
_FLAGS = {NATIVE: cv2.IMREAD_UNCHANGED, COLOR: cv2.IMREAD_COLOR, GRAY: cv2.IMREAD_GRAYSCALE}


def parse_datum(raw: bytes, where: str) -> caffe_pb2.Datum:
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(raw)
    except Exception as exc:  # protobuf raises DecodeError (or RuntimeWarning-like errors)
        raise DataError(f"{where}: not a valid Datum record ({len(raw)} bytes): {exc}") from None
    return datum


def datum_array(datum: caffe_pb2.Datum, where: str, force_color: bool = False,
                force_gray: bool = False) -> np.ndarray:
    """The datum's image as (C, H, W): uint8 from ``data``, float32 from ``float_data``.

    Encoded datums are decoded: with their own channels, or as colour/grey when
    ``force_color``/``force_gray`` is set (Caffe's transform_param fields, which only apply
    to encoded data).
    """
    if datum.encoded:
        if force_color and force_gray:
            raise DataError(f"{where}: transform_param sets both force_color and force_gray")
        mode = COLOR if force_color else GRAY if force_gray else NATIVE
        return decode_image(datum.data, where, mode)
    c, h, w = datum.channels, datum.height, datum.width
    if c <= 0 or h <= 0 or w <= 0:
        raise DataError(f"{where}: Datum has shape {c}x{h}x{w}; channels, height and width "
                        "must be positive (or encoded must be set for an image file)")
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


@contextlib.contextmanager
def _opencv_quiet():
    """OpenCV logs its own WARN/ERROR lines for a malformed file before returning no image;
    pyforge reports the failure in one line of its own instead."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _imdecode(data: bytes, flag: int, where: str) -> np.ndarray:
    """cv::imdecode of file bytes as an (H, W) or (H, W, C) array; a file OpenCV cannot read is
    a one-line error naming ``where`` (the file or the record)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = None
    if buffer.size:
        with _opencv_quiet():
            try:
                image = cv2.imdecode(buffer, flag)
            except cv2.error:
                image = None
    if image is None:
        raise DataError(f"{where}: cannot decode the image ({len(data)} bytes): not a "
                        "complete image in a format OpenCV reads (JPEG, PNG, BMP, TIFF, PPM, "
                        f"WebP, ...); the data starts {bytes(data[:8])!r}")
    return image


def _planar(image: np.ndarray) -> np.ndarray:
    """OpenCV's interleaved (H, W[, C]) as pyforge's planar (C, H, W)."""
    if image.ndim == 2:
        return image[None].copy()
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def _interleaved(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))


def decode_image(data: bytes, where: str, mode: str = COLOR) -> np.ndarray:
    """Decode image file bytes (JPEG, PNG, ...) to (C, H, W) uint8 with OpenCV, as Caffe does:
    COLOR is cv::IMREAD_COLOR (3 channels, BGR), GRAY cv::IMREAD_GRAYSCALE (1 channel; JPEG's
    luma plane, libpng's conversion for PNG), NATIVE cv::imdecode(..., -1), Caffe's
    DecodeDatumToCVMatNative: the file's own channels (1, 3, or 4 as BGRA).

    Caffe's CVMatToDatum and DataTransformer take 8-bit images only (a CHECK); a 16-bit file
    decoded in NATIVE mode is refused here with the way out (COLOR and GRAY give 8 bits)."""
    image = _imdecode(data, _FLAGS[mode], where)
    if image.dtype != np.uint8:
        raise DataError(f"{where}: the image has {image.dtype.itemsize * 8}-bit samples; "
                        "Caffe's data transformer takes 8-bit images only (convert the file, "
                        "or set transform_param force_color or force_gray, which decode to 8 "
                        "bits)")
    return _planar(image)


def native_channels(data: bytes, where: str) -> int:
    """The channels :func:`decode_image` gives in NATIVE mode (1, 3 or 4)."""
    image = _imdecode(data, cv2.IMREAD_UNCHANGED, where)
    return 1 if image.ndim == 2 else image.shape[2]


def read_file(path: str, where: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise DataError(f"{where}: image file '{path}' does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{where}: '{path}' is a folder, expected an image file") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read image file '{path}': {exc.strerror}") from None


def read_image(path: str, where: str, height: int = 0, width: int = 0,
               is_color: bool = True) -> np.ndarray:
    """Caffe's ReadImageToCVMat: cv::imread ``path`` as colour or grey, resized (cv::resize,
    INTER_LINEAR) when both ``height`` and ``width`` are positive."""
    where = f"{where}: {path}" if where else path
    image = decode_image(read_file(path, where), where, COLOR if is_color else GRAY)
    if height > 0 and width > 0:
        image = resize_image(image, height, width)
    return image


def resize_image(image: np.ndarray, height: int, width: int,
                 nearest: bool = False) -> np.ndarray:
    """(C, H, W) uint8 resized to (C, height, width) by ``cv::resize`` with INTER_LINEAR, the
    call Caffe makes (OpenCV's bilinear does not smooth when it shrinks); INTER_NEAREST with
    ``nearest`` (the SegNet fork's label images)."""
    if image.shape[1:] == (height, width):
        return image
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    resized = cv2.resize(_interleaved(image), (width, height), interpolation=interpolation)
    return _planar(resized)


def encode_image(image: np.ndarray, fmt: str, where: str = "") -> bytes:
    """(C, H, W) uint8 BGR (or grey) image as file bytes of format ``fmt`` ('jpg', 'png', ...):
    ``cv::imencode("." + fmt)`` as convert_imageset calls it (OpenCV's defaults: JPEG quality
    95)."""
    if image.shape[0] not in (1, 3, 4):
        raise DataError(f"{where}: cannot encode a {image.shape[0]}-channel image")
    name = fmt.lower().lstrip(".")
    try:
        ok, buffer = cv2.imencode("." + name, _interleaved(image))
    except cv2.error:
        ok = False
    if not ok:
        raise DataError(f"{where}: cannot encode the image as {fmt!r}; expected an extension "
                        "OpenCV writes: jpg, png, bmp, tif, ppm, pgm or webp")
    return buffer.tobytes()


def image_datum(image: np.ndarray, label: int) -> caffe_pb2.Datum:
    """Caffe's CVMatToDatum plus the label: raw planar bytes, not encoded."""
    c, h, w = image.shape
    return caffe_pb2.Datum(channels=c, height=h, width=w, data=image.tobytes(), label=label)


def file_extension(path: str) -> str:
    return os.path.splitext(path)[1].lstrip(".").lower()


# --- image list files (ImageData, convert_imageset) ------------------------------------------
def read_image_list(path: str, where: str) -> list[tuple[str, int]]:
    """The ``<path> <label>`` lines of an image list file, split at the last space as Caffe
    1.0 splits them (so file names may contain spaces). Blank lines are skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise DataError(f"{where}: image list file '{path}' does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{where}: '{path}' is a folder, expected an image list file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: cannot read image list file '{path}': {exc}") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        name, space, label = line.rpartition(" ")
        try:
            if not space or not name:
                raise ValueError
            value = int(label)
        except ValueError:
            raise DataError(f"{path}:{number}: expected '<image path> <integer label>', found "
                            f"{line!r}") from None
        lines.append((name, value))
    if not lines:
        raise DataError(f"{where}: image list file '{path}' names no images")
    return lines


def image_path(root_folder: str, name: str) -> str:
    """Caffe joins ``root_folder`` and a listed name by plain concatenation. When a missing
    trailing slash is the only reason that path does not exist, the joined path is used (and
    this is logged once per root folder)."""
    path = root_folder + name
    if root_folder and not root_folder.endswith(("/", os.sep)) and not os.path.exists(path):
        joined = os.path.join(root_folder, name)
        if os.path.exists(joined):
            if root_folder not in _WARNED_ROOTS:
                _WARNED_ROOTS.add(root_folder)
                get_logger().warning("root folder '%s' has no trailing '/': '%s' does not "
                                     "exist, using '%s'", root_folder, path, joined)
            return joined
    return path


_WARNED_ROOTS: set[str] = set()
