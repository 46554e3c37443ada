"""Writing and reading a big model's weights against a raw NumPy write and read of the same bytes.

Run by hand from the repository root (it is not collected by pytest):

    python benchmarks/weights_io.py   # --rounds 7 --json benchmarks/weights_io.json

The net's parameters (CaffeNet: 61M floats, 244 MB) get seeded random values. Each round, in
turn:

- pyforge writes the ``.caffemodel`` (``pyforge.io.snapshot.write_model``, what every snapshot
  does: a temporary file, fsync, rename, folder fsync) and NumPy writes the same floats as one
  array (``ndarray.tofile`` then fsync, the same durability);
- pyforge loads the ``.caffemodel`` into the net (``load_weights``: read, parse, copy into the
  parameters) and NumPy reads its file back (``np.fromfile``) and copies it into the same
  parameters.

The report is the median of the per-round ratios pyforge / NumPy, and the median times. The
files sit in the folder given with ``--dir`` (default: a temporary folder), and the page cache
is warm after the first round for both, as it is when a snapshot is written and read again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "prototxt_examples" / "zoo"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", default="caffenet")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default="")
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    from pyforge.io.snapshot import load_weights, write_model
    from pyforge.net.net import Net
    from pyforge.proto import read_net_param

    quiet = logging.getLogger("pyforge.benchmark")
    quiet.setLevel(logging.ERROR)
    net = Net(read_net_param(ZOO / f"{args.net}_deploy.prototxt"),
              rng=np.random.default_rng(1701), logger=quiet)
    params = [blob for layer in net.layers for blob in layer.blobs]
    rng = np.random.default_rng(7)
    for blob in params:
        blob.data[...] = rng.standard_normal(blob.shape)
    count = sum(blob.count for blob in params)
    flat = np.concatenate([blob.data.ravel() for blob in params])

    def numpy_write(path: Path) -> None:
        with open(path, "wb") as handle:
            flat.tofile(handle)
            handle.flush()
            os.fsync(handle.fileno())

    def numpy_read(path: Path) -> None:
        values = np.fromfile(path, dtype=np.float32)
        offset = 0
        for blob in params:
            blob.data[...] = values[offset:offset + blob.count].reshape(blob.shape)
            offset += blob.count

    timings: dict[str, list[float]] = {k: [] for k in ("save", "numpy_save", "load",
                                                       "numpy_load")}
    with tempfile.TemporaryDirectory(dir=args.dir or None) as tmp:
        model, raw = Path(tmp) / "model.caffemodel", Path(tmp) / "model.npy"
        steps = (("save", lambda: write_model(str(model), net)),
                 ("numpy_save", lambda: numpy_write(raw)),
                 ("load", lambda: load_weights(net, str(model))),
                 ("numpy_load", lambda: numpy_read(raw)))
        for _ in range(args.rounds):
            for name, step in steps:
                start = time.perf_counter()
                step()
                timings[name].append(time.perf_counter() - start)
        size = model.stat().st_size
    for blob, start in zip(params, np.cumsum([0] + [b.count for b in params])):
        assert np.array_equal(blob.data.ravel(), flat[start:start + blob.count])
    result = {
        "net": args.net, "floats": int(count), "caffemodel_bytes": size, "rounds": args.rounds,
        "median_s": {k: statistics.median(v) for k, v in timings.items()},
        "save_ratio": statistics.median(a / b for a, b in zip(timings["save"],
                                                              timings["numpy_save"])),
        "load_ratio": statistics.median(a / b for a, b in zip(timings["load"],
                                                              timings["numpy_load"])),
    }
    print(f"{args.net}: {count:,} floats, .caffemodel {size / 1e6:.1f} MB")
    print("median s: " + ", ".join(f"{k} {v:.3f}" for k, v in result["median_s"].items()))
    print(f"pyforge / NumPy: save {result['save_ratio']:.2f}, load {result['load_ratio']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
