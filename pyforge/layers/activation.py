"""Elementwise neuron layers: ReLU, Sigmoid, TanH, Dropout."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels import activation as K
from ..rng import child_rng
from .base import TRAIN, NeuronLayer, register_layer


@register_layer("ReLU", "RELU")
class ReLULayer(NeuronLayer):
    """Caffe type ``ReLU``: ``y = max(x, 0) + negative_slope * min(x, 0)``; may run in place."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        slope = np.float32(self.param.relu_param.negative_slope)
        K.relu_forward(bottom[0].data.reshape(-1), slope, top[0].data.reshape(-1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            slope = np.float32(self.param.relu_param.negative_slope)
            # In place, bottom data is the output; it has the input's sign, so the mask holds.
            K.relu_backward(bottom[0].data.reshape(-1), top[0].diff.reshape(-1), slope,
                            bottom[0].diff.reshape(-1))


@register_layer("Sigmoid", "SIGMOID")
class SigmoidLayer(NeuronLayer):
    """Caffe type ``Sigmoid``: ``y = 1 / (1 + exp(-x))``; backward uses the output."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.sigmoid_forward(bottom[0].data.reshape(-1), top[0].data.reshape(-1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            K.sigmoid_backward(top[0].data.reshape(-1), top[0].diff.reshape(-1),
                               bottom[0].diff.reshape(-1))


@register_layer("TanH", "TANH")
class TanHLayer(NeuronLayer):
    """Caffe type ``TanH``: ``y = tanh(x)``; backward uses the output."""

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        K.tanh_forward(bottom[0].data.reshape(-1), top[0].data.reshape(-1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            K.tanh_backward(top[0].data.reshape(-1), top[0].diff.reshape(-1),
                            bottom[0].diff.reshape(-1))


@register_layer("Dropout", "DROPOUT")
class DropoutLayer(NeuronLayer):
    """Caffe type ``Dropout``: TRAIN keeps each unit with probability 1 - p and scales it by
    1 / (1 - p); TEST is the identity. Reads dropout_param.dropout_ratio (0.5).

    The mask comes from the layer's own generator, seeded from the run's ``random_seed``.
    """

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        ratio = self.param.dropout_param.dropout_ratio
        if not 0.0 <= ratio < 1.0:
            raise self.error(f"dropout_ratio must be in [0, 1), found {ratio}")
        self.threshold = ratio
        self.scale = np.float32(1.0 / (1.0 - ratio))
        self.rng = child_rng(self.ctx.rng)
        self.mask = np.empty(0, dtype=np.float32)

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        super().reshape(bottom, top)
        if self.mask.shape != bottom[0].shape:
            self.mask = np.empty(bottom[0].shape, dtype=np.float32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if self.phase == TRAIN:
            keep = self.rng.random(size=self.mask.shape, dtype=np.float32) >= self.threshold
            np.multiply(keep, self.scale, out=self.mask)
            np.multiply(bottom[0].data, self.mask, out=top[0].data)
        elif top[0] is not bottom[0]:
            top[0].data[...] = bottom[0].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        if self.phase == TRAIN:
            np.multiply(top[0].diff, self.mask, out=bottom[0].diff)
        elif top[0] is not bottom[0]:
            bottom[0].diff[...] = top[0].diff
