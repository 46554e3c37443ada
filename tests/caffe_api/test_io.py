"""caffe.io: Transformer, image loading and resizing, and the array/proto conversions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import caffe
from pyforge.errors import PyforgeError
from pyforge.proto import caffe_pb2

io = caffe.io


# --- Transformer -----------------------------------------------------------------------------
def _imagenet_style(shape=(1, 3, 6, 8)) -> io.Transformer:
    t = io.Transformer({"data": shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([104.0, 117.0, 123.0]))
    t.set_input_scale("data", 0.5)
    return t


def test_transformer_preprocess_steps_and_round_trip():
    rng = np.random.default_rng(0)
    image = rng.random((6, 8, 3), dtype=np.float32)
    before = image.copy()
    t = _imagenet_style()
    out = t.preprocess("data", image)
    expected = (image.transpose(2, 0, 1)[[2, 1, 0]] * 255
                - np.array([104.0, 117.0, 123.0])[:, None, None]) * 0.5
    assert out.dtype == np.float32 and out.shape == (3, 6, 8)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(image, before)  # the caller's array is left alone
    back = t.deprocess("data", out[np.newaxis])  # a batch of one, as net blobs hold it
    np.testing.assert_allclose(back, image, atol=1e-5)


def test_transformer_resizes_to_the_input_size():
    t = io.Transformer({"data": (1, 3, 20, 24)})
    t.set_transpose("data", (2, 0, 1))
    image = np.random.default_rng(1).random((10, 12, 3)).astype(np.float32)
    assert t.preprocess("data", image).shape == (3, 20, 24)


def test_transformer_mean_shapes_and_errors():
    t = io.Transformer({"data": (2, 3, 4, 5), "grey": (2, 1, 4, 5)})
    t.set_mean("data", np.zeros((3, 4, 5)))
    t.set_mean("grey", np.ones((4, 5)))  # one channel: H x W is accepted
    t.set_mean("data", np.arange(3.0))
    assert t.mean["data"].shape == (3, 1, 1)
    with pytest.raises(ValueError, match="3 channels"):
        t.set_mean("grey", np.arange(3.0))
    with pytest.raises(PyforgeError, match="incompatible"):
        t.set_mean("data", np.zeros((3, 5, 5)))
    with pytest.raises(PyforgeError, match="not one of the net inputs"):
        t.set_raw_scale("label", 2)
    with pytest.raises(PyforgeError, match="channel"):
        t.set_channel_swap("data", (1, 0))
    with pytest.raises(PyforgeError, match="transpose"):
        t.set_transpose("data", (1, 0))


def test_transformer_from_a_net(in_caffe_ref):
    net = caffe.Net("shapes/examples_mnist_lenet.prototxt", caffe.TEST)
    t = io.Transformer({"data": net.blobs["data"].data.shape})
    t.set_transpose("data", (2, 0, 1))
    digit = np.zeros((28, 28, 1), dtype=np.float32)
    net.blobs["data"].data[0] = t.preprocess("data", digit)
    assert net.forward()["prob"].shape == (64, 10)


# --- images ------------------------------------------------------------------------------------
def test_load_image_modes(tmp_path):
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 3
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    loaded = io.load_image(str(tmp_path / "rgb.png"))
    assert loaded.dtype == np.float32 and loaded.shape == (4, 5, 3)
    np.testing.assert_allclose(loaded, rgb / 255.0, atol=1e-7)
    grey = (np.arange(20, dtype=np.uint8).reshape(4, 5) * 10)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    assert io.load_image(tmp_path / "grey.png").shape == (4, 5, 3)
    single = io.load_image(tmp_path / "grey.png", color=False)
    assert single.shape == (4, 5, 1)
    np.testing.assert_allclose(single[:, :, 0], grey / 255.0, atol=1e-7)
    rgba = np.dstack([rgb, np.full((4, 5), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(io.load_image(tmp_path / "rgba.png"), loaded)
    deep = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_allclose(io.load_image(tmp_path / "deep.png", color=False)[:, :, 0],
                               deep / 65535.0, atol=1e-6)
    with pytest.raises(PyforgeError, match="no such image file"):
        io.load_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(PyforgeError, match="junk.png: not an image OpenCV can decode"):
        io.load_image(tmp_path / "junk.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(PyforgeError, match="empty.png: not an image OpenCV can decode"):
        io.load_image(tmp_path / "empty.png")


def test_load_image_decodes_as_caffe_does(tmp_path):
    """OpenCV decodes, as in Caffe's data layers and convert_imageset: a JPEG gives OpenCV's
    pixels (RGB order here), and color=False gives OpenCV's grey (convert_imageset --gray)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)
    path = str(tmp_path / "photo.jpg")
    assert cv2.imwrite(path, bgr)
    decoded = cv2.imread(path, cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(io.load_image(path) * 255.0, decoded[:, :, ::-1])
    grey = io.load_image(path, color=False)
    assert grey.shape == (12, 9, 1)
    np.testing.assert_array_equal(grey[:, :, 0] * 255.0, cv2.imread(path, cv2.IMREAD_GRAYSCALE))
    # Not the mean of the channels: OpenCV's (and Caffe's) 0.299 R + 0.587 G + 0.114 B.
    png = str(tmp_path / "red.png")
    cv2.imwrite(png, np.dstack([np.zeros((2, 2), np.uint8)] * 2 + [np.full((2, 2), 255,
                                                                          np.uint8)]))
    np.testing.assert_allclose(io.load_image(png, color=False), 76 / 255.0, atol=1e-7)
    np.testing.assert_allclose(io.load_image(png)[0, 0], [1, 0, 0])


def test_resize_image_bilinear_values():
    im = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)[:, :, None]
    same = io.resize_image(im, (2, 2))
    np.testing.assert_allclose(same, im, atol=1e-6)
    up = io.resize_image(im, (4, 4))[:, :, 0]
    # Pixel centres aligned: output pixels sit at -0.25, 0.25, 0.75, 1.25 source pixels, and
    # positions outside mirror about the edge pixel (-0.25 reads 0.25), as in skimage.
    np.testing.assert_allclose(up[0], [0.75, 0.75, 1.25, 1.25], atol=1e-6)
    np.testing.assert_allclose(up[:, 0], [0.75, 0.75, 1.75, 1.75], atol=1e-6)
    constant = io.resize_image(np.full((3, 3, 3), 0.25, np.float32), (5, 7))
    assert constant.shape == (5, 7, 3) and np.all(constant == np.float32(0.25))
    nearest = io.resize_image(im, (4, 4), interp_order=0)[:, :, 0]
    np.testing.assert_array_equal(nearest[0], [0, 0, 1, 1])


def test_resize_image_matches_scipy_as_skimage_uses_it():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(2)
    im = rng.random((9, 7, 3)).astype(np.float32)
    im[0, 0, 0], im[1, 1, 1] = 0.0, 1.0  # the range pycaffe normalises by stays [0, 1]
    up = io.resize_image(im, (20, 15))
    expected = ndimage.zoom(im.astype(np.float64), (20 / 9, 15 / 7, 1), order=1,
                            mode="mirror", grid_mode=True)
    np.testing.assert_allclose(up, expected, atol=1e-5)
    down = io.resize_image(im, (4, 3))
    sigma = ((9 / 4 - 1) / 2, (7 / 3 - 1) / 2, 0)
    smooth = ndimage.gaussian_filter(im.astype(np.float64), sigma, mode="mirror")
    expected = ndimage.zoom(smooth, (4 / 9, 3 / 7, 1), order=1, mode="mirror", grid_mode=True)
    np.testing.assert_allclose(down, expected, atol=1e-5)
    # Other channel counts go through ndimage.zoom's corner-aligned grid, as in pycaffe.
    two = rng.random((5, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(io.resize_image(two, (9, 4)),
                               ndimage.zoom(two.astype(np.float64), (9 / 5, 4 / 6, 1), order=1),
                               atol=1e-5)


def test_oversample_takes_corners_centre_and_mirrors():
    images = np.arange(2 * 6 * 8 * 3, dtype=np.float32).reshape(2, 6, 8, 3)
    crops = io.oversample(images, (4, 4))
    assert crops.shape == (20, 4, 4, 3) and crops.dtype == np.float32
    im = images[1]
    expected = [im[:4, :4], im[:4, 4:], im[2:, :4], im[2:, 4:], im[1:5, 2:6]]
    for i, crop in enumerate(expected):
        np.testing.assert_array_equal(crops[10 + i], crop)
        np.testing.assert_array_equal(crops[15 + i], crop[:, ::-1])


# --- conversions ---------------------------------------------------------------------------------
def test_blobproto_round_trips():
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    blob = io.array_to_blobproto(arr, diff=arr * 2)
    assert list(blob.shape.dim) == [2, 3, 4]
    np.testing.assert_array_equal(io.blobproto_to_array(blob), arr)
    np.testing.assert_array_equal(io.blobproto_to_array(blob, return_diff=True), arr * 2)
    legacy = caffe_pb2.BlobProto(num=1, channels=2, height=1, width=3)
    legacy.data.extend(range(6))
    assert io.blobproto_to_array(legacy).shape == (1, 2, 1, 3)
    arrays = [arr, np.ones((1, 5))]
    serialized = io.arraylist_to_blobprotovector_str(arrays)
    assert isinstance(serialized, bytes)
    for a, b in zip(io.blobprotovector_str_to_arraylist(serialized), arrays):
        np.testing.assert_array_equal(a, b)


def test_datum_round_trips():
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    datum = io.array_to_datum(pixels, label=7)
    assert (datum.channels, datum.height, datum.width, datum.label) == (2, 3, 4, 7)
    assert datum.data == pixels.tobytes() and not len(datum.float_data)
    back = io.datum_to_array(caffe_pb2.Datum.FromString(datum.SerializeToString()))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, pixels)
    floats = pixels.astype(np.float32) / 3
    datum = io.array_to_datum(floats)
    assert not datum.HasField("label") and len(datum.float_data) == 24
    np.testing.assert_allclose(io.datum_to_array(datum), floats, rtol=1e-6)
    with pytest.raises(PyforgeError, match="3-D"):
        io.array_to_datum(np.zeros((2, 2)))


def test_engine_imports_of_pyforge_io_still_work():
    from pyforge.io.db import LMDB
    from pyforge.io.snapshot import snapshot_filename

    assert LMDB and snapshot_filename("p", 3, ".caffemodel") == "p_iter_3.caffemodel"
    assert "Transformer" in dir(caffe.io)
    with pytest.raises(AttributeError):
        _ = caffe.io.no_such_name
