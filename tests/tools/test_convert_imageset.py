"""convert-imageset -> Data layer gives back the images' pixels: raw and encoded (PNG, JPEG),
resized, grey; Caffe's keys, commits and log lines; clear errors and exit codes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pyforge.cli import main
from pyforge.errors import DataError
from pyforge.io.datum import resize_image
from pyforge.io.db import LEVELDB, LMDB, open_reader
from pyforge.proto import caffe_pb2
from pyforge.tools import convert_imageset
from tests.io.util import bgr_planar, make_layer, random_images, run, smooth_image
from tests.logcapture import capture_log

N = 5


@pytest.fixture
def images(tmp_path):
    """N PNG images 6x7 and N smooth JPEGs 8x8 in tmp/imgs, with list files png.txt and
    jpg.txt (labels 0..N-1); the decoded pixels (3, H, W) BGR of each."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    pngs = random_images(N, 6, 7, seed=9)
    png_lines, jpg_lines, jpg_pixels = [], [], []
    for i, image in enumerate(pngs):
        Image.fromarray(image).save(folder / f"p{i}.png")
        png_lines.append(f"p{i}.png {i}\n")
        Image.fromarray(smooth_image(8, 8, seed=i)).save(folder / f"j{i}.jpg", quality=90)
        jpg_lines.append(f"j{i}.jpg {i}\n")
        jpg_pixels.append(bgr_planar(np.asarray(Image.open(folder / f"j{i}.jpg").convert("RGB"))))
    (tmp_path / "png.txt").write_text("".join(png_lines))
    (tmp_path / "jpg.txt").write_text("".join(jpg_lines))
    return tmp_path, [bgr_planar(im) for im in pngs], jpg_pixels


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


def test_encoded_jpeg_decodes_as_opencv_would(images):
    tmp_path, _, jpgs = images
    db = tmp_path / "db"
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "jpg.txt", db, encoded=True)
    data, _ = read_back(db)
    np.testing.assert_array_equal(data, np.stack(jpgs))
    # force_gray decodes the luma plane, force_color gives three channels.
    grey, _ = read_back(db, transform="force_gray: true")
    assert grey.shape == (N, 1, 8, 8)
    luma = np.asarray(Image.open(tmp_path / "imgs" / "j0.jpg").convert("L"), dtype=np.float32)
    assert np.abs(grey[0, 0] - luma).max() <= 1
    colour, _ = read_back(db, transform="force_color: true")
    np.testing.assert_array_equal(colour, data)


def test_encode_type_reencodes(images):
    tmp_path, pngs, _ = images
    db = tmp_path / "db"
    with capture_log() as log:
        convert_imageset(f"{tmp_path}/imgs/", tmp_path / "png.txt", db, encode_type="jpg")
    assert "encode_type specified, assuming encoded=true." in log.messages
    datum = records(db)[0][1]
    assert datum.encoded and Image.open(io.BytesIO(datum.data)).format == "JPEG"
    db2 = tmp_path / "db2"
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "jpg.txt", db2, encode_type="png")
    data, _ = read_back(db2)
    _, _, jpgs = images
    np.testing.assert_array_equal(data, np.stack(jpgs))  # PNG is lossless


@pytest.mark.parametrize("encoded", [False, True])
def test_resize_and_gray(images, encoded):
    tmp_path, _, _ = images
    db = tmp_path / "db"
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "png.txt", db, resize_height=4,
                     resize_width=9, gray=True, encode_type="png" if encoded else "")
    data, _ = read_back(db)
    assert data.shape == (N, 1, 4, 9)
    for i in range(N):
        grey = np.asarray(Image.open(tmp_path / "imgs" / f"p{i}.png").convert("L"))[None]
        np.testing.assert_array_equal(data[i], resize_image(grey, 4, 9))


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
    Image.fromarray(random_images(1, 2, 2)[0]).save(tmp_path / "imgs" / "a.png")
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
    Image.fromarray(random_images(1, 3, 3)[0]).save(tmp_path / "imgs" / "small.png")
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
    with pytest.raises(DataError, match=r"bad\.txt: image 1 \(broken\.png\): cannot decode"):
        convert_imageset(f"{tmp_path}/imgs/", tmp_path / "bad.txt", tmp_path / "db")
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
