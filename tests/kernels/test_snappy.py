"""pyforge.kernels.snappy.snappy_decompress against the Snappy format (tests/reference/snappy.py):
streams written by the real encoder (libsnappy 1.1.9, tests/reference/snappy_streams), every
element form built by hand (literals with the length in the tag or in 1-4 extra bytes, copies
with 1-, 2- and 4-byte offsets, overlapping copies), random element sequences, the start
offset past the length preamble, and corrupt streams, which must return -1."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from pyforge.kernels.snappy import snappy_decompress
from tests.reference import snappy as ref

STREAMS = Path(ref.__file__).parent / "snappy_streams"


def _decode(stream: bytes, size: int, start: int = 0) -> tuple[int, bytes]:
    dst = np.full(size, 0xEE, dtype=np.uint8)  # garbage: every byte must be written
    written = snappy_decompress(np.frombuffer(stream, dtype=np.uint8), start, dst)
    return written, dst[: max(written, 0)].tobytes()


@pytest.mark.parametrize("name", sorted(ref.sample_inputs()))
def test_streams_of_the_real_encoder(name):
    stream = (STREAMS / f"{name}.snappy").read_bytes()
    expected = ref.sample_inputs()[name]
    size, start = ref.read_varint(stream)
    assert size == len(expected)
    assert _decode(stream, size, start) == (size, expected)


def _encode(ops, forms) -> bytes:
    """Elements for ``ops`` (bytes: literal; (offset, length): copy), in the given forms
    (literal: number of extra length bytes or None; copy: offset bytes)."""
    parts = []
    for op, form in zip(ops, forms):
        if isinstance(op, bytes):
            parts.append(ref.literal(op, form))
        else:
            parts.append(ref.copy(*op, form))
    return b"".join(parts)


HAND_BUILT = [
    pytest.param([b"a"], [0], id="literal_1"),
    pytest.param([bytes(range(60))], [0], id="literal_60_in_tag"),
    pytest.param([bytes(range(61))], [1], id="literal_61_1byte"),
    pytest.param([bytes(256)], [1], id="literal_256_1byte"),
    pytest.param([bytes(range(256)) * 4], [2], id="literal_1024_2bytes"),
    pytest.param([b"xyz"], [3], id="literal_3byte_length_form"),
    pytest.param([b"xyz"], [4], id="literal_4byte_length_form"),
    pytest.param([b"abcdefgh", (8, 4), (3, 11)], [0, 1, 1], id="copy1_lengths_4_11"),
    pytest.param([bytes(range(256)) * 8, (2047, 7)], [2, 1], id="copy1_offset_2047"),
    pytest.param([b"q", (1, 64), (1, 1)], [0, 2, 2], id="copy2_run_offset1"),
    pytest.param([bytes(range(250)) * 160, bytes(range(200)) * 150, (40000, 64), (65535, 33)],
                 [2, 2, 2, 2], id="copy2_far"),
    pytest.param([b"abc", (3, 10), (2, 5)], [0, 1, 2], id="overlapping_copies"),
    pytest.param([bytes(range(256)) * 300, (70000, 64), (76800, 1)], [3, 4, 4],
                 id="copy4_beyond_64k"),
    pytest.param([b"ab", (2, 4), (1, 1)], [0, 4, 4], id="copy4_near"),
]


@pytest.mark.parametrize(("ops", "forms"), HAND_BUILT)
def test_every_element_form(ops, forms):
    stream = _encode(ops, forms)
    expected = ref.apply(ops)
    assert _decode(stream, len(expected)) == (len(expected), expected)


@pytest.mark.parametrize("seed", range(8))
def test_random_element_sequences(seed):
    rng = random.Random(seed)
    ops, forms, produced = [], [], 0
    for _ in range(rng.randint(1, 40)):
        if produced == 0 or rng.random() < 0.3:
            length = rng.choice([1, 2, 59, 60, 61, 200, 300, rng.randint(1, 3000)])
            ops.append(bytes(rng.getrandbits(8) for _ in range(length)))
            minimal = 0 if length <= 60 else (length - 1).bit_length() // 8 + 1
            forms.append(rng.choice([f for f in (0, 1, 2, 3, 4) if f >= minimal]))
            produced += length
            continue
        offset = rng.randint(1, min(produced, 2047) if rng.random() < 0.5 else produced)
        form = rng.choice([1, 2, 4]) if offset < 2048 else rng.choice([2, 4])
        if offset >= 65536:
            form = 4
        length = rng.randint(4, 11) if form == 1 else rng.randint(1, 64)
        ops.append((offset, length))
        forms.append(form)
        produced += length
    stream = _encode(ops, forms)
    expected = ref.apply(ops)
    assert _decode(stream, len(expected)) == (len(expected), expected)


def test_start_skips_what_comes_before_the_elements():
    body = _encode([b"hello", (5, 10)], [0, 2])
    stream = b"\xff\x00garbage" + body
    assert _decode(stream, 15, start=9) == (15, b"hello" * 3)


def test_a_stream_that_ends_between_elements_returns_what_it_wrote():
    """Not an error for the kernel: the caller compares the count with the preamble's size."""
    assert _decode(ref.literal(b"abc"), 10) == (3, b"abc")
    assert _decode(b"", 4) == (0, b"")


CORRUPT = [
    pytest.param(ref.literal(b"abcde")[:-2], 16, id="literal_past_the_input"),
    pytest.param(bytes([60 << 2]), 16, id="literal_length_byte_missing"),
    pytest.param(bytes([62 << 2, 1, 0]), 16, id="literal_3byte_length_truncated"),
    pytest.param(bytes([63 << 2, 0xFF, 0xFF, 0xFF, 0x7F]) + b"ab", 16,
                 id="literal_huge_length"),
    pytest.param(ref.literal(b"ab") + ref.copy(2, 4, 1)[:1], 16, id="copy1_offset_missing"),
    pytest.param(ref.literal(b"ab") + ref.copy(2, 4, 2)[:2], 16, id="copy2_offset_truncated"),
    pytest.param(ref.literal(b"ab") + ref.copy(2, 4, 4)[:4], 16, id="copy4_offset_truncated"),
    pytest.param(ref.copy(2, 6, 1), 16, id="copy_before_any_output"),
    pytest.param(ref.literal(b"ab") + ref.copy(3, 4, 1), 16, id="copy1_offset_beyond_output"),
    pytest.param(ref.literal(b"ab") + ref.copy(3, 4, 2), 16, id="copy2_offset_beyond_output"),
    pytest.param(ref.literal(b"ab") + ref.copy(1 << 20, 4, 4), 16,
                 id="copy4_offset_beyond_output"),
    pytest.param(ref.literal(b"ab") + ref.copy(0, 4, 2), 16, id="offset_zero"),
    pytest.param(ref.literal(b"abcdef"), 5, id="literal_overflows_dst"),
    pytest.param(ref.literal(b"ab") + ref.copy(2, 10, 2), 11, id="copy_overflows_dst"),
]


@pytest.mark.parametrize(("stream", "size"), CORRUPT)
def test_corrupt_streams_return_minus_one(stream, size):
    assert _decode(stream, size)[0] == -1


def test_dst_exactly_full_is_not_an_overflow():
    stream = ref.literal(b"ab") + ref.copy(2, 10, 2)
    assert _decode(stream, 12) == (12, b"ab" * 6)
