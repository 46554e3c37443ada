"""The Caffe forks' field numbers: which fork defines a field, and reading a fork's binary file.

The forks gave some of their LayerParameter fields numbers that BVLC Caffe (or another fork)
uses for something else: PSPNet's ``interp_param`` is 143, BVLC's ``input_param``; SegNet's
``upsample_param`` is 137, BVLC's ``embed_param``. pyforge's schema keeps BVLC's meaning of
each number and declares the fork field elsewhere (20000 + the fork's number, or the number of
the fork it follows). A text prototxt names fields, so it parses either way; a binary
.caffemodel names numbers, so :func:`adopt_fork_numbers` moves a fork's field from the fork's
number to pyforge's when the layer's type says which fork wrote it (an ``Interp`` layer's 143
is PSPNet's ``interp_param``, an ``Input`` layer's is BVLC's ``input_param``). The raw bytes
are read from the file, not re-encoded from the misparsed field, so nothing is lost.

Two clashes are inside one message of one layer type, where the type cannot tell: field 13 of
PoolingParameter (BVLC's ``round_mode`` enum, the ceil_mode forks' bool) and field 2 of
DropoutParameter (the Faster R-CNN forks' ``scale_train``, SegNet's ``sample_weights_test``).
There BVLC's field, then the more widely used fork's, keeps the number (README: "Caffe forks").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from google.protobuf import message as _message

from ..errors import ParseError
from . import caffe_pb2
from .wire import LENGTH, varint
from .wire import fields as wire_fields

SSD = "SSD (weiliu89/caffe, branch ssd)"
MOBILENET_SSD = "MobileNet-SSD (chuanqi305/ssd)"
FASTER_RCNN = "Faster R-CNN (rbgirshick/caffe-fast-rcnn)"
RFCN = "R-FCN (daijifeng001/caffe-rfcn)"
MICROSOFT = "py-R-FCN's Microsoft/caffe"
OPENCV = "OpenCV's dnn schema (opencv-caffe.proto)"
PSPNET = "PSPNet (hszhao/PSPNet) / DeepLab"
SEGNET = "SegNet (alexgkendall/caffe-segnet)"
ENET = "ENet (TimoSaemann/caffe-enet)"
SHUFFLENET = "ShuffleNet (farmingyard/ShuffleNet)"
CEIL_MODE_FORKS = "the ceil_mode forks (BVLC/caffe PR #3057: DenseNet, OpenCV)"
RELU6_ADDONS = "the stand-alone ReLU6 add-ons"

#: (message, field) -> the fork that defines it, for every fork field in pyforge's schema.
#: Fields of a fork's own message (PriorBoxParameter.min_size) come with the message's entry.
FORK_FIELDS: dict[tuple[str, str], str] = {
    ("LayerParameter", "multibox_loss_param"): SSD,
    ("LayerParameter", "permute_param"): SSD,
    ("LayerParameter", "prior_box_param"): SSD,
    ("LayerParameter", "detection_output_param"): SSD,
    ("LayerParameter", "detection_evaluate_param"): SSD,
    ("LayerParameter", "norm_param"): SSD,
    ("LayerParameter", "relu6_param"): MOBILENET_SSD,
    ("LayerParameter", "roi_pooling_param"): FASTER_RCNN,
    ("LayerParameter", "smooth_l1_loss_param"): FASTER_RCNN,
    ("LayerParameter", "psroi_pooling_param"): RFCN,
    ("LayerParameter", "proposal_param"): OPENCV,
    ("LayerParameter", "interp_param"): PSPNET,
    ("LayerParameter", "bn_param"): f"{PSPNET}, {SEGNET}, {ENET}",
    ("LayerParameter", "upsample_param"): f"{SEGNET}, {ENET}",
    ("LayerParameter", "dense_image_data_param"): f"{SEGNET}, {ENET}",
    ("LayerParameter", "shuffle_channel_param"): SHUFFLENET,
    ("DropoutParameter", "scale_train"): f"{FASTER_RCNN}, {RFCN}",
    ("DropoutParameter", "sample_weights_test"): f"{SEGNET} (Bayesian SegNet), {ENET}",
    ("PoolingParameter", "ceil_mode"): CEIL_MODE_FORKS,
}

#: Fields that forks define and pyforge does not read: the hint says which fork and why.
UNREAD_FORK_FIELDS: dict[str, str] = {
    "annotated_data_param": f"{SSD} for its AnnotatedData training layer, which pyforge does "
    "not implement",
    "video_data_param": f"{SSD} for its VideoData layer, which pyforge does not implement",
    "box_annotator_ohem_param": f"{RFCN} for its OHEM training layer, which pyforge does not "
    "implement",
    "resize_param": f"{SSD} in its training transform_param, which pyforge does not implement",
    "distort_param": f"{SSD} in its training transform_param, which pyforge does not implement",
    "expand_param": f"{SSD} in its training transform_param, which pyforge does not implement",
    "noise_param": f"{SSD} in its training transform_param, which pyforge does not implement",
    "emit_constraint": f"{SSD} in its training transform_param, which pyforge does not "
    "implement",
    "normalized_bbox": f"{OPENCV} (not a Caffe fork); SSD's DetectionOutput has no such field",
    "correlation_param": "FlowNet's Caffe fork, whose Correlation layer pyforge does not "
    "implement",
    "round_below": "a Caffe fork (e.g. SSD / NVCaffe)",
}


@dataclass(frozen=True)
class ForkNumber:
    """A fork's number for a field that pyforge's schema declares at another number."""

    layer_types: frozenset[str]
    number: int
    field: str
    fork: str
    #: Renumbering of the nested message's own fields (fork number -> pyforge number).
    renumber: dict[int, int] = field(default_factory=dict)


#: The fork numbers read back from binary files, by the layer types that use them.
FORK_NUMBERS: tuple[ForkNumber, ...] = (
    ForkNumber(frozenset({"ROIPooling"}), 147, "roi_pooling_param", MICROSOFT),
    ForkNumber(frozenset({"SmoothL1Loss"}), 148, "smooth_l1_loss_param", MICROSOFT),
    ForkNumber(frozenset({"PSROIPooling"}), 149, "psroi_pooling_param", MICROSOFT),
    ForkNumber(frozenset({"PSROIPooling"}), 10002, "psroi_pooling_param", OPENCV),
    ForkNumber(frozenset({"Proposal"}), 201, "proposal_param", OPENCV),
    ForkNumber(frozenset({"Interp"}), 143, "interp_param", PSPNET),
    ForkNumber(frozenset({"BN"}), 45, "bn_param", f"{SEGNET}, {ENET}",
               {1: 20001, 2: 20002, 3: 20003}),
    ForkNumber(frozenset({"Upsample"}), 137, "upsample_param", SEGNET),
    ForkNumber(frozenset({"Upsample"}), 147, "upsample_param", ENET),
    ForkNumber(frozenset({"DenseImageData"}), 138, "dense_image_data_param", SEGNET),
    ForkNumber(frozenset({"ReLU6"}), 100000, "relu6_param", RELU6_ADDONS),
)



def _by_layer_type(entries: tuple[ForkNumber, ...]) -> dict[str, tuple[ForkNumber, ...]]:
    table: dict[str, list[ForkNumber]] = {}
    for entry in entries:
        for layer_type in entry.layer_types:
            table.setdefault(layer_type, []).append(entry)
    return {layer_type: tuple(found) for layer_type, found in table.items()}


_BY_TYPE = _by_layer_type(FORK_NUMBERS)

_LAYER_FIELD = caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name["layer"].number


def fork_of(message_name: str, field_name: str) -> str | None:
    """The fork that defines ``message_name.field_name``, or None for BVLC's and pyforge's."""
    if (message_name, field_name) in FORK_FIELDS:
        return FORK_FIELDS[(message_name, field_name)]
    return None


@dataclass(frozen=True)
class _Field:
    number: int
    wire_type: int
    start: int  # where the field's key begins
    value_start: int  # after the key (and, for length-delimited fields, the length)
    end: int


def _fields(data: memoryview) -> Iterator[_Field]:
    """The top-level fields of a serialized message (which protobuf has already accepted).

    Groups (wire types 3 and 4) never occur in Caffe's files; meeting one stops the walk with
    ValueError (WireError), and the caller leaves the layer as protobuf parsed it."""
    for number, wire_type, start, value_start, end in wire_fields(data):
        yield _Field(number, wire_type, start, value_start, end)


def _renumber(payload: memoryview, renumber: dict[int, int]) -> bytes:
    """``payload`` with its top-level fields moved from the fork's numbers to pyforge's."""
    out = bytearray()
    for item in _fields(payload):
        if item.number in renumber:
            out += varint(renumber[item.number] << 3 | item.wire_type)
            key_end = item.start + len(varint(item.number << 3 | item.wire_type))
            out += payload[key_end : item.end]
        else:
            out += payload[item.start : item.end]
    return bytes(out)


def adopt_fork_numbers(net: caffe_pb2.NetParameter, data: bytes, filename: str) -> int:
    """Move fork fields of ``net`` (parsed from ``data``) from the fork's numbers to pyforge's.

    Only layers whose type uses a fork number (:data:`FORK_NUMBERS`) are touched; each is
    re-read from its own bytes without the fork's field, then the field's bytes (renumbered
    where the fork's message differs) are merged into pyforge's field. Returns how many layers
    were rewritten."""
    wanted = [index for index, layer in enumerate(net.layer) if layer.type in _BY_TYPE]
    if not wanted:
        return 0
    view = memoryview(data)
    try:
        layer_spans = [f for f in _fields(view)
                       if f.number == _LAYER_FIELD and f.wire_type == LENGTH]
    except (ValueError, IndexError):
        return 0
    if len(layer_spans) != len(net.layer):
        return 0
    rewritten = 0
    for index in wanted:
        layer = net.layer[index]
        span = layer_spans[index]
        raw = view[span.value_start : span.end]
        entries = {entry.number: entry for entry in _BY_TYPE[layer.type]}
        try:
            fields = list(_fields(raw))
        except (ValueError, IndexError):
            continue
        found = [f for f in fields if f.number in entries and f.wire_type == LENGTH]
        if not found:
            continue
        kept = b"".join(bytes(raw[f.start : f.end]) for f in fields if f.number not in entries)
        name, layer_type = layer.name, layer.type
        try:
            layer.Clear()
            layer.MergeFromString(kept)
            for item in found:
                entry = entries[item.number]
                payload = raw[item.value_start : item.end]
                nested = _renumber(payload, entry.renumber) if entry.renumber else bytes(payload)
                getattr(layer, entry.field).MergeFromString(nested)
        except (_message.DecodeError, ValueError, IndexError):
            raise ParseError(
                f"{filename}: layer '{name}' (type {layer_type}): field {item.number}, "
                f"{entry.fork}'s {entry.field}, does not decode as one"
            ) from None
        rewritten += 1
    return rewritten
