"""Gradient-check entries of the data layers in image_data.py and data_extra.py: none has a
gradient (no bottoms, or, for HDF5Output, no tops)."""

from __future__ import annotations

from collections.abc import Callable

from pyforge.layers import LAYERS
from tests.layers.grad_case import NoGradient


def _no_bottoms(type_name: str) -> Callable[[], None]:
    def verify() -> None:
        cls = LAYERS.get(type_name)
        assert cls.exact_num_bottom_blobs == 0, f"{type_name} takes bottoms"
        assert "backward" not in vars(cls), f"{type_name} defines a backward"

    return verify


def _writes_only() -> None:
    cls = LAYERS.get("HDF5Output")
    assert cls.exact_num_top_blobs == 0 and "backward" not in vars(cls)


CASES = {
    "ImageData": NoGradient("data layer: no bottoms; tops come from image files",
                            _no_bottoms("ImageData")),
    "MemoryData": NoGradient("data layer: no bottoms; tops come from arrays given in Python",
                             _no_bottoms("MemoryData")),
    "WindowData": NoGradient("data layer: no bottoms; tops come from windows of image files",
                             _no_bottoms("WindowData")),
    "HDF5Output": NoGradient("writes its bottoms to an HDF5 file: no tops, no gradient "
                             "(Caffe's Backward is empty)", _writes_only),
}
