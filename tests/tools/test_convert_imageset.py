"""convert-imageset -> Data layer gives back OpenCV's pixels, as Caffe's convert_imageset
stores them: raw and encoded (PNG, JPEG), resized, grey, each equal to cv2.imread / cv2.resize
/ cv2.imencode of the same file; Caffe's keys, commits and log lines; clear errors and exit
codes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pyforge.cli import main
from pyforge.errors import DataError
from pyforge.io.db import LEVELDB, LMDB, open_reader
from pyforge.proto import caffe_pb2
from pyforge.tools import convert_imageset
from tests.io.util import (
    cv_read,
    cv_resize,
    make_layer,
    planar,
    random_images,
    run,
    smooth_image,
    write_rgb,
)
from tests.logcapture import capture_log

N = 5


@pytest.fixture
def images(tmp_path):
    """N PNG images 6x7 and N smooth JPEGs 8x8 in tmp/imgs, with list files png.txt and
    jpg.txt (labels 0..N-1); OpenCV's decoded pixels (3, H, W) BGR of each."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    png_lines, jpg_lines = [], []
    for i, image in enumerate(random_images(N, 6, 7, seed=9)):
        write_rgb(folder / f"p{i}.png", image)
        png_lines.append(f"p{i}.png {i}\n")
        write_rgb(folder / f"j{i}.jpg", smooth_image(8, 8, seed=i), jpeg=90)
        jpg_lines.append(f"j{i}.jpg {i}\n")
    (tmp_path / "png.txt").write_text("".join(png_lines))
    (tmp_path / "jpg.txt").write_text("".join(jpg_lines))
    return (tmp_path, [cv_read(folder / f"p{i}.png") for i in range(N)],
            [cv_read(folder / f"j{i}.jpg") for i in range(N)])


def read_back(db, batch=N, backend="LMDB", transform=""):
    layer = make_layer(f"""name: "d" type: "Data" top: "data" top: "label"
        transform_param {{ {transform} }}
        data_param {{ source: "{db}" batch_size: {batch} backend: {backend} }}""")
    (data, label), = run(layer)
    layer.close()
    return data, label


def records(db, backend=LMDB):
    reader = open_reader(str(db), backend)
    try:
        return [(reader.key(i), caffe_pb2.Datum.FromString(reader.value(i)))
                for i in range(len(reader))]
    finally:
        reader.close()


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_raw_round_trip(images, backend):
    tmp_path, pngs, _ = images
    db = tmp_path / "db"
    assert convert_imageset(f"{tmp_path}/imgs/", tmp_path / "png.txt", db, backend=backend) == N
    data, label = read_back(db, backend=backend.upper())
    np.testing.assert_array_equal(data, np.stack(pngs))
    assert list(label) == list(range(N))
    recs = records(db, LEVELDB if backend == "leveldb" else LMDB)
    assert [k for k, _ in recs] == [b"%08d_p%d.png" % (i, i) for i in range(N)]
    first = recs[0][1]
    assert (first.channels, first.height, first.width, first.encoded) == (3, 6, 7, False)
    assert first.data == pngs[0].tobytes()


def test_encoded_png_keeps_the_file_and_decodes_to_the_same_pixels(images):
    tmp_path, pngs, _ = images
    db = tmp_path / "db"
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "png.txt", db, encoded=True)
    key, datum = records(db)[1]
    assert datum.encoded and datum.label == 1 and not datum.channels
    assert datum.data == (tmp_path / "imgs" / "p1.png").read_bytes()  # the file's own bytes
    data, _ = read_back(db)
    np.testing.assert_array_equal(data, np.stack(pngs))


def test_encoded_jpeg_decodes_as_opencv_does(images):
    tmp_path, _, jpgs = images
    db = tmp_path / "db"
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "jpg.txt", db, encoded=True)
    data, _ = read_back(db)
    np.testing.assert_array_equal(data, np.stack(jpgs))
    # force_gray is IMREAD_GRAYSCALE (libjpeg's luma plane), force_color IMREAD_COLOR.
    grey, _ = read_back(db, transform="force_gray: true")
    expected = [cv_read(tmp_path / "imgs" / f"j{i}.jpg", gray=True) for i in range(N)]
    np.testing.assert_array_equal(grey, np.stack(expected))
    colour, _ = read_back(db, transform="force_color: true")
    np.testing.assert_array_equal(colour, data)


def test_encode_type_reencodes_with_imencode(images):
    tmp_path, pngs, jpgs = images
    db = tmp_path / "db"
    with capture_log() as log:
        convert_imageset(f"{tmp_path}/imgs/", tmp_path / "png.txt", db, encode_type="jpg")
    assert "encode_type specified, assuming encoded=true." in log.messages
    datum = records(db)[0][1]
    assert datum.encoded and datum.data[:2] == b"\xff\xd8"  # a JPEG file
    # cv::imencode(".jpg") at OpenCV's default quality, decoded again: Caffe's pixels.
    data, _ = read_back(db)
    for i in range(N):
        ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(pngs[i].transpose(1, 2, 0)))
        np.testing.assert_array_equal(data[i], planar(cv2.imdecode(buffer, cv2.IMREAD_COLOR)))
    db2 = tmp_path / "db2"
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "jpg.txt", db2, encode_type="png")
    data, _ = read_back(db2)
    np.testing.assert_array_equal(data, np.stack(jpgs))  # PNG is lossless


def test_jpeg_file_under_encode_type_jpeg_is_reencoded_as_caffe_does(images):
    """Caffe's matchExt accepts a .jpeg file for encode_type jpg, not a .jpg file for
    encode_type jpeg: that one is decoded and encoded again."""
    tmp_path, _, _ = images
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "jpg.txt", tmp_path / "db",
                     encode_type="jpeg")
    datum = records(tmp_path / "db")[0][1]
    assert datum.data != (tmp_path / "imgs" / "j0.jpg").read_bytes()
    (tmp_path / "imgs" / "k.jpeg").write_bytes((tmp_path / "imgs" / "j0.jpg").read_bytes())
    (tmp_path / "jpeg.txt").write_text("k.jpeg 0\n")
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "jpeg.txt", tmp_path / "db2",
                     encode_type="jpg")
    assert records(tmp_path / "db2")[0][1].data == (tmp_path / "imgs" / "j0.jpg").read_bytes()


@pytest.mark.parametrize("encoded", [False, True])
@pytest.mark.parametrize("gray", [False, True])
def test_resize_and_gray_equal_opencv(images, encoded, gray):
    """cv::imread (IMREAD_COLOR or IMREAD_GRAYSCALE) then cv::resize INTER_LINEAR, pixel for
    pixel, for shrinking and enlarging, raw and PNG-encoded."""
    tmp_path, _, _ = images
    for height, width in ((4, 9), (13, 3)):
        db = tmp_path / f"db{height}"
        convert_imageset(f"{tmp_path}/imgs/", tmp_path / "png.txt", db, resize_height=height,
                         resize_width=width, gray=gray, encode_type="png" if encoded else "")
        data, _ = read_back(db)
        assert data.shape == (N, 1 if gray else 3, height, width)
        for i in range(N):
            source = cv_read(tmp_path / "imgs" / f"p{i}.png", gray=gray)
            np.testing.assert_array_equal(data[i], cv_resize(source, height, width))


def test_gray_equals_opencvs_conversion(images):
    tmp_path, _, _ = images
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "png.txt", tmp_path / "db", gray=True)
    data, _ = read_back(tmp_path / "db")
    expected = [cv_read(tmp_path / "imgs" / f"p{i}.png", gray=True) for i in range(N)]
    np.testing.assert_array_equal(data, np.stack(expected))


def test_gray_encoded_stores_grey_not_the_colour_file(images):
    tmp_path, _, _ = images
    db = tmp_path / "db"
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "png.txt", db, gray=True, encoded=True)
    data, _ = read_back(db)
    assert data.shape == (N, 1, 6, 7)


def test_shuffle_is_a_seeded_permutation(images):
    tmp_path, _, _ = images

    def keys(seed, name):
        convert_imageset(f"{tmp_path}/imgs/", tmp_path / "png.txt", tmp_path / name,
                         shuffle=True, seed=seed)
        return [(k, d.label) for k, d in records(tmp_path / name)]

    one, again = keys(1, "a"), keys(1, "b")
    assert one == again
    assert [k[:9] for k, _ in one] == [b"%08d_" % i for i in range(N)]
    assert sorted(label for _, label in one) == list(range(N))
    assert [int(k[10:11]) for k, _ in one] == [label for _, label in one]


def test_commits_and_log_lines(tmp_path):
    (tmp_path / "imgs").mkdir()
    write_rgb(tmp_path / "imgs" / "a.png", random_images(1, 2, 2)[0])
    (tmp_path / "list.txt").write_text("a.png 3\n" * 2500)
    calls = []
    with capture_log() as log:
        convert_imageset(f"{tmp_path}/imgs/", tmp_path / "list.txt", tmp_path / "db",
                         progress=lambda done, total: calls.append((done, total)))
    processed = [m for m in log.messages if m.startswith("Processed")]
    assert processed == ["Processed 1000 files.", "Processed 2000 files.",
                         "Processed 2500 files."]
    assert "A total of 2500 images." in log.messages
    assert calls == [(1000, 2500), (2000, 2500), (2500, 2500)]


def test_check_size(images):
    tmp_path, _, _ = images
    write_rgb(tmp_path / "imgs" / "small.png", random_images(1, 3, 3)[0])
    (tmp_path / "mixed.txt").write_text("p0.png 0\nsmall.png 1\n")
    with pytest.raises(DataError, match=r"small\.png\): image is 3x3x3 \(CxHxW\), the first "
                                        r"image 3x6x7 \(--check_size\)"):
        convert_imageset(f"{tmp_path}/imgs/", tmp_path / "mixed.txt", tmp_path / "db",
                         check_size=True)
    assert not (tmp_path / "db").exists()
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "mixed.txt", tmp_path / "db")


def test_bad_image_fails_and_removes_the_partial_db(images):
    tmp_path, _, _ = images
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "bad.txt").write_text("p0.png 0\nbroken.png 1\n")
    with pytest.raises(DataError, match=r"bad\.txt: image 1 \(broken\.png\): cannot decode "
                                        r"the image \(18 bytes\)") as caught:
        convert_imageset(f"{tmp_path}/imgs/", tmp_path / "bad.txt", tmp_path / "db")
    message = str(caught.value)
    assert "\n" not in message and "BytesIO" not in message and "0x" not in message
    assert not (tmp_path / "db").exists()


def test_cli_flags_and_exit_codes(images, capsys):
    tmp_path, pngs, _ = images
    root = f"{tmp_path}/imgs/"
    # gflags spellings: -flag=value, --flag value, --flag=true, --noflag.
    assert main(["convert_imageset", "-resize_height=3", "--resize_width", "4", "--gray=true",
                 "--noshuffle", "-backend", "leveldb", root, str(tmp_path / "png.txt"),
                 str(tmp_path / "db")]) == 0
    data, _ = read_back(tmp_path / "db", backend="LEVELDB")
    assert data.shape == (N, 1, 3, 4)
    assert main(["convert-imageset", root, str(tmp_path / "nope.txt"),
                 str(tmp_path / "db2")]) == 2
    assert "nope.txt' does not exist" in capsys.readouterr().err
    assert main(["convert-imageset", root, str(tmp_path / "png.txt"), str(tmp_path / "db")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["convert-imageset", "--gray=maybe", root, str(tmp_path / "png.txt"),
                 str(tmp_path / "db3")]) == 2
    assert main(["convert-imageset", "--backend=rocksdb", root, str(tmp_path / "png.txt"),
                 str(tmp_path / "db3")]) == 2


def test_encoded_images_of_different_sizes_through_the_data_layers_crop(tmp_path):
    """convert-imageset --encoded keeps PNGs of different sizes; a Data layer with crop_size
    decodes each record (cv::imdecode) and crops it on its own, so one batch holds them all.
    TEST takes each record's centre; every value is (OpenCV's pixel - mean_value) * scale."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    sizes = [(9, 7), (5, 12), (6, 6), (11, 5)]
    for i, (h, w) in enumerate(sizes):
        write_rgb(folder / f"v{i}.png", random_images(1, h, w, seed=30 + i)[0])
    (tmp_path / "list.txt").write_text("".join(f"v{i}.png {i}\n" for i in range(len(sizes))))
    convert_imageset(f"{folder}/", tmp_path / "list.txt", tmp_path / "db", encoded=True)
    assert [d.encoded for _, d in records(tmp_path / "db")] == [True] * len(sizes)
    crop, means, scale = 4, (104.0, 117.0, 123.0), 0.5
    for gray in (False, True):
        mean_values = means[:1] if gray else means
        transform = (f"crop_size: {crop} scale: {scale} force_gray: {str(gray).lower()} "
                     + " ".join(f"mean_value: {m}" for m in mean_values))
        layer = make_layer(f"""name: "d" type: "Data" top: "data" top: "label"
            transform_param {{ {transform} }}
            data_param {{ source: "{tmp_path / 'db'}" batch_size: 4 backend: LMDB }}""",
                           phase=caffe_pb2.TEST)
        (data, labels), = run(layer)
        layer.close()
        assert data.shape == (4, 1 if gray else 3, crop, crop)
        assert labels.tolist() == [0, 1, 2, 3]
        for i, (h, w) in enumerate(sizes):
            image = cv_read(folder / f"v{i}.png", gray=gray).astype(np.float32)
            top, left = (h - crop) // 2, (w - crop) // 2
            mean = np.asarray(mean_values, np.float32).reshape(-1, 1, 1)
            expected = (image[:, top:top + crop, left:left + crop] - mean) * np.float32(scale)
            np.testing.assert_array_equal(data[i], expected)
    # TRAIN: random offsets and mirroring, still one crop of each record's own pixels.
    layer = make_layer(f"""name: "d" type: "Data" top: "data" top: "label"
        transform_param {{ crop_size: {crop} mirror: true }}
        data_param {{ source: "{tmp_path / 'db'}" batch_size: 4 backend: LMDB }}""")
    (data, _), = run(layer)
    layer.close()
    for i, (h, w) in enumerate(sizes):
        image = cv_read(folder / f"v{i}.png").astype(np.float32)
        windows = [image[:, y:y + crop, x:x + crop] for y in range(h - crop + 1)
                   for x in range(w - crop + 1)]
        windows += [win[:, :, ::-1] for win in windows]
        assert any(np.array_equal(data[i], win) for win in windows), f"record {i}"
