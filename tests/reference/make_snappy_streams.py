"""Writes tests/reference/snappy_streams/<name>.snappy: the inputs of
:func:`tests.reference.snappy.sample_inputs` compressed by the real Snappy encoder.

``python-snappy`` and ``cramjam`` are not dependencies; plyvel's manylinux wheel bundles the
libsnappy its LevelDB compresses table blocks with (plyvel.libs/libsnappy-*.so, 1.1.9 when these
files were made), and ``snappy::RawCompress(const char*, size_t, char*, size_t*)`` is called here
through ctypes by its C++ symbol name. The output is a raw Snappy stream: the varint length, then
the elements, exactly what LevelDB stores in a compressed block. Run it by hand
(``python -m tests.reference.make_snappy_streams``) only to regenerate the files; the tests read
the files, so they need neither this library nor this script.
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

from tests.reference.snappy import sample_inputs

OUT = Path(__file__).parent / "snappy_streams"


def _encoder():
    import plyvel

    libs = os.path.dirname(plyvel.__file__) + ".libs"
    found = sorted(glob.glob(os.path.join(libs, "libsnappy*.so*")))
    if not found:
        raise SystemExit(f"no bundled libsnappy in {libs}")
    lib = ctypes.CDLL(found[0])
    max_length = lib._ZN6snappy19MaxCompressedLengthEm
    max_length.restype = ctypes.c_size_t
    max_length.argtypes = [ctypes.c_size_t]
    raw_compress = lib._ZN6snappy11RawCompressEPKcmPcPm
    raw_compress.restype = None
    raw_compress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                             ctypes.POINTER(ctypes.c_size_t)]

    def compress(data: bytes) -> bytes:
        out = ctypes.create_string_buffer(max_length(len(data)))
        size = ctypes.c_size_t()
        raw_compress(data, len(data), out, ctypes.byref(size))
        return out.raw[: size.value]

    return compress


def main() -> None:
    compress = _encoder()
    OUT.mkdir(exist_ok=True)
    for name, data in sample_inputs().items():
        stream = compress(data)
        (OUT / f"{name}.snappy").write_bytes(stream)
        print(f"{name}: {len(data)} bytes -> {len(stream)}")


if __name__ == "__main__":
    main()
