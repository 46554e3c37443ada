"""pycaffe's ``caffe.io``: input preprocessing, image loading and resizing, and conversions
between NumPy arrays and Caffe's BlobProto / Datum messages.

The functions keep pycaffe's conventions: images are float32 ``H x W x K`` arrays, RGB, in
``[0, 1]`` (what ``load_image`` returns); net inputs are ``K x H x W``. Images are decoded with
OpenCV, as Caffe's own data layers and ``convert_imageset`` decode them (pycaffe uses
scikit-image), so a file gives the pixels here that it gives in an LMDB; ``resize_image``
computes what pycaffe's ``skimage.transform.resize`` computes (see :func:`resize_image`).
"""

from __future__ import annotations

import os

import numpy as np

from pyforge.errors import PyforgeError
from pyforge.proto import caffe_pb2

__all__ = ["Transformer", "array_to_blobproto", "array_to_datum",
           "arraylist_to_blobprotovector_str", "blobproto_to_array",
           "blobprotovector_str_to_arraylist", "datum_to_array", "load_image", "oversample",
           "resize_image"]


class TransformerError(PyforgeError, ValueError):
    """A Transformer setting that does not fit the input it is for."""


# --- proto / datum / ndarray conversion ---------------------------------------------------------
def blobproto_to_array(blob: caffe_pb2.BlobProto, return_diff: bool = False) -> np.ndarray:
    """The data (or, with ``return_diff``, the diff) of a BlobProto as an array of its shape:
    the legacy num/channels/height/width when any of them is set, else ``shape``."""
    values = np.array(blob.diff if return_diff else blob.data)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return values.reshape(blob.num, blob.channels, blob.height, blob.width)
    return values.reshape(tuple(blob.shape.dim))


def array_to_blobproto(arr: np.ndarray, diff: np.ndarray | None = None) -> caffe_pb2.BlobProto:
    """A BlobProto with ``arr``'s shape and values (and ``diff``'s, if given)."""
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.astype(float).flat)
    if diff is not None:
        diff = np.asarray(diff)
        if diff.shape != arr.shape:
            raise PyforgeError(f"array_to_blobproto: diff has shape {diff.shape}, data has "
                               f"{arr.shape}")
        blob.diff.extend(diff.astype(float).flat)
    return blob


def arraylist_to_blobprotovector_str(arraylist) -> bytes:
    """A serialized BlobProtoVector holding each array."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vec.SerializeToString()


#: The spelling of older pycaffe releases.
arraylist_to_blobprotovecor_str = arraylist_to_blobprotovector_str


def blobprotovector_str_to_arraylist(serialized: bytes) -> list[np.ndarray]:
    """The arrays of a serialized BlobProtoVector."""
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(serialized)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr: np.ndarray, label: int | None = None) -> caffe_pb2.Datum:
    """A Datum from a ``C x H x W`` array: uint8 arrays go to ``data`` (bytes), others to
    ``float_data``."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise PyforgeError(f"array_to_datum needs a 3-D (channels, height, width) array, found "
                           f"shape {arr.shape}")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = arr.shape
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(float).flat)
    if label is not None:
        datum.label = int(label)
    return datum


def datum_to_array(datum: caffe_pb2.Datum) -> np.ndarray:
    """A Datum's ``C x H x W`` array: uint8 from ``data``, else float64 from ``float_data``.
    (The label is ``datum.label``; encoded images are not decoded, as in pycaffe.)"""
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    return np.array(datum.float_data).astype(float).reshape(shape)


# --- preprocessing ---------------------------------------------------------------------------
class Transformer:
    """Turns ``H x W x K`` images into net inputs, and back.

    ``Transformer({name: shape})`` with the input blobs' shapes (``net.blobs[name].data.shape``).
    :meth:`preprocess` resizes to the input's height and width, transposes (``set_transpose``),
    reorders channels (``set_channel_swap``), multiplies by ``raw_scale``, subtracts the mean
    and multiplies by ``input_scale``, in that order; :meth:`deprocess` undoes it.
    """

    def __init__(self, inputs) -> None:
        self.inputs = {name: tuple(int(d) for d in shape) for name, shape in inputs.items()}
        self.transpose: dict = {}
        self.channel_swap: dict = {}
        self.raw_scale: dict = {}
        self.mean: dict = {}
        self.input_scale: dict = {}

    def _check_input(self, in_: str) -> None:
        if in_ not in self.inputs:
            raise TransformerError(f"{in_!r} is not one of the net inputs: "
                                   f"{', '.join(self.inputs)}")

    def preprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """``data`` (``H' x W' x K``) as a ``K x H x W`` float32 input for ``in_``."""
        self._check_input(in_)
        # A copy: the steps below work in place, and must not change the caller's array.
        caffe_in = np.array(data, dtype=np.float32)
        in_dims = self.inputs[in_][2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        transpose = self.transpose.get(in_)
        if transpose is not None:
            caffe_in = caffe_in.transpose(transpose)
        channel_swap = self.channel_swap.get(in_)
        if channel_swap is not None:
            caffe_in = caffe_in[list(channel_swap), :, :]
        raw_scale = self.raw_scale.get(in_)
        if raw_scale is not None:
            caffe_in *= raw_scale
        mean = self.mean.get(in_)
        if mean is not None:
            caffe_in -= mean
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            caffe_in *= input_scale
        return caffe_in

    def deprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """Undo :meth:`preprocess` (except the resize): ``K x H x W`` (or ``1 x K x H x W``)
        back to ``H x W x K``."""
        self._check_input(in_)
        decaf_in = np.array(data, dtype=np.float32)
        if decaf_in.ndim == 4 and decaf_in.shape[0] == 1:
            decaf_in = decaf_in[0]  # pycaffe squeezes the batch axis of one item
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            decaf_in /= input_scale
        mean = self.mean.get(in_)
        if mean is not None:
            decaf_in += mean
        raw_scale = self.raw_scale.get(in_)
        if raw_scale is not None:
            decaf_in /= raw_scale
        channel_swap = self.channel_swap.get(in_)
        if channel_swap is not None:
            decaf_in = decaf_in[np.argsort(channel_swap), :, :]
        transpose = self.transpose.get(in_)
        if transpose is not None:
            decaf_in = decaf_in.transpose(np.argsort(transpose))
        return decaf_in

    def set_transpose(self, in_: str, order) -> None:
        """Axis order that turns the image into the input, e.g. ``(2, 0, 1)`` for HxWxK to
        KxHxW."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise TransformerError(f"transpose order {tuple(order)} needs as many axes as the "
                                   f"input {in_!r} has per item ({len(self.inputs[in_]) - 1})")
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_: str, order) -> None:
        """Channel order, applied after the transpose: ``(2, 1, 0)`` turns RGB into BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise TransformerError(f"channel swap {tuple(order)} needs one entry per channel "
                                   f"of {in_!r} ({self.inputs[in_][1]})")
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_: str, scale: float) -> None:
        """Scale applied before the mean: 255 for models trained on [0, 255] pixels, since
        load_image gives [0, 1]."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_: str, mean: np.ndarray) -> None:
        """Mean to subtract: one value per channel (shape ``(K,)``) or one per element
        (``K x H x W``, or ``H x W`` for one channel)."""
        self._check_input(in_)
        mean = np.asarray(mean)
        shape = mean.shape
        if mean.ndim == 1:
            if shape[0] != self.inputs[in_][1]:
                raise TransformerError(f"mean has {shape[0]} channels, input {in_!r} has "
                                       f"{self.inputs[in_][1]}")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if len(shape) == 2:
                shape = (1, *shape)
            if len(shape) != 3:
                raise TransformerError(f"mean must be (K,), (H, W) or (K, H, W); found shape "
                                       f"{mean.shape}")
            if shape != self.inputs[in_][1:]:
                raise TransformerError(f"mean shape {mean.shape} is incompatible with input "
                                       f"{in_!r} of shape {self.inputs[in_]}")
        self.mean[in_] = mean

    def set_input_scale(self, in_: str, scale: float) -> None:
        """Scale applied last, after the mean is subtracted."""
        self._check_input(in_)
        self.input_scale[in_] = scale


# --- image IO --------------------------------------------------------------------------------
def load_image(filename, color: bool = True) -> np.ndarray:
    """An image file as float32 ``H x W x 3`` RGB in ``[0, 1]``, or ``H x W x 1`` intensity
    when ``color`` is False.

    Decoded by OpenCV as Caffe decodes (``cv::imread`` with IMREAD_COLOR or
    IMREAD_GRAYSCALE): a grey file is repeated into 3 channels, an alpha channel is dropped, a
    colour file read with ``color=False`` is converted with OpenCV's (Caffe's ``--gray``)
    weights. Values are scaled by the maximum of the file's sample type (255, or 65535 for
    16-bit files), as scikit-image's ``img_as_float`` scales them.
    """
    cv2 = _opencv()
    path = os.fspath(filename)
    try:
        with open(path, "rb") as handle:
            encoded = np.frombuffer(handle.read(), dtype=np.uint8)
    except FileNotFoundError:
        raise PyforgeError(f"{path}: no such image file") from None
    except OSError as exc:
        raise PyforgeError(f"{path}: cannot read the image: {exc.strerror}") from None
    mode = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
    img = cv2.imdecode(encoded, mode | cv2.IMREAD_ANYDEPTH) if encoded.size else None
    if img is None:
        raise PyforgeError(f"{path}: not an image OpenCV can decode")
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
    else:
        img = img[:, :, ::-1]  # OpenCV's BGR to pycaffe's RGB
    if np.issubdtype(img.dtype, np.integer):
        return (img.astype(np.float64) / np.iinfo(img.dtype).max).astype(np.float32)
    return np.ascontiguousarray(img, dtype=np.float32)


def _opencv():
    try:
        import cv2
    except ImportError:
        raise PyforgeError("caffe.io.load_image decodes with OpenCV: pip install "
                           "opencv-python-headless") from None
    return cv2


def resize_image(im: np.ndarray, new_dims, interp_order: int = 1) -> np.ndarray:
    """``im`` (``H x W x K``) resized to ``new_dims`` (height, width), as float32.

    As in pycaffe: images of 1 or 3 channels are scaled to [0, 1], resized the way
    ``skimage.transform.resize`` does (pixel centres aligned, edges mirrored, a Gaussian
    anti-aliasing filter of sigma ``(factor - 1) / 2`` when shrinking) and scaled back; a
    constant image stays constant. Other channel counts are resized as
    ``scipy.ndimage.zoom`` does (corner pixels aligned). ``interp_order`` 0 is nearest,
    1 bilinear; higher orders need SciPy.
    """
    im = np.asarray(im)
    if im.ndim != 3:
        raise PyforgeError(f"resize_image needs an H x W x K array, found shape {im.shape}")
    new_dims = tuple(int(d) for d in new_dims)
    if len(new_dims) != 2 or min(new_dims) <= 0:
        raise PyforgeError(f"resize_image: new_dims must be (height, width) > 0, found "
                           f"{new_dims}")
    if im.shape[-1] in (1, 3):
        im_min, im_max = float(im.min()), float(im.max())
        if im_max <= im_min:
            return np.full((*new_dims, im.shape[-1]), im_min, dtype=np.float32)
        std = (im.astype(np.float64) - im_min) / (im_max - im_min)
        resized = _resize_centres(std, new_dims, interp_order)
        return (resized * (im_max - im_min) + im_min).astype(np.float32)
    return _resize_corners(im.astype(np.float64), new_dims, interp_order).astype(np.float32)


def _resize_centres(im: np.ndarray, new_dims: tuple[int, int], order: int) -> np.ndarray:
    """skimage.transform.resize (mode 'reflect', anti-aliasing when shrinking)."""
    if order not in (0, 1):
        return _scipy_zoom(im, new_dims, order, grid_mode=True, mode="mirror")
    out = im
    for axis, size in enumerate(new_dims):
        factor = im.shape[axis] / size
        if factor > 1:
            out = _gaussian_mirror(out, axis, (factor - 1) / 2)
    for axis, size in enumerate(new_dims):
        n = out.shape[axis]
        coords = (np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5
        out = _sample(out, axis, coords, order, mirror=True)
    return np.clip(out, 0.0, 1.0)


def _resize_corners(im: np.ndarray, new_dims: tuple[int, int], order: int) -> np.ndarray:
    """scipy.ndimage.zoom without grid mode: the first and last pixels stay in place."""
    if order not in (0, 1):
        return _scipy_zoom(im, new_dims, order, grid_mode=False, mode="constant")
    out = im
    for axis, size in enumerate(new_dims):
        n = out.shape[axis]
        step = (n - 1) / (size - 1) if size > 1 else 0.0
        coords = np.arange(size, dtype=np.float64) * step
        out = _sample(out, axis, coords, order, mirror=False)
    return out


def _sample(im: np.ndarray, axis: int, coords: np.ndarray, order: int,
            mirror: bool) -> np.ndarray:
    """Values of ``im`` at fractional positions ``coords`` along ``axis`` (nearest or
    linear); positions outside ``[0, n - 1]`` mirror about the edge pixel or are clamped."""
    n = im.shape[axis]
    last = n - 1
    if mirror and last > 0:
        coords = np.abs(coords)
        coords = np.where(coords > last, 2 * last - coords, coords)
    coords = np.clip(coords, 0, last)
    if order == 0:
        index = np.minimum(np.floor(coords + 0.5).astype(np.int64), last)
        return np.take(im, index, axis=axis)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, last)
    frac = coords - low
    shape = [1] * im.ndim
    shape[axis] = len(coords)
    frac = frac.reshape(shape)
    return np.take(im, low, axis=axis) * (1 - frac) + np.take(im, high, axis=axis) * frac


def _gaussian_mirror(im: np.ndarray, axis: int, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d (truncate 4, mode 'mirror') along ``axis``."""
    radius = int(4.0 * sigma + 0.5)
    if radius == 0 or im.shape[axis] == 1:
        return im
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    weights /= weights.sum()
    pad = [(0, 0)] * im.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(im, pad, mode="reflect")  # NumPy's 'reflect' is ndimage's 'mirror'
    n = im.shape[axis]
    out = np.zeros_like(im)
    for k, w in enumerate(weights):
        out += w * np.take(padded, np.arange(k, k + n), axis=axis)
    return out


def _scipy_zoom(im: np.ndarray, new_dims: tuple[int, int], order: int, grid_mode: bool,
                mode: str) -> np.ndarray:
    try:
        from scipy import ndimage
    except ImportError:
        raise PyforgeError(f"resize_image with interp_order={order} needs SciPy; orders 0 "
                           "and 1 work without it") from None
    zoom = (new_dims[0] / im.shape[0], new_dims[1] / im.shape[1], 1.0)
    return ndimage.zoom(im, zoom, order=order, grid_mode=grid_mode, mode=mode)


def oversample(images, crop_dims) -> np.ndarray:
    """Ten crops of each ``H x W x K`` image: the four corners and the centre, then the same
    five mirrored left-right. Returns ``10 N x h x w x K`` float32."""
    images = [np.asarray(im) for im in images]
    if not images:
        raise PyforgeError("oversample needs at least one image")
    im_h, im_w = images[0].shape[:2]
    crop_h, crop_w = (int(d) for d in crop_dims)
    if crop_h > im_h or crop_w > im_w:
        raise PyforgeError(f"oversample: crop {crop_h}x{crop_w} is larger than the images "
                           f"({im_h}x{im_w})")
    # Centre start as pycaffe computes it: H/2 - h/2 in floats, truncated to an integer.
    centre = (int(im_h / 2.0 - crop_h / 2.0), int(im_w / 2.0 - crop_w / 2.0))
    starts = [(0, 0), (0, im_w - crop_w), (im_h - crop_h, 0), (im_h - crop_h, im_w - crop_w),
              centre]
    crops = np.empty((10 * len(images), crop_h, crop_w, images[0].shape[-1]), dtype=np.float32)
    ix = 0
    for im in images:
        for top, left in starts:
            crops[ix] = im[top:top + crop_h, left:left + crop_w, :]
            ix += 1
        crops[ix:ix + 5] = crops[ix - 5:ix, :, ::-1, :]
        ix += 5
    return crops
