"""Seeded random weights for deploy nets that have no trained weights in the repository.

Caffe's fillers leave biases, Scale's gamma/beta and PReLU's slopes constant and BatchNorm's
statistics at zero (which, through ``x / sqrt(0 + eps)``, blows a deep net up). ``seed_weights``
perturbs every constant parameter and sets each BatchNorm's statistics to those of the batch it
sees, stored with a non-trivial scale factor, so that activations keep a unit scale through any
depth and every parameter, bias included, shapes the outputs.
"""

from __future__ import annotations

import numpy as np

from pyforge.net.net import Net


def seed_weights(net: Net, rng: np.random.Generator,
                 inputs: dict[str, np.ndarray] | None = None) -> None:
    """Fill the net's inputs (with ``inputs``, or standard normal values), randomize its
    constant parameters, calibrate its BatchNorm statistics, and run it forward once (the
    blobs then hold the result)."""
    for name in net.inputs:
        blob = net.blobs[name]
        if inputs is not None:
            blob.data[...] = inputs[name]
        else:
            blob.data[...] = rng.standard_normal(blob.shape).astype(np.float32)
    for layer in net.layers:
        if layer.param.type == "BatchNorm":
            continue
        for blob in layer.blobs:
            values = blob.data.reshape(-1)
            if values.size and np.all(values == values[0]):
                values += rng.normal(0.0, 0.1, values.size).astype(np.float32)
    for layer_id, layer in enumerate(net.layers):
        if layer.param.type == "BatchNorm":
            _calibrate(layer, net.bottoms(layer_id)[0].data, rng)
        net.forward_from_to(layer_id, layer_id)


def _calibrate(layer, bottom: np.ndarray, rng: np.random.Generator) -> None:
    """Caffe stores sums scaled by a factor s (blobs[2]); the layer divides by it on use."""
    channels = bottom.reshape(bottom.shape[0], bottom.shape[1], -1).transpose(1, 0, 2)
    channels = channels.reshape(bottom.shape[1], -1)
    factor = np.float32(rng.uniform(0.5, 4.0))
    layer.blobs[0].data[...] = channels.mean(axis=1) * factor
    layer.blobs[1].data[...] = channels.var(axis=1) * factor
    layer.blobs[2].data[...] = factor
