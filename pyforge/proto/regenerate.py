"""Regenerate ``pyforge/proto/caffe_pb2.py`` from ``solver_proto/caffe.proto``.

Run ``python -m pyforge.proto.regenerate`` from the repository root after editing the schema.
It needs ``grpcio-tools`` (the ``dev`` extra), which bundles ``protoc``; the generated module is
committed so that users never need protoc. ``tests/proto/test_generated.py`` fails when the
committed module differs from what this command would write.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "solver_proto"
MODULE_PATH = Path(__file__).resolve().parent / "caffe_pb2.py"


def generate(out_dir: Path) -> Path:
    """Run protoc on caffe.proto, writing caffe_pb2.py into ``out_dir``; return its path."""
    from grpc_tools import protoc  # dev-only dependency

    args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}", str(PROTO_DIR / "caffe.proto")]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status} on {PROTO_DIR / 'caffe.proto'}")
    return out_dir / "caffe_pb2.py"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        MODULE_PATH.write_bytes(generated.read_bytes())
    print(f"wrote {MODULE_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
