"""Gradient-check cases of the image data layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient, no_bottoms

CASES: dict[str, list[Case] | NoGradient] = {
    "ImageData": NoGradient("data layer: no bottoms; tops come from image files",
                            no_bottoms("ImageData")),
    "WindowData": NoGradient("data layer: no bottoms; tops come from windows of image files",
                             no_bottoms("WindowData")),
}
