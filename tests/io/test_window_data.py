"""WindowData (R-CNN): the window file, foreground/background sampling, warping with context
padding, mirroring, mean and scale, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from pyforge.proto import caffe_pb2, write_binary_proto
from tests.io.util import bgr_planar, cv_resize, make_layer, random_images, run, write_rgb
from tests.logcapture import capture_log


@pytest.fixture
def scene(tmp_path):
    """Two 10x12 (HxW) PNGs and a window file: image 0 has a foreground window of class 3
    (overlap 0.9) and a background one (overlap 0.1); image 1 a window of overlap 0.3 (neither
    with bg_threshold 0.2) and a foreground window of class 1."""
    images = random_images(2, 10, 12, seed=4)
    for i, image in enumerate(images):
        write_rgb(tmp_path / f"im{i}.png", image)
    (tmp_path / "windows.txt").write_text(
        "# 0\nim0.png\n3\n10\n12\n2\n3 0.9 2 1 6 7\n5 0.1 0 0 11 9\n"
        "# 1\nim1.png\n3\n10\n12\n2\n2 0.3 1 1 2 2\n1 0.8 4 2 11 9\n")
    return tmp_path, [bgr_planar(im) for im in images]


def window_layer(tmp_path, params="", transform="crop_size: 4", seed=1701,
                 source="windows.txt"):
    return make_layer(f"""name: "win" type: "WindowData" top: "data" top: "label"
        transform_param {{ {transform} }}
        window_data_param {{ source: "{tmp_path}/{source}" root_folder: "{tmp_path}/"
                             batch_size: 4 {params} }}""", seed=seed)


def test_setup_logs_and_sampling(scene):
    tmp_path, images = scene
    with capture_log() as log:
        layer = window_layer(tmp_path, "fg_fraction: 0.5 bg_threshold: 0.2")
        batches = run(layer, forwards=3)
    layer.close()
    for line in ("Number of images: 2", "class 0 has 1 samples", "class 1 has 1 samples",
                 "class 3 has 1 samples", "Amount of context padding: 0", "Crop mode: warp",
                 "output data size: 4,3,4,4"):
        assert line in log.messages
    fg = {3: cv_resize(images[0][:, 1:8, 2:7], 4, 4), 1: cv_resize(images[1][:, 2:10, 4:12],
                                                                           4, 4)}
    bg = cv_resize(images[0][:, 0:10, 0:12], 4, 4)
    for data, label in batches:
        # Background windows first, then int(4 * 0.5) = 2 foreground ones.
        assert list(label[:2]) == [0, 0] and set(label[2:]) <= {1, 3}
        for item in range(2):
            np.testing.assert_array_equal(data[item], bg)
        for item in range(2, 4):
            np.testing.assert_array_equal(data[item], fg[int(label[item])])


def test_context_pad_at_the_border_pads_with_zeros(tmp_path):
    image = random_images(1, 10, 10, seed=2)[0]
    write_rgb(tmp_path / "im.png", image)
    (tmp_path / "w.txt").write_text("# 0\nim.png\n3 10 10\n1\n1 1.0 0 0 4 4\n")
    bgr = bgr_planar(image)
    # crop 8, context_pad 2: the 5x5 window grows to x,y in [-3, 8] (C rounds -2.5 to -3),
    # clipped to [0, 8]: 9 pixels warped to round(9 * 8/12) = 6, after round(3 * 8/12) = 2
    # pixels of padding.
    for mirror in (False, True):
        layer = window_layer(tmp_path, "fg_fraction: 1 context_pad: 2",
                             transform=f"crop_size: 8 mirror: {str(mirror).lower()}",
                             source="w.txt")
        (data, label), = run(layer)
        layer.close()
        assert list(label) == [1, 1, 1, 1]
        warped = cv_resize(bgr[:, 0:9, 0:9], 6, 6).astype(np.float32)
        for item in data:
            plain = np.zeros((3, 8, 8), np.float32)
            plain[:, 2:8, 2:8] = warped
            flipped = np.zeros((3, 8, 8), np.float32)
            flipped[:, 2:8, 0:6] = warped[:, :, ::-1]  # the padding is mirrored too
            if mirror:
                assert np.array_equal(item, plain) or np.array_equal(item, flipped)
            else:
                np.testing.assert_array_equal(item, plain)


def test_square_mode_and_mean_file_and_scale(tmp_path):
    image = random_images(1, 12, 12, seed=5)[0]
    write_rgb(tmp_path / "im.png", image)
    (tmp_path / "w.txt").write_text("# 0\nim.png\n3 12 12\n1\n1 1.0 4 2 7 9\n")
    mean = np.arange(3 * 6 * 6, dtype=np.float32).reshape(1, 3, 6, 6) / 10
    proto = caffe_pb2.BlobProto(num=1, channels=3, height=6, width=6)
    proto.data.extend(mean.ravel())
    write_binary_proto(tmp_path / "mean.binaryproto", proto)
    layer = window_layer(tmp_path, "fg_fraction: 1 crop_mode: 'square' scale: 0.5",
                         transform=f'crop_size: 4 mean_file: "{tmp_path}/mean.binaryproto"',
                         source="w.txt")
    (data, _), = run(layer)
    layer.close()
    # The 4x8 window (x 4..7, y 2..9), centred on (6, 6), becomes the square x, y in [2, 10]:
    # 9x9 pixels warped to round(9 * 4/9) = 4.
    bgr = bgr_planar(image)
    warped = cv_resize(bgr[:, 2:11, 2:11], 4, 4).astype(np.float32)
    mean_off = (6 - 4) // 2
    expect = (warped - mean[0, :, mean_off : mean_off + 4, mean_off : mean_off + 4])
    np.testing.assert_allclose(data[0], expect * np.float32(0.5), rtol=1e-6)


def test_cache_images_gives_the_same_batches(scene):
    tmp_path, _ = scene
    plain = run(window_layer(tmp_path, seed=3), forwards=2)
    cached = run(window_layer(tmp_path, "cache_images: true", seed=3), forwards=2)
    for (a, la), (b, lb) in zip(plain, cached):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_state_resumes_exactly(scene):
    tmp_path, _ = scene
    straight = run(window_layer(tmp_path, transform="crop_size: 4 mirror: true"), forwards=4)
    first = window_layer(tmp_path, transform="crop_size: 4 mirror: true")
    run(first, forwards=2)
    state = first.get_state()
    first.close()
    resumed = window_layer(tmp_path, transform="crop_size: 4 mirror: true", seed=77)
    tops = [Blob(), Blob()]
    resumed.setup([], tops)
    resumed.set_state(state)
    for k in (2, 3):
        resumed.forward([], tops)
        np.testing.assert_array_equal(tops[0].data, straight[k][0])
    resumed.close()


@pytest.mark.parametrize("text,message", [
    ("", "is empty"),
    ("0\nim0.png\n", "expected '#' to start image 0, found '0'"),
    ("# 1\nim0.png\n3 10 12\n0\n", r"expected '# 0', found '# 1'"),
    ("# 0\nim0.png\n3 10 12\n1\n0 0.9 1 1 2 2\n", "foreground window .* has class 0"),
    ("# 0\nim0.png\n3 10 12\n1\n1 high 1 1 2 2\n", "window overlap must be a number"),
    ("# 0\nim0.png\n3 10 12\n2\n1 0.9 1 1 2 2\n", "ends before its window class"),
    ("# 0\nim0.png\n1 10 12\n0\n", "has 1 channels; WindowData reads every image in colour"),
    ("# 0\nim0.png\n3 10 12\n1\n1 0.1 1 1 2 2\n", "no foreground windows"),
])
def test_window_file_errors(scene, text, message):
    tmp_path, _ = scene
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(PyforgeError, match=message):
        run(window_layer(tmp_path, source="bad.txt"))


def test_window_outside_the_image(scene):
    tmp_path, _ = scene
    (tmp_path / "out.txt").write_text("# 0\nim0.png\n3 10 12\n1\n1 0.9 5 5 20 8\n")
    layer = window_layer(tmp_path, "fg_fraction: 1", source="out.txt")
    with pytest.raises(PyforgeError, match=r"window \(5, 5, 20, 8\) lies outside .*im0\.png"):
        run(layer)
    layer.close()


def test_missing_window_file_and_crop_size(scene):
    tmp_path, _ = scene
    with pytest.raises(PyforgeError, match="window file .* does not exist"):
        run(window_layer(tmp_path, source="nope.txt"))
    with pytest.raises(PyforgeError, match="crop_size must be positive"):
        run(window_layer(tmp_path, transform=""))
