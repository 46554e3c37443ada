"""The ONNX graph under construction, and what a converter sees of the layer it converts.

Converters never write protobuf by hand: nodes, initializers and value infos are made with
``onnx.helper`` and ``onnx.numpy_helper``. The builder hands out unique value names, keeps
constants as initializers, and hides the operator-set differences the converters would
otherwise repeat (the axes of the Reduce* operators became an input in opset 18).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ExportError
from ..layers.base import Layer

#: Reduce operators whose ``axes`` moved from an attribute to an input in opset 18
#: (ReduceSum moved in opset 13 already, the lowest opset pyforge exports).
_AXES_INPUT_SINCE = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18,
                     "ReduceL1": 18, "ReduceSumSquare": 18, "ReduceProd": 18}


@dataclass
class Site:
    """One Caffe layer being converted: the built pyforge layer (its parameters are checked
    and its geometry computed), the ONNX names of its bottoms, the names its tops must get,
    and the Caffe shapes of both (at the prototxt's batch size)."""

    layer: Layer
    inputs: list[str]
    outputs: list[str]
    input_shapes: list[tuple[int, ...]]
    output_shapes: list[tuple[int, ...]]

    @property
    def name(self) -> str:
        return self.layer.param.name

    @property
    def type(self) -> str:
        """The canonical type string (``ReLU`` for a layer written ``RELU``)."""
        return self.layer.type_name

    def error(self, message: str) -> ExportError:
        return ExportError(f"layer '{self.name}' of type '{self.layer.param.type}' cannot be "
                           f"exported to ONNX: {message}")


class GraphBuilder:
    """Nodes and initializers of one ONNX graph, with unique names.

    ``dynamic_batch`` means axis 0 of the inputs is symbolic: converters must then not bake
    the batch size into a shape, and :meth:`batch_free` refuses the layers that work along it.
    """

    def __init__(self, opset: int, dynamic_batch: bool) -> None:
        self.opset = opset
        self.dynamic_batch = dynamic_batch
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used: set[str] = set()
        self._node_count: dict[str, int] = {}

    # --- names -----------------------------------------------------------------------------
    def reserve(self, name: str) -> str:
        """Claim an exact name (a Caffe blob name that must appear as such)."""
        if name in self._used:
            raise ValueError(f"ONNX value name {name!r} used twice")
        self._used.add(name)
        return name

    def fresh(self, hint: str) -> str:
        """A new unique value name starting with ``hint``."""
        if hint not in self._used:
            return self.reserve(hint)
        i = 1
        while f"{hint}_{i}" in self._used:
            i += 1
        return self.reserve(f"{hint}_{i}")

    # --- constants -------------------------------------------------------------------------
    def constant(self, value, hint: str, dtype=np.float32) -> str:
        """An initializer holding ``value`` (float32 unless ``dtype`` says otherwise)."""
        array = np.array(value, dtype=dtype, order="C")  # ascontiguousarray makes 0-d 1-d
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, values: Sequence[int], hint: str) -> str:
        """A 1-D int64 initializer (shapes, pads, axes, slice bounds)."""
        return self.constant(list(values), hint, dtype=np.int64)

    # --- nodes -----------------------------------------------------------------------------
    def add(self, op: str, inputs: Sequence[str], outputs: Sequence[str] | str | None = None,
            *, layer: str, **attrs) -> str:
        """Append a node; ``outputs`` are exact names, or a hint (str) or None for a fresh
        name. Returns the (first) output's name."""
        if outputs is None or isinstance(outputs, str):
            outputs = [self.fresh(f"{layer}/{outputs or op}")]
        count = self._node_count.get(layer, 0)
        self._node_count[layer] = count + 1
        node_name = layer if count == 0 else f"{layer}/{op}_{count}"
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=node_name,
                                           **attrs))
        return outputs[0]

    def add_multi(self, op: str, inputs: Sequence[str], outputs: Sequence[str], *, layer: str,
                  **attrs) -> list[str]:
        """A node with several outputs (TopK, MaxPool with indices, Split)."""
        self.add(op, inputs, list(outputs), layer=layer, **attrs)
        return list(outputs)

    def reduce(self, op: str, x: str, axes: Sequence[int], keepdims: bool, *, layer: str,
               out: str | None = None) -> str:
        """A Reduce* node over ``axes``, with the axes where this opset wants them; ``out`` is
        an exact output name (a fresh one when None)."""
        outputs = [out] if out else None
        if self.opset >= _AXES_INPUT_SINCE[op]:
            return self.add(op, [x, self.ints(axes, f"{layer}/axes")], outputs, layer=layer,
                            keepdims=int(keepdims))
        return self.add(op, [x], outputs, layer=layer, axes=list(axes),
                        keepdims=int(keepdims))

    def reshape(self, x: str, target: Sequence[int], *, layer: str,
                out: str | None = None) -> str:
        """Reshape with ONNX's rules: 0 copies the input's dimension at that position (what
        keeps a dynamic batch axis), -1 is inferred. ``out`` is an exact output name."""
        return self.add("Reshape", [x, self.ints(target, f"{layer}/shape")],
                        [out] if out else None, layer=layer)

    def scale_shift(self, x: str, scale, shift, out: str, *, layer: str) -> str:
        """``x * scale + shift`` with the trivial steps left out (an Identity if both are)."""
        steps: list[tuple[str, object]] = []
        if scale != 1:
            steps.append(("Mul", scale))
        if shift != 0:
            steps.append(("Add", shift))
        if not steps:
            return self.add("Identity", [x], [out], layer=layer)
        for i, (op, operand) in enumerate(steps):
            target = [out] if i == len(steps) - 1 else None
            x = self.add(op, [x, self.constant(operand, f"{layer}/{op.lower()}")], target,
                         layer=layer)
        return x

    def batch_free(self, site: Site, axis: int, what: str) -> None:
        """Refuse, under --dynamic-batch, a layer that works along the batch axis (its ONNX
        form would bake in the prototxt's batch size)."""
        if self.dynamic_batch and axis == 0:
            raise ExportError(f"layer '{site.name}' of type '{site.layer.param.type}' {what} "
                              "along axis 0, "
                              "the batch axis, so its ONNX form holds the batch size; export "
                              "without --dynamic-batch")
