"""HDF5Output writes its bottoms as Caffe does, and HDF5Data reads them back; HDF5Data's
shuffle follows its seed and its state; wrong HDF5 shapes are clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.errors import PyforgeError
from tests.io.util import make_layer, run
from tests.logcapture import capture_log


def output_layer(path):
    return make_layer(f"""name: "out" type: "HDF5Output" bottom: "data" bottom: "label"
        hdf5_output_param {{ file_name: "{path}" }}""")


def blob(array):
    b = Blob(np.shape(array))
    b.data[...] = array
    return b


def test_writes_data_and_label_in_caffes_4d_shapes(tmp_path):
    path = tmp_path / "out.h5"
    layer = output_layer(path)
    data = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    label = np.array([1, 0, 2], dtype=np.float32)
    bottoms = [blob(data), blob(label)]
    layer.setup(bottoms, [])
    assert path.exists()  # created at setup, as Caffe does
    with capture_log() as log:
        layer.forward(bottoms, [])
    assert "Successfully saved 3 rows" in log.messages
    with h5py.File(path, "r") as f:  # readable while the layer still holds the file
        assert f["data"].dtype == np.float32 and f["data"].shape == (3, 4, 1, 1)
        assert f["label"].shape == (3, 1, 1, 1)
        np.testing.assert_array_equal(f["data"][...].reshape(3, 4), data)
    # Caffe fails at a second forward; pyforge appends the rows.
    bottoms[0].data[...] = -data
    layer.forward(bottoms, [])
    layer.close()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data"][...].reshape(6, 4), np.concatenate([data, -data]))
        np.testing.assert_array_equal(f["label"][...].ravel(), np.concatenate([label, label]))


def test_round_trip_through_hdf5data(tmp_path):
    path = tmp_path / "out.h5"
    layer = output_layer(path)
    data = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
    bottoms = [blob(data), blob(np.arange(4, dtype=np.float32))]
    layer.setup(bottoms, [])
    layer.forward(bottoms, [])
    layer.close()
    (tmp_path / "list.txt").write_text(f"{path}\n")
    reader = make_layer(f"""name: "h" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{tmp_path}/list.txt" batch_size: 4 }}""")
    (back, label), = run(reader)
    np.testing.assert_array_equal(back, data)
    assert label.ravel().tolist() == [0, 1, 2, 3]


def test_mismatched_rows_and_bad_file_name(tmp_path):
    layer = output_layer(tmp_path / "out.h5")
    bottoms = [blob(np.zeros((3, 2))), blob(np.zeros(2))]
    layer.setup(bottoms, [])
    with pytest.raises(PyforgeError, match="same number of rows"):
        layer.forward(bottoms, [])
    layer.close()
    with pytest.raises(PyforgeError, match=r"cannot create the HDF5 file '.*no/such/dir/x\.h5'"):
        output_layer(tmp_path / "no" / "such" / "dir" / "x.h5").setup(bottoms, [])
    with pytest.raises(PyforgeError, match="file_name is not set"):
        make_layer('name: "o" type: "HDF5Output" bottom: "a" bottom: "b"').setup(bottoms, [])


# --- HDF5Data ---------------------------------------------------------------------------------
def write_h5(path, data, label):
    with h5py.File(path, "w") as f:
        f["data"] = data
        f["label"] = label


def hdf5_layer(tmp_path, files, batch, shuffle=True, seed=1701):
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(f) for f in files) + "\n")
    return make_layer(f"""name: "h" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{listing}" batch_size: {batch}
                           shuffle: {"true" if shuffle else "false"} }}""", seed=seed)


@pytest.fixture
def two_files(tmp_path):
    write_h5(tmp_path / "a.h5", np.arange(5, dtype=np.float32)[:, None], np.arange(5))
    write_h5(tmp_path / "b.h5", np.arange(5, 8, dtype=np.float32)[:, None], np.arange(5, 8))
    return [tmp_path / "a.h5", tmp_path / "b.h5"]


def test_hdf5_shuffle_is_reproducible_from_the_seed(tmp_path, two_files):
    def stream(seed):
        layer = hdf5_layer(tmp_path, two_files, batch=3, seed=seed)
        return np.concatenate([d.ravel() for d, _ in run(layer, forwards=8)])

    one, again, other = stream(3), stream(3), stream(4)
    np.testing.assert_array_equal(one, again)
    assert not np.array_equal(one, other)
    # Each pass over the data (8 rows) is a permutation; files are never interleaved.
    for epoch in one[:24].reshape(3, 8):
        assert sorted(epoch) == list(range(8))


def test_hdf5_shuffle_state_resumes_exactly(tmp_path, two_files):
    layer = hdf5_layer(tmp_path, two_files, batch=3)
    straight = [d for d, _ in run(layer, forwards=7)]
    first = hdf5_layer(tmp_path, two_files, batch=3)
    run(first, forwards=3)
    state = first.get_state()
    resumed = hdf5_layer(tmp_path, two_files, batch=3, seed=12345)
    tops = [Blob(), Blob()]
    resumed.setup([], tops)
    resumed.set_state(state)
    for k in range(3, 7):
        resumed.forward([], tops)
        np.testing.assert_array_equal(tops[0].data, straight[k])


def test_hdf5_wrong_trailing_shape_names_file_and_dataset(tmp_path):
    write_h5(tmp_path / "a.h5", np.zeros((2, 3)), np.zeros(2))
    write_h5(tmp_path / "b.h5", np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(PyforgeError, match=r"b\.h5: dataset 'data' has rows of shape \(4,\), "
                                           r"other files \(3,\)"):
        run(hdf5_layer(tmp_path, [tmp_path / "a.h5", tmp_path / "b.h5"], batch=2))


def test_hdf5_non_numeric_dataset(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["data"] = np.array([b"x", b"y"])
        f["label"] = np.zeros(2)
    with pytest.raises(PyforgeError, match=r"a\.h5: dataset 'data' has dtype .* expected numeric"):
        run(hdf5_layer(tmp_path, [tmp_path / "a.h5"], batch=2))


def test_hdf5_missing_file_in_list(tmp_path):
    with pytest.raises(PyforgeError, match=r"cannot open HDF5 file '.*ghost\.h5'"):
        run(hdf5_layer(tmp_path, [tmp_path / "ghost.h5"], batch=2))
