"""The export's proof: ONNX Runtime and pyforge's forward on the same seeded random input.

Each net output is compared over all its elements; the error reported is the largest absolute
difference divided by the output's scale (its largest absolute value in pyforge's forward), and
a NaN or infinity where the other engine has a finite value counts as an infinite error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ExportError, PyforgeError
from ..net.net import Net
from ..rng import make_rng

#: The largest error, relative to an output's scale, that the check accepts.
TOLERANCE = 1e-4


@dataclass
class OutputComparison:
    name: str
    shape: tuple[int, ...]
    scale: float
    error: float  # the largest absolute difference

    @property
    def relative(self) -> float:
        return self.error / self.scale if self.scale > 0 else self.error


def _index_range(net: Net, blob_id: int) -> int | None:
    """The number of rows of the smallest Embed table fed by ``blob_id`` (directly or through
    Split), or None: such inputs must be integer indices in range."""
    limits = []
    blobs = {blob_id}
    for layer_id, layer in enumerate(net.layers):
        if not blobs.intersection(net.bottom_ids[layer_id]):
            continue
        if layer.param.type == "Split":
            blobs.update(net.top_ids[layer_id])
        elif layer.param.type == "Embed":
            limits.append(layer.input_dim)
    return min(limits) if limits else None


def random_inputs(net: Net, seed: int, batch: int | None = None) -> dict[str, np.ndarray]:
    """Seeded input for every net input: standard normal values, or integer indices for the
    inputs of Embed layers. ``batch`` replaces axis 0 of every input."""
    rng = make_rng(seed)
    feeds = {}
    for blob_id in net.input_ids:
        shape = net.blob_list[blob_id].shape
        if batch is not None and shape:
            shape = (batch, *shape[1:])
        limit = _index_range(net, blob_id)
        if limit is None:
            values = rng.standard_normal(shape)
        else:
            values = rng.integers(0, limit, shape)
        feeds[net.blob_names[blob_id]] = values.astype(np.float32)
    return feeds


def pyforge_forward(net: Net, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """pyforge's outputs for ``feeds`` (reshaping the net when a batch size changed)."""
    for name, values in feeds.items():
        blob = net.blobs[name]
        if blob.shape != values.shape:
            blob.reshape(values.shape)
        blob.data[...] = values
    net.forward_loss()
    return {name: net.blobs[name].data.copy() for name in net.outputs}


def onnxruntime_forward(path: str, feeds: dict[str, np.ndarray],
                        names: list[str]) -> dict[str, np.ndarray]:
    """One ONNX Runtime session on the CPU; its errors become one line."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        values = session.run(names, feeds)
    except Exception as exc:  # ORT raises its own exception types for load and run errors
        message = " ".join(str(exc).split())
        raise ExportError(f"ONNX Runtime {ort.__version__} cannot run the exported model: "
                          f"{message}") from None
    return dict(zip(names, values))


def compare(expected: np.ndarray, got: np.ndarray, name: str) -> OutputComparison:
    if got.shape != expected.shape:
        return OutputComparison(name, expected.shape, 0.0, float("inf"))
    finite = np.isfinite(expected) & np.isfinite(got)
    same_special = (~np.isfinite(expected)) & (
        (expected == got) | (np.isnan(expected) & np.isnan(got)))
    if not np.all(finite | same_special):
        return OutputComparison(name, expected.shape, 0.0, float("inf"))
    ref = expected[finite].astype(np.float64)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    diff = np.abs(got[finite].astype(np.float64) - ref)
    return OutputComparison(name, expected.shape, scale, float(diff.max()) if diff.size else 0.0)


def check_export(net: Net, path: str, seed: int,
                 batch: int | None = None) -> list[OutputComparison]:
    """Compare every net output of ONNX Runtime on ``path`` with pyforge's forward, at the
    prototxt's batch size or at ``batch``."""
    feeds = random_inputs(net, seed, batch)
    try:
        expected = pyforge_forward(net, feeds)
    except PyforgeError as exc:
        raise ExportError(f"with --dynamic-batch the check runs batch size {batch} too, and "
                          f"the net does not run at that size in pyforge: {exc}") from None
    got = onnxruntime_forward(path, feeds, list(expected))
    return [compare(expected[name], got[name], name) for name in expected]
