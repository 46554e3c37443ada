"""Gradient-check cases of the Python layer (see grad_case.py): a layer class defined here."""

from __future__ import annotations

import numpy as np

from pyforge.layers.python_layer import PythonLayerBase
from tests.layers.grad_case import Case, NoGradient


class ScaledProductLayer(PythonLayerBase):
    """A Python layer with a learnable per-channel weight: ``y = s * w[c] * x`` and
    ``z = x * x``, with ``s`` read from param_str."""

    def setup(self, bottom, top):
        self.scale = np.float32(self.param_str or 1)
        self.blobs.add_blob(bottom[0].shape[1])
        self.blobs[0].data[...] = np.linspace(-1.5, 1.5, bottom[0].shape[1])

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)
        top[1].reshape(*bottom[0].shape)

    def _w(self, x):
        return self.blobs[0].data.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, bottom, top):
        x = bottom[0].data
        top[0].data[...] = self.scale * self._w(x) * x
        top[1].data[...] = x * x

    def backward(self, top, propagate_down, bottom):
        x = bottom[0].data
        dy, dz = top[0].diff, top[1].diff
        axes = (0,) + tuple(range(2, x.ndim))
        self.blobs[0].diff += (self.scale * dy * x).sum(axis=axes)
        if propagate_down[0]:
            bottom[0].diff[...] = self.scale * self._w(x) * dy + 2 * x * dz



def _python(param_str: str) -> str:
    return ('name: "py" type: "Python" bottom: "x" top: "y" top: "z" python_param { '
            'module: "tests.layers.grad_cases_python_layer" layer: "ScaledProductLayer" '
            f'param_str: "{param_str}" }}')


CASES: dict[str, list[Case] | NoGradient] = {
    "Python": [
        Case("scaled_product", _python("1.5"), ((2, 3, 2),)),
        Case("scaled_product_2d", _python("-0.5"), ((4, 2),), mode="total"),
    ],
}
