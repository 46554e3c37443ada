"""The compiled schema is wire-compatible with Caffe: caffe_pb2's descriptor == caffe_wire.tsv."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2

from pyforge.proto import caffe_pb2

WIRE_TSV = Path(__file__).resolve().parents[1] / "data" / "caffe_wire.tsv"
HEADER = ["kind", "message_or_enum", "field_name", "number", "label", "type", "default", "packed"]

FDP = descriptor_pb2.FieldDescriptorProto
_LABELS = {FDP.LABEL_OPTIONAL: "optional", FDP.LABEL_REPEATED: "repeated"}
_LABELS[FDP.LABEL_REQUIRED] = "required"
# FieldDescriptorProto.Type -> the .proto scalar type name (TYPE_INT32 -> "int32").
_SCALARS = {
    value: name[len("TYPE_") :].lower()
    for name, value in FDP.Type.items()
    if value not in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM, FDP.TYPE_GROUP)
}


def _float_text(text: str, double: bool) -> str:
    """A float default as libprotoc 3.21 writes it (SimpleFtoa / SimpleDtoa).

    caffe_wire.tsv was made with libprotoc 3.21.12, which prints the shortest of ``%.6g`` /
    ``%.9g`` (floats; ``%.15g`` / ``%.17g`` for doubles) that reads back as the same value:
    ``1e-08``. Newer protoc (the 35.x that grpcio-tools bundles) always prints ``%.9g``
    (``9.99999994e-09``); both name the same float, so the newer text is re-normalised here.
    """
    if text in ("inf", "-inf", "nan"):
        return text
    cast = float if double else (lambda v: float(np.float32(v)))
    value = cast(float(text))
    short, full = ("%.15g", "%.17g") if double else ("%.6g", "%.9g")
    shortest = short % value
    return shortest if cast(float(shortest)) == value else full % value


def _file_proto() -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.DESCRIPTOR.serialized_pb)


def _strip_package(type_name: str, package: str) -> str:
    prefix = f".{package}."
    assert type_name.startswith(prefix), type_name
    return type_name[len(prefix) :]


def _enum_rows(enum: descriptor_pb2.EnumDescriptorProto, scope: str) -> list[list[str]]:
    name = f"{scope}{enum.name}"
    return [["enum_value", name, v.name, str(v.number), "", "", "", ""] for v in enum.value]


def _message_rows(
    message: descriptor_pb2.DescriptorProto, scope: str, package: str
) -> list[list[str]]:
    name = f"{scope}{message.name}"
    rows = []
    for field in message.field:
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
            type_name = _strip_package(field.type_name, package)
        else:
            type_name = _SCALARS[field.type]
        default = field.default_value
        if field.HasField("default_value") and default == "":
            default = '""'
        elif default and field.type in (FDP.TYPE_FLOAT, FDP.TYPE_DOUBLE):
            default = _float_text(default, field.type == FDP.TYPE_DOUBLE)
        packed = "true" if field.options.HasField("packed") and field.options.packed else ""
        rows.append(
            [
                "message_field",
                name,
                field.name,
                str(field.number),
                _LABELS[field.label],
                type_name,
                default,
                packed,
            ]
        )
    for nested in message.nested_type:
        rows.extend(_message_rows(nested, f"{name}.", package))
    for enum in message.enum_type:
        rows.extend(_enum_rows(enum, f"{name}."))
    return rows


#: pyforge's own fields: numbered >= PYFORGE_FIRST_FIELD, far above Caffe's, so Caffe skips
#: them as unknown fields. Adding one means documenting it here and in caffe.proto.
PYFORGE_FIRST_FIELD = 10000
PYFORGE_FIELDS = {
    ("SolverState", "pyforge_state"): "exact-resume state as JSON (solver type, cursors, RNGs)",
    ("SolverParameter", "early_stop_metric"): "test output watched by early stopping/keep_best",
    ("SolverParameter", "early_stop_patience"): "test passes without improvement before stopping",
    ("SolverParameter", "early_stop_mode"): "max or min",
    ("SolverParameter", "keep_best"): "write <prefix>_best.caffemodel on improvement",
    ("SolverParameter", "plateau_patience"): "plateau lr policy: passes before a cut",
    ("SolverParameter", "plateau_cooldown"): "plateau lr policy: passes ignored after a cut",
    ("SolverParameter", "plateau_min_lr"): "plateau lr policy: floor",
    ("SolverParameter", "plateau_metric"): "plateau lr policy: watched test output",
    ("SolverParameter", "plateau_mode"): "plateau lr policy: max or min",
    ("SolverParameter", "metrics_file"): "JSONL metrics path",
}

#: Fields that Caffe's forks added to BVLC's messages: (message, field, number, fork). The
#: number is the fork's own, except where BVLC (or a fork listed first) has that number: then
#: the field sits at 20000 + the fork's number and pyforge.proto.forks reads the fork's
#: number back by layer type (FORK_NUMBER_ALIASES below).
FORK_FIELDS = [
    ("LayerParameter", "multibox_loss_param", 201, "SSD"),
    ("LayerParameter", "permute_param", 202, "SSD"),
    ("LayerParameter", "prior_box_param", 203, "SSD"),
    ("LayerParameter", "detection_output_param", 204, "SSD"),
    ("LayerParameter", "detection_evaluate_param", 205, "SSD"),
    ("LayerParameter", "norm_param", 206, "SSD"),
    ("LayerParameter", "relu6_param", 208, "MobileNet-SSD (chuanqi305/ssd)"),
    ("LayerParameter", "roi_pooling_param", 8266711, "rbgirshick/caffe-fast-rcnn"),
    ("LayerParameter", "smooth_l1_loss_param", 8266712, "rbgirshick/caffe-fast-rcnn"),
    ("LayerParameter", "psroi_pooling_param", 10001, "daijifeng001/caffe-rfcn"),
    ("LayerParameter", "proposal_param", 20201, "OpenCV (201, SSD's multibox_loss_param)"),
    ("LayerParameter", "interp_param", 20143, "PSPNet (143, BVLC's input_param)"),
    ("LayerParameter", "bn_param", 152, "PSPNet (SegNet, ENet: 45)"),
    ("LayerParameter", "upsample_param", 20137, "SegNet (137, BVLC's embed_param; ENet 147)"),
    ("LayerParameter", "dense_image_data_param", 46, "ENet (SegNet: 138, BVLC's tile_param)"),
    ("LayerParameter", "shuffle_channel_param", 164, "farmingyard/ShuffleNet"),
    ("DropoutParameter", "scale_train", 2, "Faster R-CNN, R-FCN"),
    ("DropoutParameter", "sample_weights_test", 20002, "SegNet, ENet (2, scale_train's)"),
    ("PoolingParameter", "ceil_mode", 20013, "BVLC PR #3057 forks (13, BVLC's round_mode)"),
]

#: Messages that only forks define; their rows, like FORK_FIELDS', are pinned in full
#: (label, type, default) by fork_wire.tsv, checked against each fork's caffe.proto.
FORK_MESSAGES = {
    "PermuteParameter": "SSD",
    "NormalizeParameter": "SSD",
    "PriorBoxParameter": "SSD (reduce_boxes: MobileNet-SSD)",
    "NonMaximumSuppressionParameter": "SSD",
    "ResizeParameter": "SSD",
    "SaveOutputParameter": "SSD",
    "DetectionOutputParameter": "SSD",
    "DetectionEvaluateParameter": "SSD",
    "MultiBoxLossParameter": "SSD",
    "ReLU6Parameter": "MobileNet-SSD; negative_slope: the ReLU6 add-ons",
    "ROIPoolingParameter": "rbgirshick/caffe-fast-rcnn",
    "SmoothL1LossParameter": "rbgirshick/caffe-fast-rcnn",
    "PSROIPoolingParameter": "daijifeng001/caffe-rfcn",
    "ProposalParameter": "OpenCV dnn",
    "InterpParameter": "PSPNet",
    "BNParameter": "PSPNet (1-6); SegNet / ENet (their 1-3 at 20001-20003)",
    "UpsampleParameter": "SegNet, ENet",
    "DenseImageDataParameter": "SegNet, ENet",
    "ShuffleChannelParameter": "farmingyard/ShuffleNet",
}

#: (layer type, the fork's number, pyforge's field) read back from a fork's binary file.
FORK_NUMBER_ALIASES = {
    ("ROIPooling", 147, "roi_pooling_param"),
    ("SmoothL1Loss", 148, "smooth_l1_loss_param"),
    ("PSROIPooling", 149, "psroi_pooling_param"),
    ("PSROIPooling", 10002, "psroi_pooling_param"),
    ("Proposal", 201, "proposal_param"),
    ("Interp", 143, "interp_param"),
    ("BN", 45, "bn_param"),
    ("Upsample", 137, "upsample_param"),
    ("Upsample", 147, "upsample_param"),
    ("DenseImageData", 138, "dense_image_data_param"),
    ("ReLU6", 100000, "relu6_param"),
}

_FORK_WIRE_TSV = WIRE_TSV.with_name("fork_wire.tsv")


def _is_pyforge_row(row: list[str]) -> bool:
    return row[0] == "message_field" and (row[1], row[2]) in PYFORGE_FIELDS


def _is_fork_row(row: list[str]) -> bool:
    if row[1].split(".")[0] in FORK_MESSAGES:
        return True
    return row[0] == "message_field" and any(
        (row[1], row[2]) == (message, name) for message, name, _, _ in FORK_FIELDS
    )


def descriptor_rows(caffe_only: bool = True) -> list[list[str]]:
    """The schema as caffe_wire.tsv rows: top-level enums, then each message and its enums.

    ``caffe_only`` leaves out pyforge's own fields and the forks' fields and messages."""
    file_proto = _file_proto()
    rows = []
    for enum in file_proto.enum_type:
        rows.extend(_enum_rows(enum, ""))
    for message in file_proto.message_type:
        rows.extend(_message_rows(message, "", file_proto.package))
    if caffe_only:
        rows = [row for row in rows if not _is_pyforge_row(row) and not _is_fork_row(row)]
    return rows


def test_pyforge_fields_are_documented_optional_and_out_of_caffes_range():
    extra = [row for row in descriptor_rows(caffe_only=False) if _is_pyforge_row(row)]
    assert {(row[1], row[2]) for row in extra} == set(PYFORGE_FIELDS)
    assert all(row[4] == "optional" for row in extra)
    assert all(int(row[3]) >= PYFORGE_FIRST_FIELD for row in extra)
    _, caffe_rows = reference_rows()
    assert max(int(r[3]) for r in caffe_rows if r[0] == "message_field") < PYFORGE_FIRST_FIELD


def test_fork_rows_match_fork_wire_tsv():
    """Every fork field, with its number, label, type and default, as the forks define it."""
    expected = [line.split("\t") for line in _FORK_WIRE_TSV.read_text("utf-8").splitlines()]
    assert expected[0] == HEADER
    actual = [row for row in descriptor_rows(caffe_only=False) if _is_fork_row(row)]
    assert actual == expected[1:]
    listed = {(m, f, n) for m, f, n, _ in FORK_FIELDS}
    in_bvlc_messages = {
        (r[1], r[2], int(r[3]))
        for r in actual
        if r[0] == "message_field" and r[1] not in FORK_MESSAGES
    }
    assert in_bvlc_messages == listed
    assert {r[1].split(".")[0] for r in actual} - {"LayerParameter", "DropoutParameter",
                                                    "PoolingParameter"} == set(FORK_MESSAGES)


def test_fork_numbers_clash_with_no_bvlc_or_pyforge_field():
    rows = descriptor_rows(caffe_only=False)
    for message, name, number, fork in FORK_FIELDS:
        same_number = [
            r[2] for r in rows if r[0] == "message_field" and r[1] == message
            and int(r[3]) == number
        ]
        assert same_number == [name], (message, name, number, fork)
    # The forks' 10000+ numbers sit in LayerParameter, pyforge's own in the solver messages.
    assert {message for message, _ in PYFORGE_FIELDS} == {"SolverParameter", "SolverState"}


def test_fork_number_aliases_are_read_back_by_layer_type():
    from pyforge.proto import forks

    table = {
        (layer_type, entry.number, entry.field)
        for entry in forks.FORK_NUMBERS
        for layer_type in entry.layer_types
    }
    assert table == FORK_NUMBER_ALIASES
    layer_fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    for _, number, name in FORK_NUMBER_ALIASES:
        assert layer_fields[name].number != number
    # Every fork field of pyforge's schema says which fork defines it (the parser's hints).
    assert set(forks.FORK_FIELDS) == {(m, f) for m, f, _, _ in FORK_FIELDS}


def reference_rows() -> tuple[list[str], list[list[str]]]:
    lines = WIRE_TSV.read_text(encoding="utf-8").splitlines()
    table = [line.split("\t") for line in lines]
    return table[0], table[1:]


def test_header():
    header, rows = reference_rows()
    assert header == HEADER
    assert all(len(row) == len(HEADER) for row in rows)


def test_descriptor_matches_caffe_wire_tsv():
    _, expected = reference_rows()
    actual = descriptor_rows()
    problems = []
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            columns = [
                f"{column}: caffe {w!r} vs pyforge {g!r}"
                for column, w, g in zip(HEADER, want, got, strict=True)
                if w != g
            ]
            problems.append(f"row {index + 2} ({'.'.join(want[1:3])}): " + "; ".join(columns))
    if problems or len(expected) != len(actual):
        diff = "\n".join(
            difflib.unified_diff(
                ["\t".join(r) for r in expected],
                ["\t".join(r) for r in actual],
                "caffe_wire.tsv",
                "caffe_pb2 descriptor",
                lineterm="",
                n=1,
            )
        )
        shown = "\n".join(problems[:20])
        raise AssertionError(
            f"{len(problems)} differing rows, {len(expected)} expected vs {len(actual)} rows"
            f"\n{shown}\n--- unified diff ---\n{diff[:6000]}"
        )


def test_counts():
    file_proto = _file_proto()
    assert file_proto.syntax in ("", "proto2")
    assert file_proto.package == "caffe"
    messages = [m for m in file_proto.message_type if m.name not in FORK_MESSAGES]
    assert len(messages) == 63
    assert len(file_proto.message_type) == 63 + len(FORK_MESSAGES)
    assert all(not m.nested_type for m in file_proto.message_type)
    extras = set(PYFORGE_FIELDS) | {(m, f) for m, f, _, _ in FORK_FIELDS}
    caffe_fields = [f for m in messages for f in m.field if (m.name, f.name) not in extras]
    assert len(caffe_fields) == 423
    enums = list(file_proto.enum_type) + [e for m in messages for e in m.enum_type]
    assert [e.name for e in file_proto.enum_type] == ["Phase"]
    assert len(enums) == 26
    assert sum(len(e.value) for e in enums) == 111
    assert sum(len(m.oneof_decl) for m in messages) == 0
    _, rows = reference_rows()
    assert len(rows) == 423 + 111
    assert len(descriptor_rows()) == 423 + 111


def test_key_numbers():
    """Spot checks that are easy to read when the table test fails."""
    net = caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name
    assert (net["layer"].number, net["layers"].number) == (100, 2)
    layer = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert (layer["blobs"].number, layer["transform_param"].number) == (7, 100)
    assert layer["loss_param"].number == 101
    forks = {name for message, name, _, _ in FORK_FIELDS if message == "LayerParameter"}
    params = [
        f.number
        for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields
        if f.name.endswith("_param") and f.name not in ("transform_param", "loss_param")
        and f.name not in forks
    ]
    assert min(params) >= 102 and max(params) <= 148
    state = caffe_pb2.SolverState.DESCRIPTOR.fields_by_name
    assert {name: state[name].number for name in state} == {
        "iter": 1,
        "learned_net": 2,
        "history": 3,
        "current_step": 4,
        "pyforge_state": PYFORGE_FIRST_FIELD,
    }


def test_float_defaults_are_caffes_float32_values():
    """The defaults are the same float32 numbers as Caffe's, whatever protoc's text for them."""
    assert _float_text("9.99999994e-09", double=False) == "1e-08"
    assert _float_text("0.999000013", double=False) == "0.999"
    assert _float_text("0.5", double=False) == "0.5"
    assert _float_text("-1", double=False) == "-1"
    solver = caffe_pb2.SolverParameter()
    assert solver.delta == np.float32(1e-8)
    assert solver.momentum2 == np.float32(0.999)
    assert caffe_pb2.BatchNormParameter().eps == np.float32(1e-5)
    assert caffe_pb2.MVNParameter().eps == np.float32(1e-9)


def test_packed_fields_encode_packed():
    """[packed = true] changes the bytes: BlobProto.data is one length-delimited run."""
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0, 2.0])
    raw = blob.SerializeToString()
    # Fields in number order, as Caffe's C++ writes them: data (field 5, LEN) 8 bytes, then
    # shape (field 7, LEN) { dim (field 1, LEN) [2, 3] }.
    assert raw[:2] == bytes([0x2A, 0x08])
    assert raw[10:] == bytes([0x3A, 0x04, 0x0A, 0x02, 0x02, 0x03])
    assert caffe_pb2.BlobProto.FromString(raw) == blob
