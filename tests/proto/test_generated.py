"""The committed caffe_pb2.py is what ``python -m pyforge.proto.regenerate`` writes today."""

from __future__ import annotations

import difflib

import pytest

from pyforge.proto import regenerate

pytest.importorskip("grpc_tools", reason="regenerating needs grpcio-tools (the dev extra)")


def test_committed_module_is_up_to_date(tmp_path):
    generated = regenerate.generate(tmp_path)
    assert generated == tmp_path / "caffe_pb2.py"
    fresh = generated.read_bytes()
    committed = regenerate.MODULE_PATH.read_bytes()
    if fresh != committed:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.decode("utf-8", "replace").splitlines(keepends=True),
                    fresh.decode("utf-8", "replace").splitlines(keepends=True),
                    "pyforge/proto/caffe_pb2.py (committed)",
                    "protoc output",
                    n=0,
                )
            )[:40]
        )
        pytest.fail(
            "pyforge/proto/caffe_pb2.py is stale: run `python -m pyforge.proto.regenerate` "
            f"after editing solver_proto/caffe.proto\n{diff}"
        )


def test_generate_does_not_touch_the_committed_module(tmp_path):
    before = regenerate.MODULE_PATH.stat().st_mtime_ns
    regenerate.generate(tmp_path)
    assert regenerate.MODULE_PATH.stat().st_mtime_ns == before


def test_schema_header_documents_regeneration():
    proto = regenerate.PROTO_DIR / "caffe.proto"
    header = []
    for line in proto.read_text(encoding="utf-8").splitlines():
        if not line.startswith("//"):
            break
        header.append(line)
    assert header, f"{proto} has no header comment"
    assert any("python -m pyforge.proto.regenerate" in line for line in header), "\n".join(header)
    assert any("tests/proto/test_wire.py" in line for line in header)


def test_module_docstring_names_the_command():
    assert "python -m pyforge.proto.regenerate" in (regenerate.__doc__ or "")
