"""Gradient-check cases of the hdf5 layers (see grad_case.py)."""

from __future__ import annotations

from pyforge.layers import LAYERS
from tests.layers.grad_case import Case, NoGradient, no_bottoms


def _writes_only() -> None:
    cls = LAYERS.get("HDF5Output")
    assert cls.exact_num_top_blobs == 0 and "backward" not in vars(cls)


CASES: dict[str, list[Case] | NoGradient] = {
    "HDF5Data": NoGradient("data layer: no bottoms; tops come from HDF5 files",
                           no_bottoms("HDF5Data")),
    "HDF5Output": NoGradient("writes its bottoms to an HDF5 file: no tops, no gradient "
                             "(Caffe's Backward is empty)", _writes_only),
}
