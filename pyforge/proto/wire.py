"""Protobuf's wire format for the big arrays: BlobProto ``data``/``diff`` written from and read
into NumPy arrays as raw bytes.

Building a ``repeated float`` field element by element costs about 0.3 us a value (a
CaffeNet snapshot, 61M values, took 12 s), while the field's bytes on the wire are just the
little-endian floats. So the writer serializes every message *around* its blobs with protobuf
and splices the blobs in as (header, array buffer) chunks, byte for byte what protobuf itself
would write; the reader finds each blob's packed ``data``/``diff`` in the file and wraps those
bytes as arrays, parsing only the small rest with protobuf.

Wire format (protobuf's encoding guide): a field is a varint tag ``number << 3 | wire_type``
then its value; wire type 0 is a varint, 1 eight bytes, 2 a varint length and that many
bytes (messages, strings, packed repeated scalars), 5 four bytes. Known fields are written in
field-number order, which :func:`message_chunks` keeps.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from google.protobuf import message as _message

from . import caffe_pb2

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
#: BlobProto's array fields: number -> (name, little-endian dtype).
BLOB_ARRAYS = {5: ("data", "<f4"), 6: ("diff", "<f4"), 8: ("double_data", "<f8"),
               9: ("double_diff", "<f8")}
BLOB_SHAPE = 7
#: NetParameter.layer and LayerParameter.blobs.
NET_LAYER, LAYER_BLOBS = 100, 7

Chunk = bytes | memoryview


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def length_header(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited field of ``length`` bytes."""
    return varint(number << 3 | LENGTH) + varint(length)


# --- writing -----------------------------------------------------------------------------------
def blob_chunks(shape: tuple[int, ...], data: np.ndarray,
                diff: np.ndarray | None = None) -> list[Chunk]:
    """A serialized BlobProto with ``shape`` and packed float ``data`` (and ``diff``), as
    chunks that reference the arrays' memory: fields 5, 6, 7 in that order, as protobuf
    writes them."""
    chunks: list[Chunk] = []
    for number, array in ((5, data), (6, diff)):
        if array is None or not array.size:
            continue
        raw = memoryview(np.ascontiguousarray(array, dtype="<f4")).cast("B")
        chunks += [length_header(number, raw.nbytes), raw]
    dims = b"".join(varint(d & 0xFFFFFFFFFFFFFFFF) for d in shape)
    blob_shape = length_header(1, len(dims)) + dims if shape else b""
    chunks.append(length_header(BLOB_SHAPE, len(blob_shape)) + blob_shape)
    return chunks


def chunks_size(chunks: list[Chunk]) -> int:
    return sum(len(c) if isinstance(c, bytes) else c.nbytes for c in chunks)


def message_chunks(message: _message.Message, number: int,
                   items: list[list[Chunk]]) -> list[Chunk]:
    """``message`` serialized with each of ``items`` (serialized submessages, as chunks) as a
    value of its repeated field ``number``, where protobuf would put them: after the fields
    numbered below it and before those above (unknown fields stay last)."""
    head, tail = type(message)(), type(message)()
    head.CopyFrom(message)
    tail.CopyFrom(message)
    for field, _ in message.ListFields():
        (tail if field.number < number else head).ClearField(field.name)
    for part in (head, tail):
        part.ClearField(message.DESCRIPTOR.fields_by_number[number].name)
        part.DiscardUnknownFields()
    # Unknown fields (numbers this schema lacks) follow the known ones on the wire.
    without = type(message)()
    without.CopyFrom(message)
    without.ClearField(message.DESCRIPTOR.fields_by_number[number].name)
    known = type(message)()
    known.CopyFrom(without)
    known.DiscardUnknownFields()
    suffix = without.SerializeToString()[known.ByteSize():]
    chunks: list[Chunk] = [head.SerializeToString()]
    for item in items:
        chunks.append(length_header(number, chunks_size(item)))
        chunks += item
    chunks.append(tail.SerializeToString() + suffix)
    return chunks


def net_chunks(net_param: caffe_pb2.NetParameter,
               layer_blobs: list[list[list[Chunk]]]) -> list[Chunk]:
    """A NetParameter whose ``layer`` i carries the serialized blobs ``layer_blobs[i]``; the
    messages in ``net_param`` carry no blobs themselves."""
    layers = [message_chunks(layer, LAYER_BLOBS, blobs)
              for layer, blobs in zip(net_param.layer, layer_blobs)]
    return message_chunks(net_param, NET_LAYER, layers)


# --- reading -----------------------------------------------------------------------------------
def fields(buf: memoryview, start: int = 0, end: int | None = None
           ) -> Iterator[tuple[int, int, int, int, int]]:
    """(number, wire type, field start, value start, value end) of each field in
    ``buf[start:end]``; a varint's value is read with :func:`read_varint` by the caller."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        field_start = pos
        key, pos = read_varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            _, value_end = read_varint(buf, pos, end)
        elif wire_type == FIXED64:
            value_end = pos + 8
        elif wire_type == FIXED32:
            value_end = pos + 4
        elif wire_type == LENGTH:
            length, pos = read_varint(buf, pos, end)
            value_end = pos + length
        else:
            raise WireError(f"wire type {wire_type} at byte {field_start}")
        if number == 0 or value_end > end:
            raise WireError(f"field {number} at byte {field_start} runs past its message")
        yield number, wire_type, field_start, pos, value_end
        pos = value_end


def read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``buf[pos]`` (not past ``end``) and the position after it."""
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


#: Where BlobProtos sit: field-number paths from the top message. NetParameter: ``layer``
#: (100) -> ``blobs`` (7); V1 ``layers`` (2) -> ``blobs`` (6); a V0 net's ``layers`` (2) ->
#: ``layer`` (1) -> ``blobs`` (50). SolverState: ``history`` (3).
NET_BLOBS = ((100, 7), (2, 6), (2, 1, 50))
STATE_HISTORY = 3
STATE_BLOBS = ((STATE_HISTORY,),)


def strip_arrays(data: bytes, paths: tuple[tuple[int, ...], ...]
                 ) -> tuple[bytes, list[dict[str, np.ndarray]]]:
    """``data`` with every BlobProto at ``paths`` emptied of its packed arrays (the small rest
    that protobuf then parses), and those arrays (``{"data": ..., "diff": ...}`` float32,
    views of ``data``) in file order, which is the order of the BlobProtos in the parsed
    message. Arrays a writer left unpacked stay in the message, where protobuf reads them."""
    arrays: list[dict[str, np.ndarray]] = []
    if not paths:
        return data, arrays
    return _strip(memoryview(data), 0, len(data), paths, arrays), arrays


def _strip(buf: memoryview, start: int, end: int, paths, arrays: list) -> bytes:
    out = bytearray()
    for number, wire_type, field_start, value_start, value_end in fields(buf, start, end):
        inner = tuple(p[1:] for p in paths if p[0] == number)
        if wire_type != LENGTH or not inner:
            out += buf[field_start:value_end]
        elif () in inner:  # a BlobProto
            header = _strip_blob(buf, value_start, value_end, arrays)
            out += length_header(number, len(header)) + header
        else:
            body = _strip(buf, value_start, value_end, inner, arrays)
            out += length_header(number, len(body)) + body
    return bytes(out)


def _strip_blob(buf: memoryview, start: int, end: int, arrays: list) -> bytes:
    header = bytearray()
    found: dict[str, np.ndarray] = {}
    for number, wire_type, field_start, value_start, value_end in fields(buf, start, end):
        if number not in BLOB_ARRAYS or wire_type != LENGTH:
            header += buf[field_start:value_end]
            continue
        name, dtype = BLOB_ARRAYS[number]
        size = np.dtype(dtype).itemsize
        if (value_end - value_start) % size:
            raise WireError(f"packed {name} of {value_end - value_start} bytes is not a whole "
                            f"number of {size}-byte values")
        values = np.frombuffer(buf, dtype=dtype, count=(value_end - value_start) // size,
                               offset=value_start)
        kind = name.removeprefix("double_")
        if name.startswith("double_"):
            if kind in found:
                continue  # float values win over double ones, as in Blob.from_proto
            with np.errstate(over="ignore"):  # Caffe's cast turns out-of-range values into inf
                values = values.astype(np.float32)
        found[kind] = values
    arrays.append(found)
    return bytes(header)
