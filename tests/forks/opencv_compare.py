"""Compare pyforge's forward pass with OpenCV 4's dnn module on the same net, weights and input.

Usage (see tests/forks/test_opencv_harness.py)::

    results = run_both(tmp_path, PROTOTXT, {"data": array}, ["conv1", "prob"], seed=3)
    assert_close(results)

``run_both`` builds the deploy prototxt in pyforge (TEST phase), gives every parameter blob
seeded random values (:func:`randomize_params`, with per-layer-type overrides), writes them
as a binary .caffemodel with pyforge's own writer, loads prototxt + caffemodel with
``cv2.dnn.readNetFromCaffe`` and runs both forward passes on the same inputs. Outputs are
named by blob; OpenCV addresses them by the name of the layer that writes them, so a blob
written in place (``conv1`` after ``conv1/relu``) is given as ``("conv1", "conv1/relu")``:
pyforge's blob, OpenCV's layer.

A blob matches when ``max |pyforge - opencv| <= 1e-3 * scale``, where ``scale`` is the largest
magnitude in either result (an all-zero pair must be equal within 1e-9).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pyforge.blob import Blob
from pyforge.layers import Layer
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto, write_binary_proto

cv2 = pytest.importorskip("cv2", reason="the OpenCV comparison needs opencv-python-headless<5")

#: Relative tolerance against the blob's scale (the issue's "1e-3 of the blob's scale").
RELATIVE_TOLERANCE = 1e-3

#: A per-layer-type parameter initialiser: fills ``layer.blobs`` from ``rng``.
Init = Callable[[Layer, np.random.Generator], None]


def _fan_in_normal(layer: Layer, rng: np.random.Generator) -> None:
    """Weights ~ N(0, 1/fan_in) (so activations keep their scale); 1-D blobs ~ N(0, 0.1)."""
    for blob in layer.blobs:
        shape = blob.shape
        if len(shape) >= 2:
            fan_in = max(1, int(np.prod(shape[1:])))
            values = rng.standard_normal(shape) / np.sqrt(fan_in)
        else:
            values = 0.1 * rng.standard_normal(shape)
        blob.data[...] = values.astype(np.float32)


def _batch_norm(layer: Layer, rng: np.random.Generator) -> None:
    """Caffe's BatchNorm: mean, variance (positive), and the moving-average factor."""
    channels = layer.blobs[0].shape
    layer.blobs[0].data[...] = (0.5 * rng.standard_normal(channels)).astype(np.float32)
    layer.blobs[1].data[...] = rng.uniform(0.5, 1.5, channels).astype(np.float32)
    layer.blobs[2].data[...] = np.float32(rng.uniform(0.5, 2.0))


def _positive(layer: Layer, rng: np.random.Generator) -> None:
    for blob in layer.blobs:
        blob.data[...] = rng.uniform(0.5, 2.0, blob.shape).astype(np.float32)


def _scale(layer: Layer, rng: np.random.Generator) -> None:
    """Scale factors near 1 (and a small bias), so that activations keep their size through
    BatchNorm + Scale + ReLU stacks instead of collapsing to ties at zero."""
    layer.blobs[0].data[...] = rng.uniform(0.5, 1.5, layer.blobs[0].shape).astype(np.float32)
    for blob in layer.blobs[1:]:
        blob.data[...] = (0.1 * rng.standard_normal(blob.shape)).astype(np.float32)


#: Initialisers by layer type; anything else gets :func:`_fan_in_normal`.
DEFAULT_INITS: dict[str, Init] = {
    "BatchNorm": _batch_norm,
    "Normalize": _positive,
    "Scale": _scale,
}


def randomize_params(net: Net, rng: np.random.Generator,
                     inits: Mapping[str, Init] | None = None) -> None:
    """Give every parameter blob of ``net`` seeded random values, layer by layer in order."""
    table = {**DEFAULT_INITS, **(inits or {})}
    for layer in net.layers:
        if layer.blobs:
            table.get(layer.type, _fan_in_normal)(layer, rng)


@dataclass
class Result:
    """One compared blob."""

    name: str
    ours: np.ndarray
    theirs: np.ndarray

    @property
    def scale(self) -> float:
        biggest = [float(np.abs(a).max()) for a in (self.ours, self.theirs) if a.size]
        return max(biggest, default=0.0)

    @property
    def error(self) -> float:
        if self.ours.shape != self.theirs.shape:
            return float("inf")
        return float(np.abs(self.ours.astype(np.float64) - self.theirs).max(initial=0.0))

    @property
    def ok(self) -> bool:
        return self.error <= max(RELATIVE_TOLERANCE * self.scale, 1e-9)

    def __str__(self) -> str:
        if self.ours.shape != self.theirs.shape:
            return f"{self.name}: shape {self.ours.shape} (pyforge) vs {self.theirs.shape} (OpenCV)"
        return (f"{self.name}: max |diff| {self.error:.3g} vs scale {self.scale:.3g} "
                f"({'ok' if self.ok else 'MISMATCH'})")


def build_pyforge_net(prototxt: str, path: Path, seed: int,
                      inits: Mapping[str, Init] | None = None) -> Net:
    """The net of ``prototxt`` (TEST phase) with seeded random parameters."""
    param = parse_text_proto(prototxt, caffe_pb2.NetParameter(), str(path))
    param.state.phase = caffe_pb2.TEST
    net = Net(param, np.random.default_rng(seed), logging.getLogger("opencv_compare"),
              source_file=str(path))
    randomize_params(net, np.random.default_rng(seed), inits)
    return net


def opencv_net(prototxt_path: Path, caffemodel_path: Path):
    """OpenCV's net on its reference CPU path, without layer fusion or Winograd (so each
    requested blob is the layer's own output, computed directly)."""
    net = cv2.dnn.readNetFromCaffe(str(prototxt_path), str(caffemodel_path))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableFusion(False)
    net.enableWinograd(False)
    return net


def run_both(tmp_path: Path, prototxt: str, inputs: Mapping[str, np.ndarray],
             outputs: Sequence[str | tuple[str, str]], seed: int = 0,
             inits: Mapping[str, Init] | None = None) -> list[Result]:
    """Forward ``inputs`` through pyforge and OpenCV; one :class:`Result` per output (a blob
    name, or a (pyforge blob, OpenCV layer) pair for blobs written in place)."""
    pairs = [(name, name) if isinstance(name, str) else name for name in outputs]
    prototxt_path = tmp_path / "net.prototxt"
    prototxt_path.write_text(prototxt)
    net = build_pyforge_net(prototxt, prototxt_path, seed, inits)
    model_path = tmp_path / "net.caffemodel"
    write_binary_proto(model_path, net.to_proto())

    blobs: Mapping[str, Blob] = net.blobs
    for name, array in inputs.items():
        blobs[name].reshape(array.shape)
        blobs[name].data[...] = array
    net.forward_from_to()
    ours = {blob: blobs[blob].data.copy() for blob, _ in pairs}

    theirs_net = opencv_net(prototxt_path, model_path)
    for name, array in inputs.items():
        theirs_net.setInput(np.ascontiguousarray(array, dtype=np.float32), name)
    theirs = theirs_net.forward([layer for _, layer in pairs])
    return [Result(blob, ours[blob], np.asarray(their)) for (blob, _), their in zip(pairs, theirs)]


def assert_close(results: Sequence[Result]) -> None:
    """Every blob within 1e-3 of its scale; the message lists every compared blob."""
    report = "\n".join(str(result) for result in results)
    assert all(result.ok for result in results), f"pyforge vs OpenCV:\n{report}"
