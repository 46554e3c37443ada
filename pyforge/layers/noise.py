"""Dropout: random masks at train time (and the forks' Monte-Carlo options).
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..rng import child_rng
from .base import TRAIN, NeuronLayer, register_layer


@register_layer("Dropout", "DROPOUT")
class DropoutLayer(NeuronLayer):
    """Caffe type ``Dropout``: TRAIN keeps each unit with probability 1 - p and scales it by
    1 / (1 - p); TEST is the identity. Reads dropout_param.dropout_ratio (0.5) and two forks'
    fields:

    - ``scale_train: false`` (Faster R-CNN / R-FCN forks): TRAIN keeps units unscaled and TEST
      scales by 1 - p instead (the same expectation, as those forks' models were trained);
    - ``sample_weights_test: true`` (Bayesian SegNet, ENet): TEST drops units too, as TRAIN
      does (Monte-Carlo dropout; each forward pass draws a new mask).

    The mask comes from the layer's own generator, seeded from the run's ``random_seed``.
    """

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.dropout_param
        ratio = p.dropout_ratio
        if not 0.0 <= ratio < 1.0:
            raise self.error(f"dropout_ratio must be in [0, 1), found {ratio}")
        self.threshold = ratio
        self.sampling = self.phase == TRAIN or p.sample_weights_test
        # The kept units' factor when sampling, and the factor of the deterministic pass.
        if p.scale_train:
            self.scale, self.test_factor = np.float32(1.0 / (1.0 - ratio)), None
        else:
            self.scale, self.test_factor = np.float32(1.0), np.float32(1.0 - ratio)
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
        if self.sampling:
            keep = self.rng.random(size=self.mask.shape, dtype=np.float32) >= self.threshold
            np.multiply(keep, self.scale, out=self.mask)
            np.multiply(bottom[0].data, self.mask, out=top[0].data)
        elif self.test_factor is not None:
            np.multiply(bottom[0].data, self.test_factor, out=top[0].data)
        elif top[0] is not bottom[0]:
            top[0].data[...] = bottom[0].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        if self.sampling:
            np.multiply(top[0].diff, self.mask, out=bottom[0].diff)
        elif self.test_factor is not None:
            np.multiply(top[0].diff, self.test_factor, out=bottom[0].diff)
        elif top[0] is not bottom[0]:
            bottom[0].diff[...] = top[0].diff
