"""Fuzzing the HDF5 readers: the HDF5Data layer, .caffemodel.h5 and .solverstate.h5.

Files are generated valid-as-HDF5 but wrong for Caffe (datasets missing or renamed, strings,
compound and variable-length types, 0-d and empty datasets, groups and dangling links where
datasets belong, rows that disagree), and also as corrupt bytes (empty, truncated, bit flips
in a valid file).
"""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyforge.io.snapshot import load_weights, read_solver_state
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto, read_net_param

from ._harness import (
    FUZZ_DATA,
    byte_mutation,
    check_rule,
    fuzz_settings,
    materialize,
    quiet_logger,
)

COMPOUND = np.dtype([("a", "<f4"), ("b", "<i4")])

#: What goes where a dataset is expected.
KINDS = ["float32", "float32", "float32", "float64", "int32", "uint8", "bool", "float16",
         "int64_max", "complex", "string", "string_array", "compound", "vlen", "scalar",
         "empty", "null", "group", "dangling_link", "nan"]


@st.composite
def node(draw, rows: int | None = None):
    """(kind, shape) of one HDF5 object; shape[0] is ``rows`` when given."""
    kind = draw(st.sampled_from(KINDS))
    trailing = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    n = rows if rows is not None else draw(st.integers(0, 5))
    return kind, (n, *trailing)


def write_node(parent: h5py.Group, name: str, kind: str, shape: tuple[int, ...]) -> None:
    if kind == "group":
        parent.create_group(name)
    elif kind == "dangling_link":
        parent[name] = h5py.SoftLink("/no/such/object")
    elif kind == "null":
        parent.create_dataset(name, shape=None, dtype="f4")
    elif kind == "scalar":
        parent.create_dataset(name, data=np.float32(1.5))
    elif kind == "empty":
        parent.create_dataset(name, shape=(0,), dtype="f4")
    elif kind == "string":
        parent.create_dataset(name, data=np.bytes_(b"not numbers"))
    elif kind == "string_array":
        parent.create_dataset(name, data=np.full(shape[:1], b"ab"))
    elif kind == "compound":
        parent.create_dataset(name, data=np.zeros(shape[:1], COMPOUND))
    elif kind == "vlen":
        data = np.empty(shape[:1], dtype=object)
        for i in range(shape[0]):
            data[i] = np.arange(i + 1, dtype=np.float32)
        parent.create_dataset(name, data=data, dtype=h5py.vlen_dtype(np.float32))
    elif kind == "int64_max":
        parent.create_dataset(name, data=np.full(shape, 2**63 - 1, np.int64))
    elif kind == "nan":
        parent.create_dataset(name, data=np.full(shape, np.nan, np.float32))
    elif kind == "complex":
        parent.create_dataset(name, data=np.zeros(shape, np.complex64))
    else:
        parent.create_dataset(name, data=np.ones(shape, dtype=kind))


def h5_bytes(fill) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
    return buffer.getvalue()


# --- HDF5Data ----------------------------------------------------------------------------------
HDF5_NET = """
name: "h5"
layer {
  name: "h5" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "list.txt" batch_size: 3 shuffle: %s }
}
layer { name: "loss" type: "EuclideanLoss" bottom: "data" bottom: "label" top: "loss" }
"""


@st.composite
def hdf5_data_files(draw):
    """1-2 files; each holds 'data' and 'label' (or other names), of matching rows or not."""
    files = []
    for _ in range(draw(st.integers(1, 2))):
        rows = draw(st.integers(0, 5))
        entries = {}
        for name in draw(st.lists(st.sampled_from(["data", "label", "Data", "extra"]),
                                  min_size=1, max_size=3, unique=True)):
            same_rows = draw(st.booleans())
            entries[name] = draw(node(rows if same_rows else None))
        files.append(entries)
    return files


def _write_files(folder, specs) -> list[bytes]:
    out = []
    for i, entries in enumerate(specs):
        def fill(f, entries=entries):
            for name, (kind, shape) in entries.items():
                write_node(f, name, kind, shape)
        data = h5_bytes(fill)
        (folder / f"f{i}.h5").write_bytes(data)
        out.append(data)
    (folder / "list.txt").write_text("\n".join(f"f{i}.h5" for i in range(len(specs))))
    return out


def run_hdf5_net(folder, shuffle: bool) -> None:
    net_path = folder / "net.prototxt"
    param = parse_text_proto(HDF5_NET % ("true" if shuffle else "false"),
                             caffe_pb2.NetParameter(), str(net_path))
    net = Net(param, logger=quiet_logger(), source_file=str(net_path))
    try:
        for _ in range(3):  # enough batches to cross files and wrap around
            net.forward_loss()
    finally:
        net.close()


@fuzz_settings(120)
@given(hdf5_data_files(), st.booleans())
def test_hdf5_data_layer(tmp_path, monkeypatch, specs, shuffle):
    monkeypatch.chdir(tmp_path)
    _write_files(tmp_path, specs)
    check_rule("HDF5Data files -> Net", lambda: run_hdf5_net(tmp_path, shuffle),
               names=("layer '",), data=specs)


VALID_H5 = h5_bytes(lambda f: (
    f.create_dataset("data", data=np.arange(24, dtype=np.float32).reshape(4, 2, 3)),
    f.create_dataset("label", data=np.arange(24, dtype=np.float32).reshape(4, 2, 3)),
))


@fuzz_settings(60)
@given(st.one_of(byte_mutation(VALID_H5), st.binary(max_size=64),
                 st.sampled_from([b"", b"\x89HDF\r\n\x1a\n", VALID_H5[:512]])),
       st.sampled_from(["f0.h5", "", "f0.h5 missing.h5", ".", "f0.h5\x00x"]))
def test_hdf5_data_corrupt_files(tmp_path, monkeypatch, data, listing):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f0.h5").write_bytes(materialize(data))
    (tmp_path / "list.txt").write_text(listing)
    check_rule("HDF5Data corrupt bytes -> Net", lambda: run_hdf5_net(tmp_path, False),
               names=("layer '",), data=(data, listing))


@pytest.mark.parametrize("listing", [b"\xff\xfe\x00f0.h5", b"f0.h5\n\xc3("])
def test_hdf5_list_file_not_utf8(tmp_path, monkeypatch, listing):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f0.h5").write_bytes(VALID_H5)
    (tmp_path / "list.txt").write_bytes(listing)
    check_rule("HDF5Data list bytes -> Net", lambda: run_hdf5_net(tmp_path, False),
               names=("layer '",), data=listing)


# --- .caffemodel.h5 ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet():
    path = FUZZ_DATA / "lenet_dummy.prototxt"
    param = read_net_param(path)
    param.state.phase = caffe_pb2.TEST
    net = Net(param, logger=quiet_logger(), source_file=str(path))
    yield net
    net.close()


def lenet_h5(lenet, edits) -> bytes:
    """LeNet's weights as Caffe writes .caffemodel.h5, with ``edits`` applied."""
    def fill(f):
        data = f.create_group("data")
        for name, blobs in lenet.params.items():
            group = data.create_group(name)
            for i, blob in enumerate(blobs):
                group.create_dataset(str(i), data=blob.data)
        for where, key, kind, shape in edits:
            if where == "root":
                parent = f
            elif not isinstance(f.get("data"), h5py.Group):
                continue
            else:
                parent = f["data"] if where == "data" else f["data"].get(where)
            if not isinstance(parent, h5py.Group):
                continue
            if key in parent:
                del parent[key]
            if kind != "delete":
                write_node(parent, key, kind, shape)
    return h5_bytes(fill)


@st.composite
def weights_h5_edits(draw):
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["root", "data", "conv1", "ip2", "ip1"]))
        key = draw(st.sampled_from({"root": ["data", "diff"], "data": ["ip2", "conv1", "x"]}
                                   .get(where, ["0", "1", "2", "x", "01", "\u00b2"])))
        kind, shape = draw(node())
        edits.append((where, key, draw(st.sampled_from([kind, "delete"])), shape))
    return edits


@fuzz_settings(120)
@given(weights_h5_edits())
def test_caffemodel_h5(lenet, tmp_path, edits):
    path = tmp_path / "fuzz.caffemodel.h5"
    path.write_bytes(lenet_h5(lenet, edits))
    check_rule("caffemodel.h5 -> load_weights", lambda: load_weights(lenet, str(path)),
               names=(str(path),), data=edits)


@fuzz_settings(40)
@given(st.data())
def test_caffemodel_h5_corrupt(lenet, tmp_path, data):
    valid = lenet_h5(lenet, [])
    mutated = data.draw(st.one_of(byte_mutation(valid), st.just(valid[:4096])))
    path = tmp_path / "fuzz.caffemodel.h5"
    path.write_bytes(materialize(mutated))
    check_rule("caffemodel.h5 bytes -> load_weights", lambda: load_weights(lenet, str(path)),
               names=(str(path),), data=mutated)


# --- .solverstate.h5 -------------------------------------------------------------------------
@st.composite
def state_h5(draw):
    """A .solverstate.h5 whose iter, current_step, learned_net, history and pyforge_state are
    each absent, right, or of another kind."""
    spec = {}
    for name in ("iter", "current_step", "learned_net", "pyforge_state"):
        choice = draw(st.sampled_from(["right", "right", "absent", "other"]))
        if choice == "other":
            spec[name] = draw(node())
        elif choice == "right":
            spec[name] = {"iter": ("int32", (1,)), "current_step": ("int32", (1,)),
                          "learned_net": ("path", ()), "pyforge_state": ("json", ())}[name]
    history = draw(st.sampled_from(["right", "absent", "dataset", "edited"]))
    spec["history"] = (history, draw(st.lists(node(), max_size=3)),
                       draw(st.lists(st.sampled_from(["0", "1", "2", "5", "x", "-1"]),
                                     max_size=3)))
    spec["json"] = draw(st.sampled_from([b"{}", b"[]", b"1", b"null", b"{\"format\": 1}",
                                         b"\xff\xfe", b"{", b"\"x\"", b"{\"train_net\": 3}"]))
    return spec


def write_state_h5(spec) -> bytes:
    def fill(f):
        for name in ("iter", "current_step", "learned_net", "pyforge_state"):
            if name not in spec:
                continue
            kind, shape = spec[name]
            if kind == "path":
                f.create_dataset(name, data=np.bytes_(b"nonexistent.caffemodel.h5"))
            elif kind == "json":
                f.create_dataset(name, data=np.bytes_(spec["json"]))
            else:
                write_node(f, name, kind, shape)
        history, nodes, keys = spec["history"]
        if history == "dataset":
            f.create_dataset("history", data=np.zeros(3, np.float32))
        elif history != "absent":
            group = f.create_group("history")
            if history == "right":
                group.create_dataset("0", data=np.zeros((2, 3), np.float32))
            for key, (kind, shape) in zip(keys, nodes):
                if key not in group:
                    write_node(group, key, kind, shape)
    return h5_bytes(fill)


@fuzz_settings(150)
@given(state_h5())
def test_solverstate_h5(tmp_path, spec):
    path = tmp_path / "fuzz.solverstate.h5"
    path.write_bytes(write_state_h5(spec))
    check_rule("solverstate.h5 -> read_solver_state", lambda: read_solver_state(str(path)),
               names=(str(path),), data=spec)


VALID_STATE_H5 = write_state_h5({"iter": ("int32", (1,)), "current_step": ("int32", (1,)),
                                 "history": ("right", [], []), "json": b"{}"})


@fuzz_settings(40)
@given(st.one_of(byte_mutation(VALID_STATE_H5), st.just(VALID_STATE_H5[:1024]), st.just(b"")))
def test_solverstate_h5_corrupt(tmp_path, data):
    path = tmp_path / "fuzz.solverstate.h5"
    path.write_bytes(materialize(data))
    check_rule("solverstate.h5 bytes -> read_solver_state", lambda: read_solver_state(str(path)),
               names=(str(path),), data=data)
