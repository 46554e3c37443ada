"""Images and ``caffe.Datum`` records: decoding, reading image files, resizing and encoding.

Images are (C, H, W) uint8 arrays with colour channels in BGR order, as OpenCV gives them to
Caffe. Files are decoded with Pillow; the resize is OpenCV's bilinear ``INTER_LINEAR`` (see
:func:`pyforge.kernels.transform.resize_linear`), which, unlike Pillow's, does not smooth when
shrinking.
"""

from __future__ import annotations

import io
import os

import numpy as np

from ..errors import DataError
from ..kernels.transform import resize_linear
from ..log import get_logger
from ..proto import caffe_pb2

#: decode modes: the file's own channels (OpenCV IMREAD_UNCHANGED, which Caffe uses for
#: encoded datums without force_color/force_gray), 3-channel BGR, or 1-channel grey.
NATIVE, COLOR, GRAY = "native", "color", "gray"
#: OpenCV's default JPEG quality for cv::imencode, which convert_imageset uses.
JPEG_QUALITY = 95


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


def _pillow(where: str):
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"{where}: decoding and encoding images needs Pillow (pip install "
                        "Pillow)") from None
    return Image


def _to_8bit(array: np.ndarray) -> np.ndarray:
    # OpenCV keeps the top byte of 16-bit samples when it decodes to 8 bits.
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    return (array.astype(np.uint32) >> 8).astype(np.uint8)


def decode_image(data: bytes, where: str, mode: str = COLOR) -> np.ndarray:
    """Decode image file bytes (JPEG, PNG, ...) to (C, H, W) uint8, BGR like OpenCV.

    ``mode`` COLOR always gives 3 channels (grey replicated, alpha dropped), GRAY 1 channel,
    NATIVE the file's own: 1 for grey, 3 for colour, 4 (BGRA) with transparency.
    """
    Image = _pillow(where)
    try:
        image = Image.open(io.BytesIO(data))
        if mode == GRAY and image.format == "JPEG":
            # Let libjpeg decode the luma plane directly, as OpenCV's IMREAD_GRAYSCALE does.
            image.draft("L", image.size)
        image.load()
    except Exception as exc:
        raise DataError(f"{where}: cannot decode the image ({len(data)} bytes): {exc}") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = _to_8bit(np.asarray(image))
        if mode == COLOR:
            return np.ascontiguousarray(np.broadcast_to(grey, (3, *grey.shape)))
        return grey[None].copy()
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info)
    is_grey = image.mode in ("L", "1", "LA")
    if mode == GRAY or (mode == NATIVE and is_grey and not has_alpha):
        return np.asarray(image.convert("L"), dtype=np.uint8)[None].copy()
    if mode == NATIVE and has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]].transpose(2, 0, 1))
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1))  # BGR, like OpenCV


def native_channels(data: bytes, where: str) -> int:
    """The channels :func:`decode_image` gives in NATIVE mode, read from the header only."""
    Image = _pillow(where)
    try:
        with Image.open(io.BytesIO(data)) as image:
            mode, info = image.mode, image.info
    except Exception as exc:
        raise DataError(f"{where}: cannot decode the image ({len(data)} bytes): {exc}") from None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in info):
        return 4
    return 1 if mode in ("L", "1", "I", "I;16", "I;16B", "I;16L") else 3


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
    """Caffe's ReadImageToCVMat: decode ``path`` as colour or grey, resized when both
    ``height`` and ``width`` are positive."""
    where = f"{where}: {path}" if where else path
    image = decode_image(read_file(path, where), where, COLOR if is_color else GRAY)
    if height > 0 and width > 0:
        image = resize_image(image, height, width)
    return image


def linear_resize_tables(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Left/top source index and the two weights (scaled by 2048) of each output pixel, as
    OpenCV computes them for INTER_LINEAR: pixel centres aligned, edges clamped."""
    scale = 1.0 / (dst / src)  # OpenCV inverts the inverse scale, in double
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    index = np.floor(f).astype(np.int64)
    frac = f - index.astype(np.float32)
    low = index < 0
    index[low], frac[low] = 0, 0
    high = index >= src - 1
    index[high], frac[high] = src - 1, 0
    weights = np.empty((dst, 2), dtype=np.int64)
    weights[:, 0] = np.rint((np.float32(1) - frac) * np.float32(2048))
    weights[:, 1] = np.rint(frac * np.float32(2048))
    return index, weights


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, H, W) uint8 resized to (C, height, width) as OpenCV's INTER_LINEAR does."""
    c, h, w = image.shape
    if (h, w) == (height, width):
        return image
    xofs, alpha = linear_resize_tables(w, width)
    yofs, beta = linear_resize_tables(h, height)
    out = np.empty((c, height, width), dtype=np.uint8)
    resize_linear(np.ascontiguousarray(image), xofs, alpha, yofs, beta, out)
    return out


def encode_image(image: np.ndarray, fmt: str, where: str = "") -> bytes:
    """(C, H, W) uint8 BGR (or grey) image as file bytes of format ``fmt`` ('jpg', 'png', ...),
    as cv::imencode writes it (JPEG quality 95)."""
    Image = _pillow(where)
    if image.shape[0] == 1:
        pil = Image.fromarray(np.ascontiguousarray(image[0]), "L")
    elif image.shape[0] == 3:
        pil = Image.fromarray(np.ascontiguousarray(image[::-1].transpose(1, 2, 0)), "RGB")
    else:
        raise DataError(f"{where}: cannot encode a {image.shape[0]}-channel image")
    name = fmt.lower().lstrip(".")
    pillow_format = {"jpg": "JPEG", "jpeg": "JPEG", "jpe": "JPEG", "png": "PNG", "bmp": "BMP",
                     "tif": "TIFF", "tiff": "TIFF", "ppm": "PPM", "pgm": "PPM",
                     "webp": "WEBP"}.get(name)
    if pillow_format is None:
        raise DataError(f"{where}: unknown encode type {fmt!r}; expected jpg, png, bmp, tif, "
                        "ppm or webp")
    options = {"quality": JPEG_QUALITY} if pillow_format == "JPEG" else {}
    buffer = io.BytesIO()
    try:
        pil.save(buffer, format=pillow_format, **options)
    except Exception as exc:
        raise DataError(f"{where}: cannot encode the image as {fmt}: {exc}") from None
    return buffer.getvalue()


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
