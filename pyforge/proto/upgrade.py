"""In-memory upgrades of old Caffe files, as Caffe's upgrade_proto does on load."""

from __future__ import annotations

import os

from ..errors import NetError, SolverError
from . import caffe_pb2

_SOLVER_TYPE_NAMES = {
    caffe_pb2.SolverParameter.SGD: "SGD",
    caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
    caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad",
    caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
    caffe_pb2.SolverParameter.ADADELTA: "AdaDelta",
    caffe_pb2.SolverParameter.ADAM: "Adam",
}


def upgrade_solver_param(
    param: caffe_pb2.SolverParameter, filename: str | None = None
) -> caffe_pb2.SolverParameter:
    """Upgrade the deprecated ``solver_type`` enum and default ``snapshot_prefix``."""
    where = f"{filename}: " if filename else ""
    if param.HasField("solver_type"):
        if param.HasField("type"):
            raise SolverError(
                f"{where}both solver_type (deprecated) and type are set; keep only "
                f"type: \"{param.type}\""
            )
        param.type = _SOLVER_TYPE_NAMES[param.solver_type]
        param.ClearField("solver_type")
    if filename is not None:
        # Caffe: the prefix defaults to the solver file path without its extension; a prefix that
        # names an existing directory gets the solver file's stem appended.
        stem = os.path.splitext(filename)[0]
        if not param.HasField("snapshot_prefix"):
            param.snapshot_prefix = stem
        elif os.path.isdir(param.snapshot_prefix):
            param.snapshot_prefix = os.path.join(param.snapshot_prefix, os.path.basename(stem))
    return param


def upgrade_net_param(
    param: caffe_pb2.NetParameter, filename: str | None = None
) -> caffe_pb2.NetParameter:
    """Apply Caffe's net upgrades: legacy inputs become an Input layer; BatchNorm param fix."""
    where = f"{filename}: " if filename else "net: "
    if len(param.layers) and len(param.layer):
        raise NetError(
            f"{where}both 'layer' and the deprecated V1 'layers' are present; "
            "a net must use only one of them"
        )
    if len(param.layers):
        raise NetError(
            f"{where}uses the deprecated V1 'layers' format, which this version of pyforge "
            "does not upgrade yet; rewrite it with 'layer { type: \"...\" }'"
        )
    _upgrade_input_fields(param, where)
    for layer in param.layer:
        # Caffe: a BatchNorm with exactly three param specs gets lr_mult = decay_mult = 0.
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0
    return param


def _upgrade_input_fields(param: caffe_pb2.NetParameter, where: str) -> None:
    """Legacy ``input`` / ``input_shape`` / ``input_dim`` become an Input layer named 'input'."""
    if not len(param.input):
        if len(param.input_shape) or len(param.input_dim):
            raise NetError(f"{where}input_shape/input_dim given without 'input' names")
        return
    names = list(param.input)
    if not len(param.input_shape) and not len(param.input_dim):
        # Caffe drops bare input names (old .caffemodels carry them) without adding a layer.
        param.ClearField("input")
        return
    shapes: list[list[int]] = []
    if len(param.input_shape):
        if len(param.input_shape) != len(names):
            raise NetError(
                f"{where}{len(names)} inputs but {len(param.input_shape)} input_shape entries"
            )
        shapes = [list(s.dim) for s in param.input_shape]
    elif len(param.input_dim):
        dims = list(param.input_dim)
        if len(dims) != 4 * len(names):
            raise NetError(
                f"{where}input_dim must give 4 values per input: {len(names)} inputs, "
                f"{len(dims)} input_dim values"
            )
        shapes = [dims[4 * i : 4 * i + 4] for i in range(len(names))]
    layer = caffe_pb2.LayerParameter(name="input", type="Input", top=names)
    for shape in shapes:
        layer.input_param.shape.add().dim.extend(shape)
    layers = [layer] + list(param.layer)
    del param.layer[:]
    param.layer.extend(layers)
    param.ClearField("input")
    param.ClearField("input_shape")
    param.ClearField("input_dim")
