"""Gradient-check cases of Interp and Upsample (pyforge/layers/resample.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case

# Max-pooling indices of a 2x2, stride-2 pooling of two 4x6 planes (one per 2x2 block), as the
# Pooling layer's mask top holds them: the positions Upsample writes to are distinct.
POOL_MASK = (7, 8, 4, 12, 15, 23, 7, 9, 11, 19, 15, 22)
# The same for two 3x6 planes (the last row of blocks is one row high).
ODD_POOL_MASK = (1, 8, 4, 12, 14, 17, 6, 3, 11, 13, 15, 16)


def _interp(extra: str) -> str:
    return f'type: "Interp" bottom: "x" top: "y" interp_param {{ {extra} }}'


def _upsample(extra: str) -> str:
    return f'type: "Upsample" bottom: "x" bottom: "mask" top: "y" upsample_param {{ {extra} }}'


CASES: dict[str, list[Case]] = {
    "Interp": [
        Case("zoom2", _interp("zoom_factor: 2"), ((2, 2, 3, 4),)),
        Case("shrink2", _interp("shrink_factor: 2"), ((1, 2, 5, 6),)),
        Case("height_width", _interp("height: 5 width: 3"), ((1, 2, 3, 4),)),
        Case("crop_zoom", _interp("zoom_factor: 2 pad_beg: -1 pad_end: -1"), ((1, 2, 5, 4),)),
        Case("shrink_then_zoom", _interp("shrink_factor: 2 zoom_factor: 3"), ((1, 1, 5, 5),)),
        Case("crop_copy", _interp("height: 3 width: 2 pad_beg: -1"), ((1, 2, 4, 3),)),
    ],
    "Upsample": [
        Case("scale2", _upsample("scale: 2"), ((1, 2, 2, 3), (1, 2, 2, 3)), check_bottom=(0,),
             fixed={1: POOL_MASK}),
        Case("upsample_hw", _upsample("upsample_h: 4 upsample_w: 6"),
             ((1, 2, 2, 3), (1, 2, 2, 3)), check_bottom=(0,), fixed={1: POOL_MASK}),
        Case("pad_out", _upsample("scale: 2 pad_out_h: true"), ((1, 2, 2, 3), (1, 2, 2, 3)),
             check_bottom=(0,), fixed={1: ODD_POOL_MASK}),
    ],
}
