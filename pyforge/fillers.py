"""Parameter fillers, keyed by Caffe's ``FillerParameter.type`` strings.

Each filler writes into ``blob.data`` in place, drawing from the generator it is given.
Caffe's own draws come from boost's mt19937, so values differ from Caffe's; the distributions
and their parameters are Caffe's exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .blob import Blob
from .errors import NetError
from .proto import caffe_pb2
from .registry import Registry

FillerFn = Callable[[Blob, caffe_pb2.FillerParameter, np.random.Generator], None]
FILLERS: Registry[FillerFn] = Registry("filler")


def fill(blob: Blob, param: caffe_pb2.FillerParameter, rng: np.random.Generator,
         where: str = "") -> None:
    """Fill ``blob`` as ``param`` says."""
    filler = FILLERS.get(param.type, where)
    if param.sparse != -1 and param.type != "gaussian":
        raise NetError(f"{where}: sparse is only supported by the gaussian filler, "
                       f"found sparse: {param.sparse} with type '{param.type}'")
    try:
        filler(blob, param, rng)
    except NetError as exc:
        raise NetError(f"{where}: {exc.message}" if where else exc.message) from None


def _fan(blob: Blob, param: caffe_pb2.FillerParameter, where: str) -> float:
    """Caffe's fan for xavier/msra: fan_in = count/shape[0], fan_out = count/shape[1]."""
    if blob.num_axes < 1 or blob.count == 0:
        raise NetError(f"{where} filler needs a non-empty blob, got shape {blob.shape}")
    fan_in = blob.count / blob.shape[0]
    # Caffe: with fewer than 2 axes, fan_out is the whole count.
    fan_out = blob.count / blob.shape[1] if blob.num_axes > 1 else blob.count
    norm = param.variance_norm
    if norm == caffe_pb2.FillerParameter.AVERAGE:
        return (fan_in + fan_out) / 2.0
    if norm == caffe_pb2.FillerParameter.FAN_OUT:
        return fan_out
    return fan_in


@FILLERS.register("constant")
def constant_filler(blob: Blob, param: caffe_pb2.FillerParameter,
                    rng: np.random.Generator) -> None:
    blob.data[...] = np.float32(param.value)


@FILLERS.register("uniform")
def uniform_filler(blob: Blob, param: caffe_pb2.FillerParameter,
                   rng: np.random.Generator) -> None:
    if param.min > param.max:
        raise NetError(f"uniform filler: min {param.min} > max {param.max}")
    blob.data[...] = rng.uniform(param.min, param.max, size=blob.shape)


@FILLERS.register("gaussian")
def gaussian_filler(blob: Blob, param: caffe_pb2.FillerParameter,
                    rng: np.random.Generator) -> None:
    if param.std <= 0:
        raise NetError(f"gaussian filler: std must be > 0, found {param.std}")
    values = rng.normal(param.mean, param.std, size=blob.shape)
    if param.sparse >= 0:
        # Caffe keeps each weight with probability sparse / num_outputs, where num_outputs is
        # shape[0], so that each output unit has on average `sparse` non-zero inputs.
        if blob.num_axes < 1:
            raise NetError("gaussian filler with sparse needs at least one axis")
        keep = min(param.sparse / blob.shape[0], 1.0)
        values *= rng.random(size=blob.shape) < keep
    blob.data[...] = values


@FILLERS.register("positive_unitball")
def positive_unitball_filler(blob: Blob, param: caffe_pb2.FillerParameter,
                             rng: np.random.Generator) -> None:
    if blob.num_axes < 1 or blob.count == 0:
        raise NetError(f"positive_unitball filler needs a non-empty blob, got {blob.shape}")
    values = rng.uniform(0.0, 1.0, size=(blob.shape[0], blob.count // blob.shape[0]))
    values /= values.sum(axis=1, keepdims=True)
    blob.data[...] = values.reshape(blob.shape)


@FILLERS.register("xavier")
def xavier_filler(blob: Blob, param: caffe_pb2.FillerParameter,
                  rng: np.random.Generator) -> None:
    n = _fan(blob, param, "xavier")
    scale = np.sqrt(3.0 / n)
    blob.data[...] = rng.uniform(-scale, scale, size=blob.shape)


@FILLERS.register("msra")
def msra_filler(blob: Blob, param: caffe_pb2.FillerParameter,
                rng: np.random.Generator) -> None:
    n = _fan(blob, param, "msra")
    blob.data[...] = rng.normal(0.0, np.sqrt(2.0 / n), size=blob.shape)


@FILLERS.register("bilinear")
def bilinear_filler(blob: Blob, param: caffe_pb2.FillerParameter,
                    rng: np.random.Generator) -> None:
    """Weights for bilinear upsampling with a Deconvolution layer (square 4-D kernels)."""
    if blob.num_axes != 4 or blob.shape[2] != blob.shape[3]:
        raise NetError(f"bilinear filler needs a 4-D blob with a square kernel, got {blob.shape}")
    k = blob.shape[3]
    f = np.ceil(k / 2.0)
    c = (k - 1) / (2.0 * f)
    x = np.arange(k)
    line = 1.0 - np.abs(x / f - c)
    kernel = np.outer(line, line)  # rows are y, columns x
    blob.data[...] = kernel
