"""Layers that move, join, cut, repeat, reduce or rank data: Input, Parameter, Split, Silence,
Flatten, Reshape, Concat, Slice, Crop, Tile, Eltwise, Reduction and ArgMax."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ...proto import caffe_pb2
from ..builder import GraphBuilder, Site
from ..registry import converts

E = caffe_pb2.EltwiseParameter
R = caffe_pb2.ReductionParameter
INT64_MIN = np.iinfo(np.int64).min


@converts("Input", "Silence")
def no_nodes(g: GraphBuilder, site: Site) -> None:
    """Input tops are the graph's inputs; Silence only keeps blobs from being outputs."""


@converts("Parameter")
def parameter(g: GraphBuilder, site: Site) -> None:
    g.add("Identity", [g.constant(site.layer.blobs[0].data, f"{site.name}/value")],
          [site.outputs[0]], layer=site.name)


@converts("Split")
def split(g: GraphBuilder, site: Site) -> None:
    for out in site.outputs:
        g.add("Identity", [site.inputs[0]], [out], layer=site.name)


@converts("Flatten")
def flatten(g: GraphBuilder, site: Site) -> None:
    """Axes [axis, end_axis] become one (ONNX Flatten only makes 2-D): a Reshape that copies
    the axes before (0), infers the merged one (-1) and names the ones after."""
    p = site.layer.param.flatten_param
    shape = site.input_shapes[0]
    ndim = len(shape)
    start, end = p.axis % ndim, p.end_axis % ndim
    # axis == end_axis + 1 inserts an axis of size 1, as in Caffe.
    merged = -1 if start <= end else 1
    target = [0] * start + [merged] + list(shape[end + 1:])
    g.reshape(site.inputs[0], target, layer=site.name, out=site.outputs[0])


@converts("Reshape")
def reshape(g: GraphBuilder, site: Site) -> None:
    """Caffe's reshape_param maps onto ONNX Reshape position by position: the axes before
    ``axis`` are copied (0), the given dims keep Caffe's 0 (copy the axis at that position)
    and -1 (infer), and the axes after ``axis + num_axes`` are named. So the exported model
    applies Caffe's rule at any batch size."""
    p = site.layer.param.reshape_param
    shape = list(site.input_shapes[0])
    ndim = len(shape)
    start = p.axis if p.axis >= 0 else ndim + p.axis + 1
    end = ndim if p.num_axes == -1 else start + p.num_axes
    if end == 0 and ndim:
        g.batch_free(site, 0, "inserts axes before the batch axis and so names it")
    target = [0] * start + [int(d) for d in p.shape.dim] + shape[end:]
    g.reshape(site.inputs[0], target, layer=site.name, out=site.outputs[0])


@converts("Concat")
def concat(g: GraphBuilder, site: Site) -> None:
    if len(site.inputs) == 1:
        g.add("Identity", site.inputs, [site.outputs[0]], layer=site.name)
        return
    g.add("Concat", site.inputs, [site.outputs[0]], layer=site.name, axis=site.layer.axis)


@converts("Slice")
def slice_(g: GraphBuilder, site: Site) -> None:
    """One Split node with Caffe's piece sizes (from slice_point, or equal parts)."""
    layer = site.layer
    if len(site.outputs) == 1:
        g.add("Identity", site.inputs, [site.outputs[0]], layer=site.name)
        return
    g.batch_free(site, layer.axis, "slices")
    sizes = [hi - lo for lo, hi in zip(layer.bounds, layer.bounds[1:])]
    g.add_multi("Split", [site.inputs[0], g.ints(sizes, f"{site.name}/sizes")], site.outputs,
                layer=site.name, axis=layer.axis)


@converts("Crop")
def crop(g: GraphBuilder, site: Site) -> None:
    """A Slice of the first bottom at Caffe's offsets, to the second bottom's sizes on the
    axes from ``axis`` on (the second bottom only lends its shape)."""
    layer = site.layer
    g.batch_free(site, layer.start, "crops")
    axes = list(range(layer.start, len(site.input_shapes[0])))
    offsets = layer.offset * len(axes) if len(layer.offset) == 1 else (
        list(layer.offset) or [0] * len(axes))
    out_shape = site.output_shapes[0]
    ends = [off + out_shape[axis] for off, axis in zip(offsets, axes)]
    g.add("Slice", [site.inputs[0], g.ints(offsets, f"{site.name}/starts"),
                    g.ints(ends, f"{site.name}/ends"), g.ints(axes, f"{site.name}/axes")],
          [site.outputs[0]], layer=site.name)


@converts("Tile")
def tile(g: GraphBuilder, site: Site) -> None:
    """Caffe repeats the block of axes from ``axis`` on, which is ONNX Tile along ``axis``."""
    repeats = [1] * len(site.input_shapes[0])
    repeats[site.layer.axis] = site.layer.tiles
    g.add("Tile", [site.inputs[0], g.ints(repeats, f"{site.name}/repeats")],
          [site.outputs[0]], layer=site.name)


@converts("Eltwise")
def eltwise(g: GraphBuilder, site: Site) -> None:
    """SUM (each bottom times its coeff), PROD or MAX of the bottoms."""
    layer = site.layer
    out = site.outputs[0]
    if layer.op == E.MAX:
        g.add("Max", site.inputs, [out], layer=site.name)
        return
    if layer.op == E.PROD:
        value = site.inputs[0]
        for i, x in enumerate(site.inputs[1:], start=2):
            value = g.add("Mul", [value, x], [out] if i == len(site.inputs) else "product",
                          layer=site.name)
        return
    terms = []
    for i, (x, coeff) in enumerate(zip(site.inputs, layer.coeffs)):
        if coeff != 1:
            x = g.add("Mul", [x, g.constant(coeff, f"{site.name}/coeff{i}")], f"term{i}",
                      layer=site.name)
        terms.append(x)
    g.add("Add" if len(terms) == 2 else "Sum", terms, [out], layer=site.name)


@converts("Reduction")
def reduction(g: GraphBuilder, site: Site) -> None:
    """SUM, ASUM, SUMSQ or MEAN over the axes from ``axis`` on, times ``coeff``. Caffe folds
    MEAN's 1/count into the float coefficient; so does the export."""
    layer = site.layer
    op = {R.SUM: "ReduceSum", R.MEAN: "ReduceSum", R.ASUM: "ReduceL1",
          R.SUMSQ: "ReduceSumSquare"}[layer.op]
    axes = list(range(layer.axis, len(site.input_shapes[0])))
    if layer.coeff == 1:
        g.reduce(op, site.inputs[0], axes, False, layer=site.name, out=site.outputs[0])
        return
    total = g.reduce(op, site.inputs[0], axes, False, layer=site.name)
    g.add("Mul", [total, g.constant(layer.coeff, f"{site.name}/coeff")], [site.outputs[0]],
          layer=site.name)


@converts("ArgMax")
def argmax(g: GraphBuilder, site: Site) -> None:
    """TopK along an axis (or over each item flattened). Caffe ranks ties by the larger index
    first, TopK by the smaller: the export runs TopK on the axis reversed and maps the
    indices back (``dim - 1 - i``). Indices are floats, as in Caffe's blobs."""
    layer = site.layer
    x = site.inputs[0]
    out = site.outputs[0]
    if layer.has_axis:
        axis = layer.param.argmax_param.axis % len(site.input_shapes[0])
        g.batch_free(site, axis, "ranks")
    else:
        axis = 1
        x = g.reshape(x, [0, -1], layer=site.name)
    reversed_x = g.add("Slice", [x, g.ints([-1], f"{site.name}/start"),
                                 g.ints([INT64_MIN], f"{site.name}/end"),
                                 g.ints([axis], f"{site.name}/axis"),
                                 g.ints([-1], f"{site.name}/step")], "reversed", layer=site.name)
    values, order = g.fresh(f"{site.name}/values"), g.fresh(f"{site.name}/order")
    g.add_multi("TopK", [reversed_x, g.ints([layer.top_k], f"{site.name}/k")],
                [values, order], layer=site.name, axis=axis, largest=1, sorted=1)
    index = g.add("Sub", [g.constant(layer.dim - 1, f"{site.name}/last", np.int64), order],
                  "index", layer=site.name)
    want_index = not layer.out_max_val or not layer.has_axis
    index_f = None
    if want_index:
        index_f = g.add("Cast", [index], "index_float", layer=site.name, to=TensorProto.FLOAT)
    if layer.has_axis:
        g.add("Identity", [values if layer.out_max_val else index_f], [out], layer=site.name)
        return
    rows = [index_f, values] if layer.out_max_val else [index_f]
    stacked = rows[0] if len(rows) == 1 else g.add("Concat", rows, "stacked",
                                                   layer=site.name, axis=1)
    # (N, top_k) or (N, 2 * top_k) -> Caffe's (N, 1 or 2, top_k, 1, ...).
    g.reshape(stacked, [0] + list(site.output_shapes[0][1:]), layer=site.name, out=out)
