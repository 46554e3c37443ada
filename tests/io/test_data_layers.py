"""Data, HDF5Data and DummyData layers, and Caffe's DataTransformer order of operations."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from pyforge.io.db_lmdb import LMDBWriter
from pyforge.layers import LAYERS, NetContext
from pyforge.log import get_logger
from pyforge.proto import caffe_pb2, parse_text_proto, write_binary_proto
from pyforge.rng import make_rng

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def make_layer(text: str, phase=TRAIN, seed=1701, source_file=None):
    param = parse_text_proto(text, caffe_pb2.LayerParameter(), "layer")
    param.phase = phase
    ctx = NetContext(phase=phase, rng=make_rng(seed), logger=get_logger(),
                     source_file=source_file)
    return LAYERS.get(param.type)(param, ctx)


def run(layer, n_tops=2, forwards=1):
    tops = [Blob() for _ in range(n_tops)]
    layer.setup([], tops)
    out = []
    for _ in range(forwards):
        layer.reshape([], tops)
        layer.forward([], tops)
        out.append([t.data.copy() for t in tops])
    return out


@pytest.fixture
def color_lmdb(tmp_path):
    """10 records of 3x4x5 uint8 images with labels 0..9, keys %08d."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 3, 4, 5), dtype=np.uint8)
    path = tmp_path / "db"
    writer = LMDBWriter(str(path))
    for i, image in enumerate(images):
        datum = caffe_pb2.Datum(channels=3, height=4, width=5, data=image.tobytes(), label=i)
        writer.put(b"%08d" % i, datum.SerializeToString())
    writer.close()
    return str(path), images


def data_layer(source, batch=4, transform="", phase=TRAIN, seed=1701):
    return make_layer(f"""name: "d" type: "Data" top: "data" top: "label"
        transform_param {{ {transform} }}
        data_param {{ source: "{source}" batch_size: {batch} backend: LMDB }}""", phase, seed)


def test_batches_follow_key_order_and_wrap_around(color_lmdb, caplog):
    source, images = color_lmdb
    layer = data_layer(source, batch=4, transform="scale: 0.5")
    with caplog.at_level(logging.INFO, logger="pyforge"):
        batches = run(layer, forwards=3)
    order = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    for k, (data, label) in enumerate(batches):
        idx = order[4 * k : 4 * k + 4]
        np.testing.assert_array_equal(data, images[idx].astype(np.float32) * 0.5)
        np.testing.assert_array_equal(label, np.array(idx, dtype=np.float32))
    assert "Restarting data prefetching from start." in caplog.text
    assert layer.cursor == 3
    layer.close()


def test_mean_value_is_subtracted_before_scaling(color_lmdb):
    source, images = color_lmdb
    layer = data_layer(source, transform="scale: 0.1 mean_value: 10 mean_value: 20 "
                                         "mean_value: 30")
    (data, _), = run(layer)
    mean = np.array([10, 20, 30], dtype=np.float32)[:, None, None]
    np.testing.assert_allclose(data, (images[:4].astype(np.float32) - mean) * np.float32(0.1),
                               rtol=1e-6)
    layer.close()


def test_single_mean_value_applies_to_every_channel(color_lmdb):
    source, images = color_lmdb
    layer = data_layer(source, transform="mean_value: 100")
    (data, _), = run(layer)
    np.testing.assert_array_equal(data, images[:4].astype(np.float32) - 100)
    layer.close()


def test_wrong_number_of_mean_values_is_an_error(color_lmdb):
    source, _ = color_lmdb
    layer = data_layer(source, transform="mean_value: 1 mean_value: 2")
    with pytest.raises(PyforgeError, match="1 mean_value or one per channel"):
        run(layer)
    layer.close()


def test_mean_file_is_the_uncropped_mean_image(color_lmdb, tmp_path):
    source, images = color_lmdb
    mean = np.arange(60, dtype=np.float32).reshape(1, 3, 4, 5)
    proto = caffe_pb2.BlobProto(num=1, channels=3, height=4, width=5)
    proto.data.extend(mean.ravel())
    write_binary_proto(tmp_path / "mean.binaryproto", proto)
    layer = data_layer(source, phase=TEST,
                       transform=f'crop_size: 3 mean_file: "{tmp_path}/mean.binaryproto"')
    (data, _), = run(layer)
    # TEST crops the centre: offsets (4-3)//2 = 0 rows and (5-3)//2 = 1 column.
    expect = images[:4, :, 0:3, 1:4].astype(np.float32) - mean[0, :, 0:3, 1:4]
    np.testing.assert_array_equal(data, expect)
    layer.close()


def test_mean_file_and_mean_value_together_are_refused(color_lmdb, tmp_path):
    source, _ = color_lmdb
    with pytest.raises(PyforgeError, match="either mean_file or mean_value"):
        run(data_layer(source, transform='mean_file: "x" mean_value: 1'))


def test_train_crops_are_random_in_bounds_and_seeded(color_lmdb):
    source, images = color_lmdb

    def crops(seed):
        layer = data_layer(source, batch=10, transform="crop_size: 3", seed=seed)
        (data, _), = run(layer)
        layer.close()
        return data

    a, b, c = crops(1), crops(1), crops(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    offsets = set()
    for i in range(10):
        matches = [(h, w) for h in range(2) for w in range(3)
                   if np.array_equal(a[i], images[i, :, h:h + 3, w:w + 3])]
        assert matches, f"item {i} is not a 3x3 crop of its image"
        offsets.update(matches)
    assert len(offsets) > 1


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_mirror_flips_width_randomly_in_both_phases(color_lmdb, phase):
    """Caffe mirrors randomly in TEST too when mirror is set."""
    source, images = color_lmdb
    layer = data_layer(source, batch=10, transform="mirror: true", phase=phase, seed=7)
    (data, _), = run(layer)
    layer.close()
    flipped = [np.array_equal(data[i], images[i, :, :, ::-1]) for i in range(10)]
    plain = [np.array_equal(data[i], images[i]) for i in range(10)]
    assert all(f or p for f, p in zip(flipped, plain))
    assert any(flipped) and any(plain)


def test_missing_source_names_layer_and_path(tmp_path):
    with pytest.raises(PyforgeError, match=r"layer 'd' \(Data\).*nowhere.*does not exist"):
        data_layer(str(tmp_path / "nowhere"))


def test_bad_record_names_the_key(tmp_path):
    writer = LMDBWriter(str(tmp_path / "bad"))
    writer.put(b"00000000", caffe_pb2.Datum(channels=1, height=2, width=2, data=b"\0" * 4,
                                            label=1).SerializeToString())
    writer.put(b"00000001", caffe_pb2.Datum(channels=1, height=2, width=2, data=b"\0" * 3,
                                            label=1).SerializeToString())
    writer.close()
    layer = data_layer(str(tmp_path / "bad"), batch=2)
    with pytest.raises(PyforgeError, match="record '00000001'.*3 bytes, expected 1x2x2 = 4"):
        run(layer)
    layer.close()


def test_float_data_records(tmp_path):
    writer = LMDBWriter(str(tmp_path / "f"))
    values = np.linspace(-1, 1, 6, dtype=np.float32)
    datum = caffe_pb2.Datum(channels=1, height=2, width=3, label=4)
    datum.float_data.extend(values)
    writer.put(b"a", datum.SerializeToString())
    writer.close()
    layer = data_layer(str(tmp_path / "f"), batch=2, transform="scale: 2")
    (data, label), = run(layer)
    np.testing.assert_allclose(data, np.stack([values.reshape(1, 2, 3) * 2] * 2))
    assert list(label) == [4, 4]
    layer.close()


# --- HDF5Data ---------------------------------------------------------------------------------
def write_h5(path, data, label):
    with h5py.File(path, "w") as f:
        f["data"] = data
        f["label"] = label


def hdf5_layer(tmp_path, files, batch, shuffle=False, seed=1701):
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(f) for f in files) + "\n")
    return make_layer(f"""name: "h" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{listing}" batch_size: {batch}
                           shuffle: {"true" if shuffle else "false"} }}""", seed=seed)


def test_hdf5_batches_span_files_and_wrap(tmp_path):
    a = np.arange(3 * 2, dtype=np.float64).reshape(3, 2)
    b = 100 + np.arange(2 * 2, dtype=np.float64).reshape(2, 2)
    write_h5(tmp_path / "a.h5", a, np.array([0, 1, 2], dtype=np.int32))
    write_h5(tmp_path / "b.h5", b, np.array([3, 4], dtype=np.uint8))
    layer = hdf5_layer(tmp_path, [tmp_path / "a.h5", tmp_path / "b.h5"], batch=4)
    batches = run(layer, forwards=2)
    rows = np.concatenate([a, b, a, b])
    labels = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    for k, (data, label) in enumerate(batches):
        np.testing.assert_array_equal(data, rows[4 * k : 4 * k + 4].astype(np.float32))
        assert list(label) == labels[4 * k : 4 * k + 4]


def test_hdf5_shuffle_is_seeded_and_a_permutation(tmp_path):
    data = np.arange(8, dtype=np.float32).reshape(8, 1)
    write_h5(tmp_path / "a.h5", data, np.arange(8))

    def first_epoch(seed):
        layer = hdf5_layer(tmp_path, [tmp_path / "a.h5"], batch=8, shuffle=True, seed=seed)
        (batch, _), = run(layer)
        return batch.ravel()

    one, again, other = first_epoch(3), first_epoch(3), first_epoch(4)
    assert sorted(one) == list(range(8))
    assert np.array_equal(one, again) and not np.array_equal(one, other)


def test_hdf5_missing_dataset_names_file_and_dataset(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["data"] = np.zeros((2, 3))
    with pytest.raises(PyforgeError, match=r"a\.h5: no dataset 'label'"):
        run(hdf5_layer(tmp_path, [tmp_path / "a.h5"], batch=2))


def test_hdf5_row_count_mismatch_is_an_error(tmp_path):
    write_h5(tmp_path / "a.h5", np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(PyforgeError, match="different numbers of rows"):
        run(hdf5_layer(tmp_path, [tmp_path / "a.h5"], batch=2))


def test_hdf5_refuses_transform_param(tmp_path):
    write_h5(tmp_path / "a.h5", np.zeros((3, 2)), np.zeros(3))
    layer = make_layer(f"""name: "h" type: "HDF5Data" top: "data" top: "label"
        transform_param {{ scale: 2 }}
        hdf5_data_param {{ source: "{tmp_path}/list.txt" batch_size: 2 }}""")
    with pytest.raises(PyforgeError, match="transform"):
        run(layer)


# --- DummyData ----------------------------------------------------------------------------------
def test_dummy_data_constant_fills_once_gaussian_refills():
    layer = make_layer("""name: "x" type: "DummyData" top: "a" top: "b"
        dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 }
          data_filler { type: "constant" value: 3 } data_filler { type: "gaussian" } }""")
    (a1, b1), (a2, b2) = run(layer, forwards=2)
    assert a1.shape == (2, 3) and np.all(a1 == 3) and np.all(a2 == 3)
    assert b1.shape == (4,) and not np.array_equal(b1, b2)


def test_dummy_data_legacy_num_channels_height_width():
    layer = make_layer("""name: "x" type: "DummyData" top: "a"
        dummy_data_param { num: 2 channels: 3 height: 4 width: 5 }""")
    (a,), = run(layer, n_tops=1)
    assert a.shape == (2, 3, 4, 5) and not a.any()


# --- Data: rand_skip, exact resume, per-batch shapes -------------------------------------------
def test_rand_skip_offsets_the_records(color_lmdb, caplog):
    source, images = color_lmdb
    layer = make_layer(f"""name: "d" type: "Data" top: "data" top: "label"
        data_param {{ source: "{source}" batch_size: 4 backend: LMDB rand_skip: 10 }}""",
                       seed=5)
    with caplog.at_level(logging.INFO, logger="pyforge"):
        (data, label), = run(layer)
    layer.close()
    skip = layer.skip
    assert 0 <= skip < 10
    assert f"Skipping first {skip} data points." in caplog.text
    idx = [(skip + i) % 10 for i in range(4)]
    np.testing.assert_array_equal(data, images[idx].astype(np.float32))
    assert list(label) == idx
    assert layer.get_state()["skip"] == skip


def test_state_resumes_batches_and_draws_exactly(color_lmdb):
    source, _ = color_lmdb
    transform = "mirror: true crop_size: 3"
    straight = run(data_layer(source, batch=3, transform=transform, seed=4), forwards=6)
    first = data_layer(source, batch=3, transform=transform, seed=4)
    run(first, forwards=2)
    state = first.get_state()
    first.close()
    resumed = data_layer(source, batch=3, transform=transform, seed=999)
    tops = [Blob(), Blob()]
    resumed.setup([], tops)
    resumed.set_state(state)
    for k in range(2, 6):
        resumed.forward([], tops)
        np.testing.assert_array_equal(tops[0].data, straight[k][0])
        np.testing.assert_array_equal(tops[1].data, straight[k][1])
    resumed.close()


def test_each_batch_takes_the_shape_of_its_first_record(tmp_path):
    writer = LMDBWriter(str(tmp_path / "db"))
    for i, (h, w) in enumerate([(2, 3), (4, 1)]):
        datum = caffe_pb2.Datum(channels=1, height=h, width=w, data=bytes(range(h * w)), label=i)
        writer.put(b"%08d" % i, datum.SerializeToString())
    writer.close()
    layer = data_layer(str(tmp_path / "db"), batch=1)
    shapes = [data.shape for data, _ in run(layer, forwards=3)]
    layer.close()
    assert shapes == [(1, 1, 2, 3), (1, 1, 4, 1), (1, 1, 2, 3)]
    layer = data_layer(str(tmp_path / "db"), batch=2)
    with pytest.raises(PyforgeError, match=r"record '00000001': shape \(1, 4, 1\) differs from "
                                           r"\(1, 2, 3\) of the first record of its batch"):
        run(layer)
    layer.close()


def test_crop_size_takes_records_of_different_sizes_in_one_batch(tmp_path):
    """With crop_size each record is cropped on its own (Caffe's DataTransformer), so encoded
    images of different sizes share a batch; the top is crop_size x crop_size."""
    writer = LMDBWriter(str(tmp_path / "db"))
    sizes = [(4, 5), (6, 3), (3, 3)]
    planes = [np.arange(h * w, dtype=np.uint8).reshape(1, h, w) + 10 * i
              for i, (h, w) in enumerate(sizes)]
    for i, plane in enumerate(planes):
        _, h, w = plane.shape
        datum = caffe_pb2.Datum(channels=1, height=h, width=w, data=plane.tobytes(), label=i)
        writer.put(b"%08d" % i, datum.SerializeToString())
    writer.close()
    layer = data_layer(str(tmp_path / "db"), batch=3, transform="crop_size: 3", phase=TEST)
    (data, labels), = run(layer)
    layer.close()
    assert data.shape == (3, 1, 3, 3)
    for got, plane in zip(data, planes):
        _, h, w = plane.shape
        top, left = (h - 3) // 2, (w - 3) // 2  # TEST: the centre crop of each record
        np.testing.assert_array_equal(got, plane[:, top : top + 3, left : left + 3])
    assert labels.tolist() == [0, 1, 2]
    layer = data_layer(str(tmp_path / "db"), batch=3, transform="crop_size: 3 mirror: true")
    batches = run(layer, forwards=2)
    layer.close()
    assert [b.shape for b, _ in batches] == [(3, 1, 3, 3)] * 2


def test_force_color_and_force_gray_together_is_an_error(color_lmdb):
    source, _ = color_lmdb
    layer = data_layer(source, transform="force_color: true force_gray: true")
    with pytest.raises(PyforgeError, match="both force_color and force_gray"):
        run(layer)
    layer.close()


def test_encoded_record_that_does_not_decode(tmp_path):
    writer = LMDBWriter(str(tmp_path / "db"))
    writer.put(b"k1", caffe_pb2.Datum(data=b"not an image", encoded=True).SerializeToString())
    writer.close()
    layer = data_layer(str(tmp_path / "db"), batch=1)
    with pytest.raises(PyforgeError, match=r"record 'k1': cannot decode the image \(12 bytes\)"):
        run(layer)
    layer.close()


def test_encoded_rgba_png_keeps_its_alpha_natively(tmp_path):
    import cv2

    rgba = np.random.default_rng(1).integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]]))
    writer = LMDBWriter(str(tmp_path / "db"))
    writer.put(b"k", caffe_pb2.Datum(data=buffer.tobytes(), encoded=True).SerializeToString())
    writer.close()
    # OpenCV's IMREAD_UNCHANGED (Caffe's native decode) keeps 4 channels: B, G, R, A.
    (data, _), = run(data_layer(str(tmp_path / "db"), batch=1))
    np.testing.assert_array_equal(data[0], rgba[:, :, [2, 1, 0, 3]].transpose(2, 0, 1))
    (data, _), = run(data_layer(str(tmp_path / "db"), batch=1, transform="force_color: true"))
    np.testing.assert_array_equal(data[0], rgba[:, :, [2, 1, 0]].transpose(2, 0, 1))
