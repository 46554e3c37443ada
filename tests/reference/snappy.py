"""Snappy streams built by hand from the format description (google/snappy format_description.txt)
and the deterministic inputs of the streams a real encoder wrote (snappy_streams/).

A raw stream is the uncompressed length as a little-endian base-128 varint, then elements, each
starting with a tag byte whose low two bits give its kind:

* 00 literal: length - 1 in the upper six bits when below 60; 60, 61, 62, 63 mean that 1, 2, 3
  or 4 little-endian bytes after the tag hold length - 1; then the bytes themselves;
* 01 copy, 1-byte offset: length - 4 (0..7) in bits 2-4, the offset's bits 8-10 in bits 5-7,
  then the offset's low byte;
* 10 copy, 2-byte offset: length - 1 (0..63) in the upper six bits, then a little-endian offset;
* 11 copy, 4-byte offset: the same with a 4-byte offset.

A copy repeats ``length`` bytes starting ``offset`` bytes back in the output; when ``offset <
length`` it reads bytes it is itself writing (a run). The operations below are ``bytes`` for a
literal and ``(offset, length)`` for a copy.
"""

from __future__ import annotations

from collections.abc import Iterable

Op = bytes | tuple[int, int]


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


def read_varint(stream: bytes, pos: int = 0) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``."""
    value = shift = 0
    while True:
        byte = stream[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def literal(data: bytes, extra_bytes: int | None = None) -> bytes:
    """A literal element; ``extra_bytes`` (0-4) forces the length form (0 = in the tag)."""
    n = len(data) - 1
    if extra_bytes is None:
        extra_bytes = 0 if n < 60 else (n.bit_length() + 7) // 8
    if extra_bytes == 0:
        assert n < 60
        return bytes([n << 2]) + data
    assert n < 1 << (8 * extra_bytes)
    return bytes([(59 + extra_bytes) << 2]) + n.to_bytes(extra_bytes, "little") + data


def copy(offset: int, length: int, offset_bytes: int) -> bytes:
    """A copy element with a 1-, 2- or 4-byte offset."""
    if offset_bytes == 1:
        assert 4 <= length <= 11 and offset < 2048
        return bytes([((offset >> 8) << 5) | ((length - 4) << 2) | 1, offset & 0xFF])
    assert 1 <= length <= 64
    kind = 2 if offset_bytes == 2 else 3
    return bytes([((length - 1) << 2) | kind]) + offset.to_bytes(offset_bytes, "little")


def apply(ops: Iterable[Op]) -> bytes:
    """What decoding the operations must give: literals appended, copies byte by byte."""
    out = bytearray()
    for op in ops:
        if isinstance(op, bytes):
            out += op
        else:
            offset, length = op
            for _ in range(length):
                out.append(out[-offset])
    return bytes(out)


def sample_inputs() -> dict[str, bytes]:
    """The inputs compressed into snappy_streams/<name>.snappy by make_snappy_streams.py; made
    from integer formulas only, so that they are the same on every platform and version."""
    words = [b"caffe", b"blob", b"layer", b"net", b"solver", b"weight", b"diff", b"data",
             b"forward", b"backward", b"  ", b"\n"]

    def lcg(seed: int, count: int) -> list[int]:
        state, out = seed, []
        for _ in range(count):
            state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            out.append(state >> 33)
        return out

    text = b" ".join(words[r % len(words)] for r in lcg(1, 900))
    noise = bytes(r & 0xFF for r in lcg(2, 3000))
    runs = b"".join(bytes([r & 0xFF]) * (1 + r % 300) + b"ab" * (r % 7) for r in lcg(3, 60))
    # Text with 100-byte stretches of noise: literals with a 1-byte length.
    patchy = b"".join(text[r % 4000 : r % 4000 + 300] + noise[r % 2800 : r % 2800 + 100]
                      for r in lcg(5, 12))
    # Longer than Snappy's 64 KiB fragments (the encoder starts afresh in each).
    big = b"".join(text[:1000] + bytes([k]) for k in range(70))
    return {"text": text, "incompressible": noise, "runs": runs, "patchy": patchy,
            "over_64k": big}
