"""Gradient-check entry of DenseImageData (pyforge/layers/dense_image_data.py)."""

from __future__ import annotations

from pyforge.layers import LAYERS
from tests.layers.grad_case import NoGradient


def _no_bottoms_no_backward() -> None:
    cls = LAYERS.get("DenseImageData")
    assert cls.exact_num_bottom_blobs == 0, "DenseImageData takes bottoms"
    assert "backward" not in vars(cls), "DenseImageData defines a backward"


CASES = {
    "DenseImageData": NoGradient("data layer: no bottoms; tops come from image and label "
                                 "files", _no_bottoms_no_backward),
}
