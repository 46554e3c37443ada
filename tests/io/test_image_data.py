"""ImageData: list files, root_folder, resizing, colour/grey, per-epoch shuffles, rand_skip,
the transformer, exact resume, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.io.util import (
    TEST,
    bgr_planar,
    cv_read,
    cv_resize,
    make_layer,
    random_images,
    run,
    write_rgb,
)
from tests.logcapture import capture_log


@pytest.fixture
def image_dir(tmp_path):
    """6 PNG images 4x5 (RGB), one with a space in its name; list.txt with labels 10..15."""
    images = random_images(6, 4, 5, seed=1)
    names = [f"im{i}.png" if i != 2 else "my im 2.png" for i in range(6)]
    (tmp_path / "imgs").mkdir()
    for name, image in zip(names, images):
        write_rgb(tmp_path / "imgs" / name, image)
    (tmp_path / "list.txt").write_text("".join(f"{n} {10 + i}\n" for i, n in enumerate(names)))
    return tmp_path, [bgr_planar(im) for im in images]


def image_layer(tmp_path, params="", transform="", phase=None, seed=1701,
                root="imgs/", source="list.txt"):
    text = f"""name: "img" type: "ImageData" top: "data" top: "label"
        transform_param {{ {transform} }}
        image_data_param {{ source: "{tmp_path}/{source}" root_folder: "{tmp_path}/{root}"
                            {params} }}"""
    return make_layer(text, seed=seed) if phase is None else make_layer(text, phase, seed)


def test_batches_in_list_order_with_labels(image_dir):
    tmp_path, images = image_dir
    layer = image_layer(tmp_path, "batch_size: 4")
    with capture_log() as log:
        batches = run(layer, forwards=3)
    layer.close()
    order = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
    for k, (data, label) in enumerate(batches):
        idx = order[4 * k : 4 * k + 4]
        np.testing.assert_array_equal(data, np.stack([images[i] for i in idx]))
        assert list(label) == [10 + i for i in idx]
    assert "A total of 6 images." in log.messages
    assert "output data size: 4,3,4,5" in log.messages
    assert "Restarting data prefetching from start." in log.messages


def test_batch_size_defaults_to_one(image_dir):
    tmp_path, images = image_dir
    layer = image_layer(tmp_path)
    (data, label), = run(layer)
    layer.close()
    assert data.shape == (1, 3, 4, 5) and list(label) == [10]


def test_resize_and_grey(image_dir):
    tmp_path, images = image_dir
    layer = image_layer(tmp_path, "batch_size: 2 new_height: 7 new_width: 3 is_color: false")
    (data, _), = run(layer)
    layer.close()
    assert data.shape == (2, 1, 7, 3)
    # cv::imread IMREAD_GRAYSCALE then cv::resize INTER_LINEAR, as Caffe's ReadImageToCVMat.
    for i in range(2):
        grey = cv_read(tmp_path / "imgs" / f"im{i}.png", gray=True)
        np.testing.assert_array_equal(data[i], cv_resize(grey, 7, 3))


def test_root_folder_is_concatenated(image_dir, tmp_path):
    tmp, images = image_dir
    # "imgs/im" + "0.png": Caffe joins root_folder and the name without a separator.
    (tmp / "prefixed.txt").write_text("0.png 1\n1.png 2\n")
    layer = image_layer(tmp, "batch_size: 2", root="imgs/im", source="prefixed.txt")
    (data, label), = run(layer)
    layer.close()
    np.testing.assert_array_equal(data, np.stack(images[:2]))
    assert list(label) == [1, 2]


def test_root_folder_without_trailing_slash_is_forgiven(image_dir):
    tmp_path, images = image_dir
    with capture_log() as log:
        layer = image_layer(tmp_path, "batch_size: 1", root="imgs")
        (data, _), = run(layer)
    layer.close()
    np.testing.assert_array_equal(data[0], images[0])
    assert "has no trailing '/'" in log.text


def _epochs(layer, n_batches):
    return [label.astype(int).tolist() for _, label in run(layer, forwards=n_batches)]


def test_shuffle_reshuffles_each_epoch_and_is_seeded(image_dir):
    tmp_path, _ = image_dir

    def labels(seed):
        layer = image_layer(tmp_path, "batch_size: 6 shuffle: true", seed=seed)
        out = _epochs(layer, 3)
        layer.close()
        return out

    one, again, other = labels(5), labels(5), labels(6)
    assert one == again and one != other
    for epoch in one:
        assert sorted(epoch) == list(range(10, 16))
    assert len({tuple(e) for e in one}) > 1  # a new order at each epoch


def test_rand_skip(image_dir):
    tmp_path, images = image_dir
    with capture_log() as log:
        layer = image_layer(tmp_path, "batch_size: 2 rand_skip: 6", seed=11)
        (data, label), = run(layer)
    layer.close()
    skip = layer.skip
    assert f"Skipping first {skip} data points." in log.messages
    idx = [skip % 6, (skip + 1) % 6]
    assert list(label) == [10 + i for i in idx]
    np.testing.assert_array_equal(data, np.stack([images[i] for i in idx]))


def test_state_resumes_exactly(image_dir):
    tmp_path, _ = image_dir
    params = "batch_size: 4 shuffle: true rand_skip: 3"
    layer = image_layer(tmp_path, params, transform="mirror: true crop_size: 3", seed=2)
    straight = run(layer, forwards=5)
    layer.close()
    first = image_layer(tmp_path, params, transform="mirror: true crop_size: 3", seed=2)
    run(first, forwards=2)
    state = first.get_state()
    first.close()
    assert state["cursor"] == 2
    resumed = image_layer(tmp_path, params, transform="mirror: true crop_size: 3", seed=99)
    tops = [Blob(), Blob()]
    resumed.setup([], tops)
    resumed.set_state(state)
    for k in range(2, 5):
        resumed.forward([], tops)
        np.testing.assert_array_equal(tops[0].data, straight[k][0])
        np.testing.assert_array_equal(tops[1].data, straight[k][1])
    resumed.close()


def test_transform_param_is_applied(image_dir):
    tmp_path, images = image_dir
    layer = image_layer(tmp_path, "batch_size: 2", transform="scale: 0.5 mean_value: 10 "
                        "crop_size: 2", phase=TEST)
    (data, _), = run(layer)
    layer.close()
    # TEST centre crop of 4x5: rows 1..2, columns 1..2.
    expect = (np.stack(images[:2])[:, :, 1:3, 1:3].astype(np.float32) - 10) * np.float32(0.5)
    np.testing.assert_array_equal(data, expect)


def test_missing_list_file(tmp_path):
    with pytest.raises(PyforgeError, match=r"image list file '.*nope\.txt' does not exist"):
        run(image_layer(tmp_path, source="nope.txt"))


@pytest.mark.parametrize("line", ["just_a_name.png", "a.png seven"])
def test_bad_list_line_names_file_and_line(tmp_path, line):
    (tmp_path / "list.txt").write_text(f"ok.png 1\n\n{line}\n")
    with pytest.raises(PyforgeError, match=rf"list\.txt:3: expected '<image path> <integer "
                                           rf"label>', found '{line}'"):
        run(image_layer(tmp_path))


def test_missing_and_corrupt_images(image_dir):
    tmp_path, _ = image_dir
    (tmp_path / "missing.txt").write_text("im0.png 0\nghost.png 1\n")
    layer = image_layer(tmp_path, "batch_size: 2", source="missing.txt")
    with pytest.raises(PyforgeError, match=r"imgs/ghost\.png' does not exist"):
        run(layer)
    layer.close()
    (tmp_path / "imgs" / "bad.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "bad.txt").write_text("bad.png 0\n")
    with pytest.raises(PyforgeError, match=r"imgs/bad\.png: cannot decode the image"):
        run(image_layer(tmp_path, source="bad.txt"))


def test_images_of_different_sizes_in_one_batch(image_dir):
    tmp_path, _ = image_dir
    write_rgb(tmp_path / "imgs" / "big.png", random_images(1, 6, 6)[0])
    (tmp_path / "mixed.txt").write_text("im0.png 0\nbig.png 1\n")
    layer = image_layer(tmp_path, "batch_size: 2", source="mixed.txt")
    with pytest.raises(PyforgeError, match=r"big\.png \(line 2 of the list\): shape \(3, 6, 6\) "
                                           r"differs from \(3, 4, 5\) of the first record of its "
                                           r"batch; .*\(set crop_size or new_height/new_width\)"):
        run(layer)
    layer.close()
    # batch_size 1: each batch takes its own image's shape, as in Caffe.
    layer = image_layer(tmp_path, "batch_size: 1", source="mixed.txt")
    shapes = [data.shape for data, _ in run(layer, forwards=2)]
    layer.close()
    assert shapes == [(1, 3, 4, 5), (1, 3, 6, 6)]


def test_crop_size_takes_images_of_different_sizes_in_one_batch(image_dir):
    """Caffe's DataTransformer crops record by record: under crop_size a batch may mix sizes,
    each image cropped on its own (centred in TEST)."""
    tmp_path, images = image_dir
    big = random_images(1, 6, 7)[0]
    write_rgb(tmp_path / "imgs" / "big.png", big)
    (tmp_path / "mixed.txt").write_text("im0.png 0\nbig.png 1\n")
    layer = image_layer(tmp_path, "batch_size: 2", "crop_size: 3", phase=TEST,
                        source="mixed.txt")
    (data, labels), = run(layer)
    layer.close()
    small, wide = images[0], bgr_planar(big)
    np.testing.assert_array_equal(data[0], small[:, 0:3, 1:4])  # (4-3)//2, (5-3)//2
    np.testing.assert_array_equal(data[1], wide[:, 1:4, 2:5])  # (6-3)//2, (7-3)//2
    assert labels.tolist() == [0, 1]
    # TRAIN crops at random, each within its own image.
    layer = image_layer(tmp_path, "batch_size: 2", "crop_size: 4", source="mixed.txt")
    batches = run(layer, forwards=3)
    layer.close()
    assert all(data.shape == (2, 3, 4, 4) for data, _ in batches)
    # A crop larger than one of the images is refused, naming the sizes.
    layer = image_layer(tmp_path, "batch_size: 2", "crop_size: 5", source="mixed.txt")
    with pytest.raises(PyforgeError, match="crop_size 5 is larger than the 4x5 images"):
        run(layer)
    layer.close()


def test_new_height_without_new_width(image_dir):
    tmp_path, _ = image_dir
    with pytest.raises(PyforgeError, match="must be set together"):
        run(image_layer(tmp_path, "new_height: 3"))
