"""Gradient-check cases of the image data layers (see grad_case.py)."""

from __future__ import annotations

from pyforge.layers import LAYERS
from tests.layers.grad_case import Case, NoGradient, no_bottoms


def _no_bottoms_no_backward() -> None:
    cls = LAYERS.get("DenseImageData")
    assert cls.exact_num_bottom_blobs == 0, "DenseImageData takes bottoms"
    assert "backward" not in vars(cls), "DenseImageData defines a backward"


CASES: dict[str, list[Case] | NoGradient] = {
    "ImageData": NoGradient("data layer: no bottoms; tops come from image files",
                            no_bottoms("ImageData")),
    "WindowData": NoGradient("data layer: no bottoms; tops come from windows of image files",
                             no_bottoms("WindowData")),
    "DenseImageData": NoGradient("data layer: no bottoms; tops come from image and label "
                                 "files", _no_bottoms_no_backward),
}
