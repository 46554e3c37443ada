"""Gradient-check cases of the shape layers (see grad_case.py)."""

from __future__ import annotations

from tests.layers.grad_case import Case, NoGradient


def _crop(extra: str = "") -> str:
    return f'name: "crop" type: "Crop" bottom: "x" bottom: "ref" top: "y" crop_param {{ {extra} }}'


def _shuffle(group: int) -> str:
    return (f'type: "ShuffleChannel" bottom: "x" top: "y" '
            f"shuffle_channel_param {{ group: {group} }}")


CASES: dict[str, list[Case] | NoGradient] = {
    # --- structural ----------------------------------------------------------------------------
    "Split": [
        Case("two", 'type: "Split" bottom: "x" top: "a" top: "b"', ((2, 3, 2),)),
        Case("three", 'type: "Split" bottom: "x" top: "a" top: "b" top: "c"', ((2, 3),)),
        Case("one", 'type: "Split" bottom: "x" top: "a"', ((2, 3),)),
    ],
    "Concat": [
        Case("axis1", 'type: "Concat" bottom: "a" bottom: "b" top: "c"',
             ((2, 2, 2, 2), (2, 3, 2, 2))),
        Case("axis0", 'type: "Concat" bottom: "a" bottom: "b" top: "c" concat_param '
             "{ axis: 0 }", ((1, 3, 2), (2, 3, 2))),
        Case("axis-1_three", 'type: "Concat" bottom: "a" bottom: "b" bottom: "c" top: "d" '
             "concat_param { axis: -1 }", ((2, 2, 1), (2, 2, 3), (2, 2, 2))),
        Case("concat_dim", 'type: "Concat" bottom: "a" bottom: "b" top: "c" concat_param '
             "{ concat_dim: 0 }", ((1, 3), (2, 3))),
        Case("second_only", 'type: "Concat" bottom: "a" bottom: "b" top: "c"',
             ((2, 2, 2), (2, 1, 2)), check_bottom=(1,)),
        Case("single_bottom", 'type: "Concat" bottom: "a" top: "c"', ((2, 3),)),
    ],
    "Slice": [
        Case("points", 'type: "Slice" bottom: "x" top: "a" top: "b" top: "c" slice_param '
             "{ slice_point: 1 slice_point: 3 }", ((2, 5, 2),)),
        Case("even_axis0", 'type: "Slice" bottom: "x" top: "a" top: "b" slice_param '
             "{ axis: 0 }", ((4, 3),)),
        Case("axis-1", 'type: "Slice" bottom: "x" top: "a" top: "b" slice_param '
             "{ axis: -1 slice_point: 2 }", ((2, 2, 3),)),
        Case("slice_dim", 'type: "Slice" bottom: "x" top: "a" top: "b" slice_param '
             "{ slice_dim: 2 }", ((2, 1, 4),)),
        Case("single_top", 'type: "Slice" bottom: "x" top: "a"', ((2, 3),)),
    ],
    "Flatten": [
        Case("default", 'type: "Flatten" bottom: "x" top: "y"', ((2, 3, 2, 2),)),
        Case("axis_end", 'type: "Flatten" bottom: "x" top: "y" flatten_param '
             "{ axis: 1 end_axis: 2 }", ((2, 3, 2, 2),)),
    ],
    "Reshape": [
        Case("copy_infer", 'type: "Reshape" bottom: "x" top: "y" reshape_param '
             "{ shape { dim: 0 dim: -1 } }", ((2, 3, 2, 2),)),
        Case("axis_num_axes", 'type: "Reshape" bottom: "x" top: "y" reshape_param '
             "{ shape { dim: 6 } axis: 1 num_axes: 2 }", ((2, 3, 2, 2),)),
    ],
    "Silence": [
        # No tops, so the objective is 0: the gradient must be exactly 0 (Caffe's Silence
        # Backward writes zeros into every bottom diff that needs one).
        Case("two_bottoms", 'type: "Silence" bottom: "a" bottom: "b"', ((2, 3), (4,)),
             mode="total"),
        Case("first_only", 'type: "Silence" bottom: "a" bottom: "b"', ((2, 3), (4,)),
             check_bottom=(0,), mode="total"),
    ],
    "Crop": [
        Case("default_axis2", _crop(), ((2, 3, 5, 4), (2, 3, 3, 2)), check_bottom=(0,)),
        Case("one_offset", _crop("axis: 1 offset: 1"), ((2, 4, 4, 4), (2, 2, 3, 2)),
             check_bottom=(0,)),
        Case("offsets_each", _crop("axis: -2 offset: 2 offset: 1"), ((2, 3, 5, 4), (1, 1, 2, 3)),
             check_bottom=(0,)),
        # The reference only gives a shape: its gradient is exactly zero.
        Case("reference_gets_zero", _crop("axis: 0"), ((3, 4), (2, 2)), mode="total"),
    ],
    "Tile": [
        Case("axis1", 'type: "Tile" bottom: "x" top: "y" tile_param { tiles: 3 }', ((2, 3, 2),)),
        Case("axis0", 'type: "Tile" bottom: "x" top: "y" tile_param { axis: 0 tiles: 2 }',
             ((2, 3),)),
        Case("axis-1", 'type: "Tile" bottom: "x" top: "y" tile_param { axis: -1 tiles: 4 }',
             ((2, 2, 2),)),
    ],
    "ShuffleChannel": [
        Case("group2", _shuffle(2), ((2, 4, 2, 3),)),
        Case("group3_of_6", _shuffle(3), ((1, 6, 2, 2),)),
        Case("group1", _shuffle(1), ((2, 3, 2),)),
    ],
    "Permute": [
        Case("nhwc", 'type: "Permute" bottom: "x" top: "y" permute_param { order: 0 order: 2 '
             "order: 3 order: 1 }", ((2, 3, 4, 5),)),
        Case("partial_order", 'type: "Permute" bottom: "x" top: "y" permute_param '
             "{ order: 2 order: 0 }", ((2, 3, 4),)),
    ],
}
