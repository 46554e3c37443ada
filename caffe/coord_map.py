"""pycaffe's ``caffe.coord_map``: how the spatial coordinates of one NetSpec top relate to those
of another, and ``crop()``, which aligns two tops with a Crop layer (FCN's skip layers).

A coordinate map ``(axis, a, b)`` says that position ``x`` of a layer's input lies at position
``a * x + b`` of its output, along the axes from ``axis + 1`` on (``a`` and ``b`` are arrays with
one entry per spatial axis, or scalars that apply to all). For the layers that move pixels:

- Convolution, Pooling, Im2col (kernel ``k``, dilation ``d``, stride ``s``, pad ``p``): the output
  pixel ``y`` is centred on input pixel ``s * y - p + (k_eff - 1) / 2`` with
  ``k_eff = (k - 1) * d + 1``, so ``a = 1 / s`` and ``b = (p - (k_eff - 1) / 2) / s``;
- Deconvolution, the reverse: ``a = s`` and ``b = (k_eff - 1) / 2 - p``;
- Crop (``axis``, ``offset``): ``a = 1``, ``b = -offset``, on the axes from ``axis``;
- element-wise layers (:data:`PASS_THROUGH_LAYERS`): the identity, on any axis.

Other layers (InnerProduct, global pooling, ...) have no map: a walk through them stops there.
:func:`coord_map_from_to` walks back from both tops to a common ancestor, composing maps on
the way; it raises RuntimeError when the tops share no spatially connected ancestor and
:class:`AxisMismatchException` when the maps act on different axes. :func:`crop` raises
AssertionError when the map is not a whole-pixel shift into the reference top.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from .net_spec import Function, Top, layers

__all__ = ["AxisMismatchException", "PASS_THROUGH_LAYERS", "UndefinedMapException", "compose",
           "conv_params", "coord_map", "coord_map_from_to", "crop", "crop_params", "inverse"]

#: Layers whose output pixel i is computed from input pixel i only.
PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Log",
                       "LRN", "Exp", "MVN", "Power", "ReLU", "PReLU", "Scale", "Sigmoid",
                       "Split", "TanH", "Threshold"]

_CONVOLUTIONS = ("Convolution", "Pooling", "Im2col")
_LEGACY_FIELDS = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w")


class UndefinedMapException(Exception):
    """A layer that has no coordinate map (it does not keep pixels in place)."""


class AxisMismatchException(Exception):
    """Two maps that act on different axes cannot be composed."""


class CoordMap(NamedTuple):
    """``(axis, a, b)``: input position ``x`` lies at output position ``a * x + b``; ``axis``
    None for maps that act the same on every axis."""

    axis: int | None
    a: np.ndarray | float
    b: np.ndarray | float


IDENTITY = CoordMap(None, 1, 0)


def _spatial_map(axis: int, a, b) -> CoordMap:
    """A map of a spatial layer, its scale and shift with one entry per spatial axis."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return CoordMap(axis, a.copy(), b.copy())


def _layer_params(fn: Function, message: str) -> dict:
    """The layer's settings: its ``<message>`` dict when given, else its keyword arguments."""
    nested = fn.params.get(message)
    return nested if isinstance(nested, dict) else fn.params


def _per_axis(value) -> np.ndarray:
    return np.array(value, ndmin=1)


def conv_params(fn: Function) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """``(axis, stride, effective kernel size, pad)`` of a Convolution, Deconvolution, Im2col
    or Pooling layer, each per spatial axis (or one value for all)."""
    message = "pooling_param" if fn.type_name == "Pooling" else "convolution_param"
    params = _layer_params(fn, message)
    if params.get("global_pooling"):
        raise UndefinedMapException(f"{fn.type_name} with global_pooling has no coordinate map")
    legacy = sorted(set(_LEGACY_FIELDS) & set(params))
    if legacy:
        # As pycaffe: only the per-axis fields (kernel_size, stride, pad) are read.
        raise AssertionError(f"coordinate maps do not support the legacy _h/_w fields "
                             f"({', '.join(legacy)}); use kernel_size, stride and pad lists")
    if "kernel_size" not in params:
        raise KeyError(f"{fn.type_name} layer without kernel_size")
    kernel = _per_axis(params["kernel_size"])
    dilation = _per_axis(params.get("dilation", 1))
    return (int(params.get("axis", 1)), _per_axis(params.get("stride", 1)),
            (kernel - 1) * dilation + 1, _per_axis(params.get("pad", 0)))


def crop_params(fn: Function) -> tuple[int, np.ndarray]:
    """``(axis, offset)`` of a Crop layer; the axis defaults to 2 (height of N x C x H x W)."""
    params = _layer_params(fn, "crop_param")
    return int(params.get("axis", 2)), _per_axis(params.get("offset", 0))


def coord_map(fn: Function) -> CoordMap:
    """The map from the coordinates of ``fn``'s (first) bottom to those of its tops."""
    if fn.type_name in _CONVOLUTIONS:
        axis, stride, kernel, pad = conv_params(fn)
        return _spatial_map(axis, 1 / stride, (pad - (kernel - 1) / 2) / stride)
    if fn.type_name == "Deconvolution":
        axis, stride, kernel, pad = conv_params(fn)
        return _spatial_map(axis, stride, (kernel - 1) / 2 - pad)
    if fn.type_name in PASS_THROUGH_LAYERS:
        return IDENTITY
    if fn.type_name == "Crop":
        axis, offset = crop_params(fn)
        # Crop names the first cropped axis; a map names the last axis it leaves alone.
        return _spatial_map(axis - 1, 1, -offset)
    raise UndefinedMapException(f"{fn.type_name} layers have no coordinate map")


def compose(base_map, next_map) -> CoordMap:
    """The map that applies ``next_map`` first, then ``base_map``: scales multiply, and
    ``next_map``'s shift is scaled by ``base_map``'s scale."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is not None and ax2 is not None and ax1 != ax2:
        raise AxisMismatchException(f"coordinate maps on axis {ax1} and axis {ax2}")
    return CoordMap(ax2 if ax1 is None else ax1, a1 * a2, a1 * b2 + b1)


def inverse(coord_map) -> CoordMap:
    """The map back: output position to input position."""
    axis, a, b = coord_map
    return CoordMap(axis, 1 / a, -b / a)


def _mappable_bottoms(top: Top) -> tuple:
    """The bottoms whose coordinates map to ``top``'s: all of them, except for Crop, whose
    second bottom only gives the size to crop to."""
    inputs = top.fn.inputs
    return inputs[:1] if top.fn.type_name == "Crop" else inputs


def _ancestor_maps(top: Top) -> dict[Top, CoordMap]:
    """Every top that ``top`` is spatially computed from (itself included), breadth first,
    with the map from that top's coordinates to ``top``'s."""
    maps = {top: IDENTITY}
    queue = deque([top])
    while queue:
        current = queue.popleft()
        bottoms = _mappable_bottoms(current)
        if not bottoms:
            continue
        try:
            step = coord_map(current.fn)
        except UndefinedMapException:
            continue
        for bottom in bottoms:
            if bottom not in maps:
                maps[bottom] = compose(maps[current], step)
                queue.append(bottom)
    return maps


def coord_map_from_to(top_from: Top, top_to: Top) -> CoordMap:
    """The map from ``top_from``'s coordinates to ``top_to``'s, through their nearest common
    ancestor (to ``top_to``). RuntimeError when they have none through spatial layers."""
    from_maps = _ancestor_maps(top_from)
    for ancestor, to_map in _ancestor_maps(top_to).items():
        if ancestor in from_maps:
            return compose(to_map, inverse(from_maps[ancestor]))
    raise RuntimeError("Could not compute map between tops; are they connected by spatial "
                       "layers?")


def crop(top_from: Top, top_to: Top) -> Top:
    """A Crop layer that cuts ``top_from`` to the size and position of ``top_to`` (which must
    be a whole-pixel window inside it, at the same scale)."""
    axis, a, b = coord_map_from_to(top_from, top_to)
    a, b = np.asarray(a), np.asarray(b)
    if not np.all(a == 1):
        raise AssertionError(f"scale mismatch on crop (a = {a})")
    if not np.all(b <= 0):
        raise AssertionError(f"cannot crop negative offset (b = {b})")
    if not np.all(np.round(b) == b):
        raise AssertionError(f"cannot crop noninteger offset (b = {b})")
    offset = [int(v) for v in np.atleast_1d(-np.round(b))]
    # Only element-wise layers between the tops (no axis): crop from the height on.
    first_axis = 2 if axis is None else axis + 1
    return layers.Crop(top_from, top_to, crop_param={"axis": first_axis, "offset": offset})
