"""extract_features: Caffe's positional arguments, the TEST net's blob values in new databases,
one Datum (float_data, legacy channels/height/width) per item under a 10-digit running index;
GPU accepted with a warning; errors in one line."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pyforge.cli import main
from pyforge.io.db import LEVELDB, LMDB, open_reader
from pyforge.io.snapshot import load_weights
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, read_net_param, write_binary_proto
from pyforge.rng import make_rng
from tests.logcapture import capture_log

ROWS, BATCH = 6, 2

NET = """
name: "features"
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{list}" batch_size: {batch} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param {{ num_output: 2 kernel_size: 2
                             weight_filler {{ type: "gaussian" std: 0.3 }}
                             bias_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "bn" type: "BatchNorm" bottom: "conv1" top: "bn" }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "bn" top: "ip1"
        inner_product_param {{ num_output: 4 weight_filler {{ type: "gaussian" std: 0.3 }} }} }}
# In TEST, Dropout passes values through and BatchNorm uses its stored statistics: TRAIN
# would scale by 2 and normalise with the batch.
layer {{ name: "drop" type: "Dropout" bottom: "ip1" top: "ip1"
        dropout_param {{ dropout_ratio: 0.5 }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip1" bottom: "label" top: "loss"
        include {{ phase: TRAIN }} }}
"""


@pytest.fixture
def trained(tmp_path):
    """A net over 6 rows of 2x3x3 data and its weights (random, with BatchNorm statistics)."""
    rng = np.random.default_rng(4)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"] = rng.standard_normal((ROWS, 2, 3, 3)).astype(np.float32)
        f["label"] = rng.standard_normal((ROWS, 4)).astype(np.float32)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'd.h5'}\n")
    model = tmp_path / "net.prototxt"
    model.write_text(NET.format(list=tmp_path / "list.txt", batch=BATCH))
    param = read_net_param(model)
    param.state.phase = caffe_pb2.TEST
    net = Net(param, rng=make_rng(7), source_file=str(model))
    mean, variance, factor = net.params["bn"]
    mean.data[...] = [0.5, -1.0]
    variance.data[...] = [4.0, 0.25]
    factor.data[...] = 2.0
    write_binary_proto(tmp_path / "w.caffemodel", net.to_proto())
    net.close()
    return tmp_path, str(model), str(tmp_path / "w.caffemodel")


def expected_values(model, weights, blob, batches):
    param = read_net_param(model)
    param.state.phase = caffe_pb2.TEST
    net = Net(param, rng=make_rng(1), source_file=model)
    load_weights(net, weights)
    out = []
    for _ in range(batches):
        net.forward_loss()
        out.extend(net.blobs[blob].data.reshape(BATCH, -1).copy())
    net.close()
    return out


def read_db(path, backend=LMDB):
    reader = open_reader(str(path), backend)
    try:
        return [(reader.key(i), reader.value(i)) for i in range(len(reader))]
    finally:
        reader.close()


@pytest.mark.parametrize("spelling", ["extract_features", "extract-features"])
def test_two_blobs_into_two_lmdbs(trained, spelling):
    tmp_path, model, weights = trained
    db1, db2 = tmp_path / "conv_db", tmp_path / "ip_db"
    batches = 4  # 8 items: the 6 rows, then the first batch again
    with capture_log() as log:
        assert main([spelling, weights, model, "conv1,ip1", f"{db1},{db2}", str(batches),
                     "lmdb"]) == 0
    for path, blob, legacy in ((db1, "conv1", (2, 2, 2)), (db2, "ip1", (4, 1, 1))):
        records = read_db(path)
        assert [k for k, _ in records] == [b"%010d" % i for i in range(batches * BATCH)]
        expected = expected_values(model, weights, blob, batches)
        for (_, value), want in zip(records, expected):
            datum = caffe_pb2.Datum.FromString(value)
            assert (datum.channels, datum.height, datum.width) == legacy
            assert not datum.data and not datum.encoded and not datum.HasField("label")
            np.testing.assert_array_equal(np.asarray(datum.float_data, np.float32), want)
    # The wire form Caffe writes: channels, height, width, then float_data unpacked (field 6,
    # fixed32: tag 0x35 before each value).
    first = read_db(db2)[0][1]
    assert first[:7] == b"\x08\x04\x10\x01\x18\x01\x35"
    assert first.count(b"\x35") >= 4
    # TEST phase: the Dropout layer passed the values through (TRAIN would zero or double).
    ip = np.asarray(caffe_pb2.Datum.FromString(first).float_data)
    assert np.count_nonzero(ip) == 4
    for line in ("Using CPU", "Opening dataset " + str(db1), "Extracting Features",
                 "Extracted features of 8 query images for feature blob conv1",
                 "Extracted features of 8 query images for feature blob ip1",
                 "Successfully extracted the features!"):
        assert line in log.messages, line
    assert ("ERROR", "Extracting Features") in log.levels()


def test_leveldb_and_gpu_accepted_with_a_warning(trained):
    tmp_path, model, weights = trained
    with capture_log() as log:
        assert main(["extract_features", weights, model, "ip1", str(tmp_path / "f"), "3",
                     "leveldb", "GPU", "1"]) == 0
    assert any(level == "WARNING" and "GPU (device 1) requested; pyforge computes on the CPU"
               in message for level, message in log.levels())
    records = read_db(tmp_path / "f", LEVELDB)
    expected = expected_values(model, weights, "ip1", 3)
    assert len(records) == 6
    for (key, value), want in zip(records, expected):
        assert len(key) == 10
        np.testing.assert_array_equal(caffe_pb2.Datum.FromString(value).float_data, want)


def test_thousands_of_records_commit_with_caffes_lines(trained):
    tmp_path, model, weights = trained
    with capture_log() as log:
        assert main(["extract_features", weights, model, "ip1", str(tmp_path / "f"), "1001",
                     "lmdb", "CPU"]) == 0
    lines = [m for m in log.messages if m.startswith("Extracted features")]
    assert lines == [f"Extracted features of {n} query images for feature blob ip1"
                     for n in (1000, 2000, 2002)]
    keys = [k for k, _ in read_db(tmp_path / "f")]
    assert len(keys) == 2002 and keys[-1] == b"0000002001"


@pytest.mark.parametrize("args, message", [
    (["nope,ip1", "a,b"], "Unknown feature blob name 'nope' in the network"),
    (["conv1,ip1", "a"], "the number of blob names (2: conv1,ip1) and of dataset names (1: a)"),
    (["ip1", "a", "2", "lmdb", "TPU"], "expected CPU or GPU after the database type, found 'TPU'"),
    (["ip1", "a", "2", "lmdb", "GPU", "-1"], "device_id must be >= 0, found -1"),
    (["ip1,conv1", "a,a"], "dataset 'a' is named twice"),
])
def test_errors_are_one_line(trained, capsys, monkeypatch, args, message):
    tmp_path, model, weights = trained
    monkeypatch.chdir(tmp_path)
    full = ["extract_features", weights, model, *args]
    if len(args) == 2:
        full += ["2", "lmdb"]
    assert main(full) == 1
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("pyforge: error:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "a").exists()  # no database left behind


def test_existing_database_and_usage_errors(trained, capsys):
    tmp_path, model, weights = trained
    (tmp_path / "taken").mkdir()
    assert main(["extract_features", weights, model, "ip1", str(tmp_path / "taken"), "1",
                 "lmdb"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["extract_features", weights, model, "ip1", str(tmp_path / "x"), "many",
                 "lmdb"]) == 2
    assert main(["extract_features", weights, model, "ip1", str(tmp_path / "x"), "1",
                 "rocksdb"]) == 2
    assert main(["extract_features", weights, model]) == 2
    assert not (tmp_path / "x").exists()
