"""Fuzzing the binary readers: .caffemodel, .solverstate, mean .binaryproto and Datum records.

Two kinds of inputs: byte-level mutations of real files (truncation, bit flips, byte
overwrites, insertions, deletions, huge varints, spliced regions) and structure-level ones,
which keep the protobuf valid but give its fields values a reader must check (a blob whose
value count disagrees with its shape, double_data, legacy dimensions, negative and huge
dimensions, pyforge's JSON resume state with other types and values).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyforge.io.datum import datum_array, parse_datum
from pyforge.io.db import LEVELDB, open_reader
from pyforge.io.snapshot import load_weights, read_solver_state, read_weights
from pyforge.io.transform import DataTransformer
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, read_net_param, read_solver_param
from pyforge.solvers import create_solver

from ._harness import (
    FUZZ_DATA,
    REFERENCE,
    byte_mutation,
    check_rule,
    field_bytes,
    field_float,
    field_varint,
    fuzz_settings,
    materialize,
    quiet_logger,
)

CAFFEMODEL = (REFERENCE / "init" / "snap_iter_0.caffemodel").read_bytes()
CAFFE_STATE_DIR = REFERENCE / "runs" / "sgd_inv"
SOLVERSTATE = (CAFFE_STATE_DIR / "snap_iter_30.solverstate").read_bytes()
LENET = FUZZ_DATA / "lenet_dummy.prototxt"
SOLVER_INLINE = FUZZ_DATA / "solver_inline.prototxt"

# Integers that make shapes and counts interesting: zero, negative, past int32, past int64.
EXTREME_INTS = [0, 1, 2, 3, 10, -1, -10, 2**31 - 1, 2**31, 2**32 + 1, 2**62, 2**63 - 1, -(2**63)]


def lenet_net() -> Net:
    param = read_net_param(LENET)
    param.state.phase = caffe_pb2.TEST
    return Net(param, logger=quiet_logger(), source_file=str(LENET))


@pytest.fixture(scope="module")
def lenet():
    net = lenet_net()
    yield net
    net.close()


# --- .caffemodel -----------------------------------------------------------------------------
@fuzz_settings(150)
@given(byte_mutation(CAFFEMODEL))
def test_caffemodel_bytes(lenet, tmp_path, mutation):
    path = tmp_path / "fuzz.caffemodel"
    path.write_bytes(materialize(mutation))
    check_rule("caffemodel bytes -> read_weights", lambda: read_weights(str(path)),
               names=(str(path),), data=mutation)
    check_rule("caffemodel bytes -> load_weights", lambda: load_weights(lenet, str(path)),
               names=(str(path),), data=mutation)


BLOB_EDITS = ["drop_value", "add_value", "clear_data", "to_double", "to_double_extra",
              "add_diff", "diff_short", "set_dim", "add_dim", "drop_dim", "legacy", "no_shape",
              "remove_blob", "add_blob", "rename", "duplicate", "clear_layers", "to_v1",
              "nan_values"]


LAYERS_WITH_BLOBS = ["conv1", "conv2", "ip1", "ip2"]


@st.composite
def caffemodel_edits(draw) -> list[tuple]:
    """1-3 structural edits of LeNet's real weights, as (kind, layer, blob, value, choice);
    :func:`edited_caffemodel` applies them (Hypothesis keeps these, not the 1.7 MB result)."""
    return [(draw(st.sampled_from(BLOB_EDITS)), draw(st.sampled_from(LAYERS_WITH_BLOBS)),
             draw(st.integers(0, 1)), draw(st.sampled_from(EXTREME_INTS)),
             draw(st.integers(0, 5))) for _ in range(draw(st.integers(1, 3)))]


def edited_caffemodel(edits: list[tuple]) -> bytes:
    param = caffe_pb2.NetParameter()
    param.ParseFromString(CAFFEMODEL)
    for kind, name, blob_index, value, choice in edits:
        layer = next((lay for lay in param.layer if lay.name == name), None)
        if layer is None:
            continue
        blob = layer.blobs[min(blob_index, len(layer.blobs) - 1)] if len(layer.blobs) \
            else layer.blobs.add()
        if kind == "drop_value" and len(blob.data):
            blob.data.pop()
        elif kind == "add_value":
            blob.data.append(1.0)
        elif kind == "clear_data":
            blob.ClearField("data")
        elif kind in ("to_double", "to_double_extra"):
            blob.double_data.extend(list(blob.data) + ([2.0] if kind == "to_double_extra" else []))
            blob.ClearField("data")
        elif kind == "add_diff":
            blob.diff.extend(list(blob.data))
        elif kind == "diff_short":
            blob.diff.extend([0.5, 0.25])
        elif kind == "set_dim" and len(blob.shape.dim):
            blob.shape.dim[choice % len(blob.shape.dim)] = value
        elif kind == "add_dim":
            blob.shape.dim.append(abs(value) if value > -(2**63) else 1)
        elif kind == "drop_dim" and len(blob.shape.dim):
            del blob.shape.dim[-1]
        elif kind == "legacy":
            dims = list(blob.shape.dim)
            blob.ClearField("shape")
            legacy = ([1] * 4 + dims)[-4:] if len(dims) <= 4 else dims[:4]
            legacy[choice % 4] = max(min(value, 2**31 - 1), -(2**31))
            blob.num, blob.channels, blob.height, blob.width = legacy
        elif kind == "no_shape":
            blob.ClearField("shape")
        elif kind == "remove_blob" and len(layer.blobs):
            del layer.blobs[-1]
        elif kind == "add_blob":
            layer.blobs.add().CopyFrom(blob)
        elif kind == "rename":
            layer.name = ["ip1", "ip2", "conv1", "conv2", "", "x"][choice]
        elif kind == "duplicate":
            param.layer.add().CopyFrom(layer)
        elif kind == "clear_layers":
            param.ClearField("layer")
        elif kind == "to_v1":
            v1 = param.layers.add()
            v1.name = layer.name
            v1.type = caffe_pb2.V1LayerParameter.INNER_PRODUCT
            v1.blobs.extend(layer.blobs)
            if choice % 2:
                param.ClearField("layer")
        elif kind == "nan_values" and len(blob.data):
            blob.data[0] = float(["nan", "inf", "-inf"][choice % 3])
    return param.SerializeToString()


@fuzz_settings(120)
@given(caffemodel_edits())
def test_caffemodel_structure(lenet, tmp_path, edits):
    path = tmp_path / "fuzz.caffemodel"
    path.write_bytes(edited_caffemodel(edits))
    check_rule("caffemodel fields -> load_weights", lambda: load_weights(lenet, str(path)),
               names=(str(path),), data=edits)


# --- .solverstate ----------------------------------------------------------------------------
def sgd_solver(folder, net_path, extra: str = ""):
    text = (f'net: "{net_path}"\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: "inv"\n'
            f'gamma: 0.0001\npower: 0.75\nmax_iter: 60\nsnapshot_prefix: "{folder}/snap"\n'
            + extra)
    path = folder / "solver.prototxt"
    path.write_text(text)
    return create_solver(read_solver_param(path), solver_file=str(path), logger=quiet_logger())


@pytest.fixture(scope="module")
def caffe_state_target(tmp_path_factory):
    """An SGD solver on LeNet, the net Caffe's sgd_inv state was written for, and a folder
    holding that state's weights file, where the mutated states go."""
    folder = tmp_path_factory.mktemp("caffe_state")
    shutil.copy(CAFFE_STATE_DIR / "snap_iter_30.caffemodel", folder / "snap_iter_30.caffemodel")
    solver = sgd_solver(folder, LENET)
    yield folder, solver
    solver.close()


@fuzz_settings(150)
@given(byte_mutation(SOLVERSTATE))
def test_caffe_solverstate_bytes(caffe_state_target, mutation):
    folder, solver = caffe_state_target
    path = folder / "fuzz.solverstate"
    path.write_bytes(materialize(mutation))
    check_rule("solverstate bytes -> read_solver_state", lambda: read_solver_state(str(path)),
               names=(str(path),), data=mutation)
    check_rule("solverstate bytes -> Solver.restore", lambda: solver.restore(str(path)),
               names=(str(path),), data=mutation)


@pytest.fixture(scope="module")
def pyforge_state(tmp_path_factory):
    """A .solverstate written by pyforge (with its JSON resume state) and a solver to restore
    it into."""
    folder = tmp_path_factory.mktemp("pyforge_state")
    param = read_solver_param(SOLVER_INLINE)
    param.snapshot_prefix = str(folder / "snap")
    writer = create_solver(param, solver_file=str(SOLVER_INLINE), logger=quiet_logger())
    writer.solve()
    writer.close()
    state = (folder / "snap_iter_4.solverstate").read_bytes()
    target = create_solver(param, solver_file=str(SOLVER_INLINE), logger=quiet_logger())
    yield folder, state, target
    target.close()


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=False), st.text(max_size=5),
                        st.sampled_from(["PCG64", "MT19937", "", "nan", "SGD", "Adam"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


@st.composite
def json_edit(draw, extra: dict):
    """pyforge's resume JSON with 1-3 values replaced by other JSON values, or keys deleted."""
    extra = json.loads(json.dumps(extra))
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(extra))
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["replace", "replace", "delete", "number"]))
        if not path:
            extra = draw(JSON_VALUES)
            edits.append(("root", extra))
            continue
        parent = extra
        for key in path[:-1]:
            parent = parent[key]
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "number":
            parent[path[-1]] = draw(st.sampled_from([0, -1, 2**64, -(2**70), 1.5, 1e308]))
        else:
            parent[path[-1]] = draw(JSON_VALUES)
        edits.append((kind, path, parent.get(path[-1]) if isinstance(parent, dict) else None))
        if not isinstance(extra, (dict, list)):
            break
    return edits, json.dumps(extra).encode()


def _state_with_extra(state: bytes, extra: bytes) -> bytes:
    proto = caffe_pb2.SolverState()
    proto.ParseFromString(state)
    proto.pyforge_state = extra
    return proto.SerializeToString()


@fuzz_settings(60)
@given(st.data())
def test_pyforge_solverstate_json(pyforge_state, data):
    folder, state, solver = pyforge_state
    proto = caffe_pb2.SolverState()
    proto.ParseFromString(state)
    edits, extra = data.draw(json_edit(json.loads(proto.pyforge_state)))
    path = folder / "fuzz.solverstate"
    path.write_bytes(_state_with_extra(state, extra))
    check_rule("pyforge solverstate JSON -> Solver.restore", lambda: solver.restore(str(path)),
               names=(str(path), "layer '"), data=edits)


@fuzz_settings(60)
@given(st.data())
def test_pyforge_solverstate_bytes(pyforge_state, data):
    folder, state, solver = pyforge_state
    mutated = data.draw(byte_mutation(state))
    path = folder / "fuzz.solverstate"
    path.write_bytes(materialize(mutated))
    check_rule("pyforge solverstate bytes -> Solver.restore", lambda: solver.restore(str(path)),
               names=(str(path), "layer '"), data=mutated)


# --- mean .binaryproto -----------------------------------------------------------------------
def mean_blob() -> caffe_pb2.BlobProto:
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 3, 4, 4])
    blob.data.extend(np.arange(48, dtype=np.float32) / 48)
    return blob


MEAN = mean_blob().SerializeToString()


@st.composite
def mean_edit(draw) -> tuple[list, bytes]:
    blob = mean_blob()
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set_dim", "add_dim", "drop_dim", "legacy", "drop_value",
                                     "clear_data", "to_double", "add_value", "no_shape"]))
        value = draw(st.sampled_from(EXTREME_INTS))
        edits.append((kind, value))
        if kind == "set_dim" and len(blob.shape.dim):
            blob.shape.dim[draw(st.integers(0, len(blob.shape.dim) - 1))] = value
        elif kind == "add_dim":
            blob.shape.dim.append(max(value, 0))
        elif kind == "drop_dim" and len(blob.shape.dim):
            del blob.shape.dim[0]
        elif kind == "legacy":
            blob.ClearField("shape")
            legacy = [1, 3, 4, 4]
            legacy[draw(st.integers(0, 3))] = max(min(value, 2**31 - 1), -(2**31))
            blob.num, blob.channels, blob.height, blob.width = legacy
        elif kind == "drop_value" and len(blob.data):
            blob.data.pop()
        elif kind == "clear_data":
            blob.ClearField("data")
        elif kind == "to_double":
            blob.double_data.extend(blob.data)
            blob.ClearField("data")
        elif kind == "add_value":
            blob.data.append(0.5)
        elif kind == "no_shape":
            blob.ClearField("shape")
    return edits, blob.SerializeToString()


def transform_with_mean(path, crop: int) -> None:
    param = caffe_pb2.TransformationParameter(mean_file=str(path), crop_size=crop, scale=0.5)
    transformer = DataTransformer(param, caffe_pb2.TRAIN, 1, "layer 'fuzz' (Data)")
    raw = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    out = np.empty((2, *transformer.output_shape(3, 4, 4)), dtype=np.float32)
    transformer.transform(raw, 0, out)


@fuzz_settings(80)
@given(st.one_of(byte_mutation(MEAN).map(lambda m: ([], m)), mean_edit()),
       st.sampled_from([0, 2]))
def test_mean_binaryproto(tmp_path, edit, crop):
    edits, data = edit
    path = tmp_path / "mean.binaryproto"
    path.write_bytes(materialize(data))
    check_rule("mean binaryproto -> DataTransformer", lambda: transform_with_mean(path, crop),
               names=(str(path), "layer 'fuzz'"), data=edits or data)


# --- Datum records ---------------------------------------------------------------------------
DATUMS = [
    caffe_pb2.Datum(channels=1, height=4, width=4, data=bytes(range(16)), label=3),
    caffe_pb2.Datum(channels=2, height=2, width=3, float_data=[0.5] * 12, label=-1),
    # PNG/JPEG-like encoded payloads: a PNG signature with a truncated header, and junk.
    caffe_pb2.Datum(channels=3, height=2, width=2, encoded=True,
                    data=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x02", label=1),
]
DATUM_BYTES = [d.SerializeToString() for d in DATUMS]


@st.composite
def datum_wire(draw) -> bytes:
    """A hand-built Datum: each field present or not, with extreme values, in any order."""
    parts = []
    if draw(st.booleans()):
        parts.append(field_varint(1, draw(st.sampled_from(EXTREME_INTS))))  # channels
    if draw(st.booleans()):
        parts.append(field_varint(2, draw(st.sampled_from(EXTREME_INTS))))  # height
    if draw(st.booleans()):
        parts.append(field_varint(3, draw(st.sampled_from(EXTREME_INTS))))  # width
    if draw(st.booleans()):
        parts.append(field_bytes(4, draw(st.binary(max_size=40))))  # data
    if draw(st.booleans()):
        parts.append(field_varint(5, draw(st.sampled_from(EXTREME_INTS))))  # label
    for _ in range(draw(st.integers(0, 3))):
        parts.append(field_float(6, draw(st.floats(width=32))))  # float_data, unpacked
    if draw(st.booleans()):
        parts.append(field_varint(7, draw(st.sampled_from([0, 1, 2, 2**63]))))  # encoded
    return b"".join(draw(st.permutations(parts)))


def read_datum(raw: bytes, force_color: bool, force_gray: bool) -> None:
    where = "fuzz_lmdb record '00000001'"
    datum = parse_datum(raw, where)
    datum_array(datum, where, force_color, force_gray)


@fuzz_settings(200)
@given(st.one_of(st.sampled_from(DATUM_BYTES).flatmap(byte_mutation), datum_wire(),
                 st.binary(max_size=64)),
       st.booleans(), st.booleans())
def test_datum_records(drawn, force_color, force_gray):
    raw = materialize(drawn)
    check_rule("Datum bytes -> parse_datum + datum_array",
               lambda: read_datum(raw, force_color, force_gray),
               names=("fuzz_lmdb record",), data=raw)


# --- LevelDB ---------------------------------------------------------------------------------
# pyforge reads LevelDB with its own reader of the file format (and a Numba Snappy decoder).
LEVELDB_DIR = FUZZ_DATA / "leveldb"  # 70 Datum records: one compacted table and a log
LEVELDB_FILES = {p.name: p.read_bytes() for p in sorted(LEVELDB_DIR.iterdir())}


def read_all_records(folder) -> None:
    reader = open_reader(str(folder), LEVELDB, "layer 'fuzz' (Data)")
    try:
        for i in range(len(reader)):
            where = f"{folder} record {reader.key(i)!r}"
            datum_array(parse_datum(reader.value(i), where), where)
    finally:
        reader.close()


@fuzz_settings(80)
@given(st.lists(st.tuples(st.sampled_from(sorted(LEVELDB_FILES)), st.data()), min_size=1,
                max_size=2))
def test_leveldb_files(tmp_path, edits):
    folder = tmp_path / "db"
    folder.mkdir(exist_ok=True)
    files = dict(LEVELDB_FILES)
    drawn = []
    for name, data in edits:
        mutation = data.draw(byte_mutation(files[name]))
        files[name] = materialize(mutation)
        drawn.append((name, mutation))
    for name, content in files.items():
        (folder / name).write_bytes(content)
    check_rule("LevelDB files -> open_reader + records", lambda: read_all_records(folder),
               names=(str(folder),), data=drawn)


def test_seed_files_load(lenet, caffe_state_target, pyforge_state, tmp_path):
    """The unmutated inputs load: the mutations start from valid files."""
    path = tmp_path / "ok.caffemodel"
    path.write_bytes(CAFFEMODEL)
    load_weights(lenet, str(path))
    folder, solver = caffe_state_target
    shutil.copy(CAFFE_STATE_DIR / "snap_iter_30.solverstate", folder / "ok.solverstate")
    solver.restore(str(folder / "ok.solverstate"))
    folder, state, target = pyforge_state
    (folder / "ok.solverstate").write_bytes(state)
    target.restore(str(folder / "ok.solverstate"))
    mean = tmp_path / "mean.binaryproto"
    mean.write_bytes(MEAN)
    transform_with_mean(mean, 2)
    read_datum(DATUM_BYTES[0], False, False)
    read_datum(DATUM_BYTES[1], False, False)
    read_all_records(LEVELDB_DIR)
