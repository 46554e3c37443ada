"""Files pyforge writes parse with Caffe's own schema, rebuilt here from the wire table alone.

The table (tests/data/caffe_wire.tsv) is every field of Caffe 1.0's caffe.proto; a descriptor
built from it, in a pool separate from pyforge's, is Caffe's reader. pyforge's extra
``pyforge_state`` field must come through it as an unknown field that Caffe skips, and every
field Caffe knows must read back as pyforge wrote it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from pyforge import api

WIRE = Path(__file__).resolve().parents[1] / "data" / "caffe_wire.tsv"
F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "double": F.TYPE_DOUBLE, "float": F.TYPE_FLOAT, "int64": F.TYPE_INT64,
    "uint64": F.TYPE_UINT64, "int32": F.TYPE_INT32, "uint32": F.TYPE_UINT32,
    "bool": F.TYPE_BOOL, "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES,
}
LABELS = {"optional": F.LABEL_OPTIONAL, "repeated": F.LABEL_REPEATED,
          "required": F.LABEL_REQUIRED}


def caffe_schema() -> descriptor_pool.DescriptorPool:
    lines = WIRE.read_text(encoding="utf-8").splitlines()
    rows = list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    enums = {r["message_or_enum"] for r in rows if r["kind"] == "enum_value"}
    file_proto = descriptor_pb2.FileDescriptorProto(name="caffe_wire_table.proto",
                                                    package="caffe", syntax="proto2")
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    enum_protos: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
    for r in rows:
        if r["kind"] == "enum_value":
            name = r["message_or_enum"]
            if name not in enum_protos:
                if "." in name:
                    parent, short = name.split(".")
                    if parent not in messages:
                        messages[parent] = file_proto.message_type.add(name=parent)
                    enum_protos[name] = messages[parent].enum_type.add(name=short)
                else:
                    enum_protos[name] = file_proto.enum_type.add(name=name)
            enum_protos[name].value.add(name=r["field_name"], number=int(r["number"]))
            continue
        message = r["message_or_enum"]
        if message not in messages:
            messages[message] = file_proto.message_type.add(name=message)
        field = messages[message].field.add(name=r["field_name"], number=int(r["number"]),
                                            label=LABELS[r["label"]])
        kind = r["type"]
        if kind in SCALARS:
            field.type = SCALARS[kind]
        else:
            field.type = F.TYPE_ENUM if kind in enums else F.TYPE_MESSAGE
            field.type_name = ".caffe." + kind
        if r["default"]:
            field.default_value = "" if r["default"] == '""' else r["default"]
        if r["packed"] == "true":
            field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return pool


@pytest.fixture(scope="module")
def caffe_classes():
    pool = caffe_schema()
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
            for name in ("NetParameter", "SolverState", "SolverParameter")}


def test_the_rebuilt_schema_is_caffes(caffe_classes):
    state = caffe_classes["SolverState"].DESCRIPTOR
    assert [f.name for f in state.fields] == ["iter", "learned_net", "history", "current_step"]
    assert caffe_classes["NetParameter"].DESCRIPTOR.fields_by_name["layer"].number == 100


def test_caffe_reads_pyforges_snapshot_pair(caffe_classes, in_caffe_ref, tmp_path):
    def override(param):
        param.snapshot_prefix = str(tmp_path / "snap")
        param.max_iter = 2
        param.snapshot = 0

    api.train("runs/sgd_inv/solver.prototxt", weights="init/snap_iter_0.caffemodel",
              overrides=override)
    state_bytes = (tmp_path / "snap_iter_2.solverstate").read_bytes()
    state = caffe_classes["SolverState"].FromString(state_bytes)
    assert state.iter == 2 and state.current_step == 0
    assert state.learned_net == str(tmp_path / "snap_iter_2.caffemodel")
    assert len(state.history) == 8
    assert [tuple(b.shape.dim) for b in state.history][:2] == [(20, 1, 5, 5), (20,)]
    # Caffe keeps pyforge's field as an unknown one and writes it back unchanged.
    assert state.SerializeToString() == state_bytes
    model_bytes = (tmp_path / "snap_iter_2.caffemodel").read_bytes()
    model = caffe_classes["NetParameter"].FromString(model_bytes)
    assert model.name == "LeNet"
    names = [layer.name for layer in model.layer]
    assert names == ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"]
    ip1 = model.layer[names.index("ip1")]
    assert tuple(ip1.blobs[0].shape.dim) == (500, 800)
    assert np.isfinite(np.array(ip1.blobs[0].data)).all()
    assert model.layer[names.index("loss")].loss_weight == [1.0]  # as Caffe's ToProto writes
    assert model.SerializeToString() == model_bytes
