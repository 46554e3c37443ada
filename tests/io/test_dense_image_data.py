"""DenseImageData (SegNet, ENet): real PNG image / label pairs written here, decoded with
OpenCV; resizing (bilinear image, nearest label), the joint mirror and crop, the transform
on the image only, shuffling and resuming, ENet's label_divide_factor, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.gradient_check import TEST, TRAIN, build_layer

cv2 = pytest.importorskip("cv2")


def write_pairs(folder: Path, count: int, height: int = 6, width: int = 8,
                sizes: list[tuple[int, int]] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Colour PNGs whose blue channel is ten times the label PNG beside them, so that any
    joint flip or crop keeps ``blue == 10 * label``."""
    rng = np.random.default_rng(0)
    pairs = []
    lines = []
    for i in range(count):
        h, w = sizes[i] if sizes else (height, width)
        label = rng.integers(0, 12, (h, w)).astype(np.uint8)
        image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        image[:, :, 0] = label * 10
        cv2.imwrite(str(folder / f"img{i}.png"), image)
        cv2.imwrite(str(folder / f"lab{i}.png"), label)
        lines.append(f"img{i}.png lab{i}.png")
        pairs.append((image, label))
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return pairs


def dense(folder: Path, params: str, transform: str = "", phase=TRAIN, seed: int = 1701):
    text = (f'name: "data" type: "DenseImageData" top: "data" top: "label" '
            f'dense_image_data_param {{ source: "{folder / "list.txt"}" root_folder: '
            f'"{folder}/" {params} }} transform_param {{ {transform} }}')
    layer = build_layer(text, phase, seed=seed)
    top = [Blob(), Blob()]
    layer.setup([], top)
    return layer, top


def batches(layer, top, count: int):
    out = []
    for _ in range(count):
        layer.forward([], top)
        out.append((top[0].data.copy(), top[1].data.copy()))
    return out


def test_pairs_in_list_order_bgr_planes_and_raw_labels(tmp_path):
    pairs = write_pairs(tmp_path, 3)
    layer, top = dense(tmp_path, "batch_size: 2")
    assert top[0].shape == (2, 3, 6, 8) and top[1].shape == (2, 1, 6, 8)
    (d0, l0), (d1, l1) = batches(layer, top, 2)
    layer.close()
    order = [0, 1, 2, 0]  # wraps around
    for k, (data, label) in enumerate(((d0, l0), (d1, l1))):
        for j in range(2):
            image, lab = pairs[order[2 * k + j]]
            np.testing.assert_array_equal(data[j], image.transpose(2, 0, 1))
            np.testing.assert_array_equal(label[j, 0], lab)


def test_resize_is_bilinear_for_images_and_nearest_for_labels(tmp_path):
    pairs = write_pairs(tmp_path, 1, 6, 8)
    layer, top = dense(tmp_path, "batch_size: 1 new_height: 9 new_width: 5")
    ((data, label),) = batches(layer, top, 1)
    layer.close()
    image, lab = pairs[0]
    want = cv2.resize(image, (5, 9), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    np.testing.assert_array_equal(data[0], want)
    np.testing.assert_array_equal(label[0, 0],
                                  cv2.resize(lab, (5, 9), interpolation=cv2.INTER_NEAREST))
    assert set(np.unique(label)) <= set(np.unique(lab))  # no blended label values


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_mirror_and_crop_move_image_and_label_together(tmp_path, phase):
    write_pairs(tmp_path, 4, 10, 12)
    layer, top = dense(tmp_path, "batch_size: 2 mirror: true crop_height: 6 crop_width: 7",
                       phase=phase)
    results = batches(layer, top, 6)
    layer.close()
    assert top[0].shape == (2, 3, 6, 7) and top[1].shape == (2, 1, 6, 7)
    for data, label in results:
        np.testing.assert_array_equal(data[:, 0], 10 * label[:, 0])
    # The crops and flips are random (the fork crops at random in TEST too).
    assert len({d.tobytes() for d, _ in results}) == 6


def test_transform_scale_and_mean_apply_to_the_image_only(tmp_path):
    pairs = write_pairs(tmp_path, 1)
    layer, top = dense(tmp_path, "batch_size: 1", "scale: 0.5 mean_value: 4 mean_value: 5 "
                       "mean_value: 6")
    ((data, label),) = batches(layer, top, 1)
    layer.close()
    image, lab = pairs[0]
    mean = np.array([4, 5, 6], np.float32)[:, None, None]
    np.testing.assert_allclose(data[0], (image.transpose(2, 0, 1) - mean) * 0.5)
    np.testing.assert_array_equal(label[0, 0], lab)


def test_grey_images(tmp_path):
    pairs = write_pairs(tmp_path, 1)
    layer, top = dense(tmp_path, "batch_size: 1 is_color: false")
    ((data, _),) = batches(layer, top, 1)
    layer.close()
    want = cv2.cvtColor(pairs[0][0], cv2.COLOR_BGR2GRAY)
    assert data.shape == (1, 1, 6, 8)
    np.testing.assert_allclose(data[0, 0], want, atol=1)


def test_shuffle_is_seeded_and_a_resumed_layer_continues_exactly(tmp_path):
    write_pairs(tmp_path, 5)
    params = "batch_size: 2 shuffle: true mirror: true crop_height: 4 crop_width: 5"
    layer, top = dense(tmp_path, params, seed=3)
    straight = batches(layer, top, 6)
    layer.close()
    first, top1 = dense(tmp_path, params, seed=3)
    head = batches(first, top1, 3)
    state = first.get_state()
    first.close()
    resumed, top2 = dense(tmp_path, params, seed=99)
    resumed.set_state(state)
    tail = batches(resumed, top2, 3)
    resumed.close()
    for (d, lab), (d2, lab2) in zip(straight, head + tail):
        np.testing.assert_array_equal(d, d2)
        np.testing.assert_array_equal(lab, lab2)
    other, top3 = dense(tmp_path, params, seed=4)
    assert any((a[0] != b[0]).any() for a, b in zip(straight, batches(other, top3, 6)))
    other.close()


def test_enet_label_divide_factor(tmp_path):
    write_pairs(tmp_path, 2, 8, 8)
    layer, top = dense(tmp_path, "batch_size: 2 new_height: 8 new_width: 12 "
                       "label_divide_factor: 4")
    ((data, label),) = batches(layer, top, 1)
    layer.close()
    assert data.shape == (2, 3, 8, 12) and label.shape == (2, 1, 2, 3)


def test_batch_size_one_takes_each_images_own_size(tmp_path):
    write_pairs(tmp_path, 2, sizes=[(4, 5), (6, 3)])
    layer, top = dense(tmp_path, "batch_size: 1")
    shapes = [(d.shape, lab.shape) for d, lab in batches(layer, top, 2)]
    layer.close()
    assert shapes == [((1, 3, 4, 5), (1, 1, 4, 5)), ((1, 3, 6, 3), (1, 1, 6, 3))]


@pytest.mark.parametrize(("params", "transform", "edit", "message"), [
    ("batch_size: 1", "mirror: true", None, "transform_param mirror and crop_size"),
    ("batch_size: 1", "crop_size: 4", None, "transform_param mirror and crop_size"),
    ("batch_size: 0", "", None, "batch_size must be given and positive"),
    ("batch_size: 1 new_height: 4", "", None, "must be set together"),
    ("batch_size: 1 crop_width: 4", "", None, "must be set together"),
    ("batch_size: 1 crop_height: 4 crop_width: 4 label_divide_factor: 2", "", None,
     "label_divide_factor with crop_height"),
    ("batch_size: 1", "", lambda f: (f / "list.txt").write_text("img0.png\n"),
     r"list.txt:1: expected '<image path> <label image path>'"),
    ("batch_size: 1", "", lambda f: (f / "list.txt").unlink(), "source list .* does not exist"),
    ("batch_size: 1", "", lambda f: (f / "lab0.png").unlink(), "lab0.png' does not exist"),
    ("batch_size: 1", "", lambda f: (f / "img0.png").write_bytes(b"not a png"),
     "cannot decode the image"),
    ("batch_size: 1", "", lambda f: cv2.imwrite(str(f / "lab0.png"), np.zeros((5, 8), "u1")),
     r"label image 'lab0.png' is 5x8, its image 'img0.png' needs 6x8"),
    ("batch_size: 1 crop_height: 7 crop_width: 4", "", None, "crop 7x4 is larger than image"),
])
def test_errors(tmp_path, params, transform, edit, message):
    write_pairs(tmp_path, 1)
    if edit:
        edit(tmp_path)
    with pytest.raises(PyforgeError, match=message):
        layer, top = dense(tmp_path, params, transform)
        try:
            batches(layer, top, 1)
        finally:
            layer.close()
