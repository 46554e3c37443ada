"""compute-image-mean: Caffe's float32 sums, its BlobProto file and log lines, and the file
used as transform_param.mean_file."""

from __future__ import annotations

import numpy as np
import pytest

from pyforge.cli import main
from pyforge.errors import DataError
from pyforge.io.db import open_writer
from pyforge.io.db_lmdb import LMDBWriter
from pyforge.proto import caffe_pb2, read_binary_proto
from pyforge.tools import compute_image_mean, convert_imageset
from tests.io.util import bgr_planar, make_layer, random_images, run, write_rgb
from tests.logcapture import capture_log


def datum_db(path, images, backend="lmdb"):
    writer = open_writer(str(path), backend)
    for i, image in enumerate(images):
        c, h, w = image.shape
        datum = caffe_pb2.Datum(channels=c, height=h, width=w, label=i)
        if image.dtype == np.uint8:
            datum.data = image.tobytes()
        else:
            datum.float_data.extend(image.ravel())
        writer.put(b"%08d" % i, datum.SerializeToString())
    writer.close()


def caffe_mean(images):
    """Caffe's arithmetic: float32 running sums in record order, divided by the count."""
    sums = np.zeros(images[0].shape, dtype=np.float32)
    for image in images:
        sums = (sums + image.astype(np.float32)).astype(np.float32)
    return sums / np.float32(len(images))


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_mean_file_and_log(tmp_path, backend):
    rng = np.random.default_rng(0)
    images = list(rng.integers(0, 256, size=(7, 3, 4, 5), dtype=np.uint8))
    datum_db(tmp_path / "db", images, backend)
    with capture_log() as log:
        mean, channels = compute_image_mean(tmp_path / "db", tmp_path / "mean.binaryproto",
                                            backend=backend)
    expect = caffe_mean(images)
    np.testing.assert_array_equal(mean, expect)
    proto = read_binary_proto(tmp_path / "mean.binaryproto", caffe_pb2.BlobProto())
    assert (proto.num, proto.channels, proto.height, proto.width) == (1, 3, 4, 5)
    np.testing.assert_array_equal(np.array(proto.data, np.float32), expect.ravel())
    assert channels == pytest.approx(expect.reshape(3, -1).mean(axis=1), rel=1e-6)
    lines = log.messages
    assert lines[:1] == ["Starting iteration"]
    assert "Processed 7 files." in lines and f"Write to {tmp_path}/mean.binaryproto" in lines
    assert "Number of channels: 3" in lines
    assert [m.split(":")[0] for m in lines if m.startswith("mean_value")] == [
        f"mean_value channel [{c}]" for c in range(3)]
    assert f"mean_value channel [1]:{channels[1]:g}" in lines


def test_float_data_records(tmp_path):
    images = [np.full((1, 2, 2), v, dtype=np.float32) for v in (0.5, 1.5, -1.0)]
    datum_db(tmp_path / "db", images)
    mean, channels = compute_image_mean(tmp_path / "db")
    np.testing.assert_allclose(mean, np.full((1, 2, 2), 1 / 3, np.float32), rtol=1e-6)
    assert channels == pytest.approx([1 / 3])


def test_mean_file_subtracted_by_the_data_layer(tmp_path):
    (tmp_path / "imgs").mkdir()
    pictures = random_images(4, 5, 6, seed=2)
    for i, picture in enumerate(pictures):
        write_rgb(tmp_path / "imgs" / f"{i}.png", picture)
    (tmp_path / "list.txt").write_text("".join(f"{i}.png {i}\n" for i in range(4)))
    convert_imageset(f"{tmp_path}/imgs/", tmp_path / "list.txt", tmp_path / "db", encoded=True)
    # Encoded records are decoded to their own channels ("Decoding Datum").
    with capture_log() as log:
        assert main(["compute_image_mean", str(tmp_path / "db"),
                     str(tmp_path / "mean.binaryproto")]) == 0
    assert "Decoding Datum" in log.messages
    layer = make_layer(f"""name: "d" type: "Data" top: "data" top: "label"
        transform_param {{ mean_file: "{tmp_path}/mean.binaryproto" scale: 2 }}
        data_param {{ source: "{tmp_path}/db" batch_size: 4 backend: LMDB }}""")
    (data, _), = run(layer)
    layer.close()
    planar = [bgr_planar(p) for p in pictures]
    mean = caffe_mean(planar)
    expect = (np.stack(planar).astype(np.float32) - mean) * np.float32(2)
    np.testing.assert_array_equal(data, expect)
    assert np.abs(data.sum(axis=0)).max() < 1e-3  # the images minus their mean sum to zero


def test_records_of_different_sizes(tmp_path):
    datum_db(tmp_path / "db", [np.zeros((1, 2, 2), np.uint8), np.zeros((1, 3, 2), np.uint8)])
    with pytest.raises(DataError, match=r"record '00000001': image is 1x3x2 \(CxHxW\), the "
                                        r"first record 1x2x2"):
        compute_image_mean(tmp_path / "db")


def test_cli_errors(tmp_path, capsys):
    assert main(["compute-image-mean", str(tmp_path / "nowhere")]) == 2
    assert "nowhere' does not exist" in capsys.readouterr().err
    writer = LMDBWriter(str(tmp_path / "db"))
    writer.put(b"0", b"\x08\x01garbage")
    writer.close()
    assert main(["compute-image-mean", str(tmp_path / "db")]) == 1
    assert "record '0': not a valid Datum record" in capsys.readouterr().err
