"""In-memory upgrades of old Caffe files, as Caffe's upgrade_proto does on load.

A net is upgraded in Caffe's order (``UpgradeNetAsNeeded``):

1. V0 -> V1: ``layers { layer { type: "conv" ... } }`` (V0LayerParameter inside a V1 layer);
   ``padding`` layers are folded into the convolution or pooling layer that reads them.
2. Deprecated data-transformation fields (``scale``, ``mean_file``, ``crop_size``, ``mirror``)
   of V1 DATA / IMAGE_DATA / WINDOW_DATA layers move into ``transform_param``.
3. V1 -> current: ``layers { type: CONVOLUTION ... }`` (field 2, enum types) become
   ``layer { type: "Convolution" ... }`` (field 100, string types); ``blobs_lr``,
   ``weight_decay``, ``param`` names and ``blob_share_mode`` become ``param`` (ParamSpec).
4. Legacy ``input`` / ``input_shape`` / ``input_dim`` become an Input layer named ``input``.
5. A BatchNorm layer with exactly three ``param`` specs gets lr_mult = decay_mult = 0 on each.

Each step logs Caffe's ``Attempting to upgrade ...`` / ``Successfully upgraded ...`` lines.
Solvers get the ``solver_type`` enum -> ``type`` string upgrade and the ``snapshot_prefix``
default.
"""

from __future__ import annotations

import logging
import os

from ..errors import NetError, SolverError
from ..log import get_logger
from . import caffe_pb2

V1 = caffe_pb2.V1LayerParameter

_SOLVER_TYPE_NAMES = {
    caffe_pb2.SolverParameter.SGD: "SGD",
    caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
    caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad",
    caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
    caffe_pb2.SolverParameter.ADADELTA: "AdaDelta",
    caffe_pb2.SolverParameter.ADAM: "Adam",
}

# --- V0 -> V1 tables (Caffe's UpgradeV0LayerType / UpgradeV0LayerParameter) ---------------------
_V0_TYPES = {
    "accuracy": V1.ACCURACY, "bnll": V1.BNLL, "concat": V1.CONCAT, "conv": V1.CONVOLUTION,
    "data": V1.DATA, "dropout": V1.DROPOUT, "euclidean_loss": V1.EUCLIDEAN_LOSS,
    "flatten": V1.FLATTEN, "hdf5_data": V1.HDF5_DATA, "hdf5_output": V1.HDF5_OUTPUT,
    "im2col": V1.IM2COL, "images": V1.IMAGE_DATA, "infogain_loss": V1.INFOGAIN_LOSS,
    "innerproduct": V1.INNER_PRODUCT, "lrn": V1.LRN,
    "multinomial_logistic_loss": V1.MULTINOMIAL_LOGISTIC_LOSS, "pool": V1.POOLING,
    "relu": V1.RELU, "sigmoid": V1.SIGMOID, "softmax": V1.SOFTMAX,
    "softmax_loss": V1.SOFTMAX_LOSS, "split": V1.SPLIT, "tanh": V1.TANH,
    "window_data": V1.WINDOW_DATA,
}

_ANY = "*"  # the transformation fields move to transform_param whatever the layer type
_DATA_SOURCES = {"data": "data_param", "hdf5_data": "hdf5_data_param",
                 "images": "image_data_param", "window_data": "window_data_param"}


def _to(params: dict[str, str], field: str) -> dict[str, str]:
    return {v0_type: f"{param}.{field}" for v0_type, param in params.items()}


_CONV_IP = {"conv": "convolution_param", "innerproduct": "inner_product_param"}
_CONV_POOL = {"conv": "convolution_param", "pool": "pooling_param"}
_WINDOW = {"window_data": "window_data_param"}
_IMAGES = {"images": "image_data_param"}
_LRN = {"lrn": "lrn_param"}

#: V0LayerParameter field -> {V0 layer type: "<V1 sub-message>.<field>"}, in Caffe's order.
_V0_FIELDS: tuple[tuple[str, dict[str, str]], ...] = (
    ("num_output", _to(_CONV_IP, "num_output")),
    ("biasterm", _to(_CONV_IP, "bias_term")),
    ("weight_filler", _to(_CONV_IP, "weight_filler")),
    ("bias_filler", _to(_CONV_IP, "bias_filler")),
    ("pad", _to(_CONV_POOL, "pad")),
    ("kernelsize", _to(_CONV_POOL, "kernel_size")),
    ("group", {"conv": "convolution_param.group"}),
    ("stride", _to(_CONV_POOL, "stride")),
    ("pool", {"pool": "pooling_param.pool"}),  # V0 PoolMethod values equal PoolingParameter's
    ("dropout_ratio", {"dropout": "dropout_param.dropout_ratio"}),
    ("local_size", _to(_LRN, "local_size")),
    ("alpha", _to(_LRN, "alpha")),
    ("beta", _to(_LRN, "beta")),
    ("k", _to(_LRN, "k")),
    ("source", {**_to(_DATA_SOURCES, "source"),
                "infogain_loss": "infogain_loss_param.source"}),
    ("scale", {_ANY: "transform_param.scale"}),
    ("meanfile", {_ANY: "transform_param.mean_file"}),
    ("batchsize", _to(_DATA_SOURCES, "batch_size")),
    ("cropsize", {_ANY: "transform_param.crop_size"}),
    ("mirror", {_ANY: "transform_param.mirror"}),
    ("rand_skip", {"data": "data_param.rand_skip", "images": "image_data_param.rand_skip"}),
    ("shuffle_images", _to(_IMAGES, "shuffle")),
    ("new_height", _to(_IMAGES, "new_height")),
    ("new_width", _to(_IMAGES, "new_width")),
    ("concat_dim", {"concat": "concat_param.concat_dim"}),
    ("det_fg_threshold", _to(_WINDOW, "fg_threshold")),
    ("det_bg_threshold", _to(_WINDOW, "bg_threshold")),
    ("det_fg_fraction", _to(_WINDOW, "fg_fraction")),
    ("det_context_pad", _to(_WINDOW, "context_pad")),
    ("det_crop_mode", _to(_WINDOW, "crop_mode")),
    ("hdf5_output_param", {"hdf5_output": "hdf5_output_param"}),
)

# --- V1 -> current tables (Caffe's UpgradeV1LayerType / UpgradeV1LayerParameter) ----------------
#: Every V1 LayerType enum name -> the current type string ("" for NONE).
V1_TYPE_NAMES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

#: The per-type parameter messages a V1 layer carries over unchanged (same name in both).
V1_PARAM_FIELDS = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
    "convolution_param", "data_param", "dropout_param", "dummy_data_param", "eltwise_param",
    "exp_param", "hdf5_data_param", "hdf5_output_param", "hinge_loss_param",
    "image_data_param", "infogain_loss_param", "inner_product_param", "lrn_param",
    "memory_data_param", "mvn_param", "pooling_param", "power_param", "relu_param",
    "sigmoid_param", "softmax_param", "slice_param", "tanh_param", "threshold_param",
    "window_data_param", "transform_param", "loss_param",
)

# --- deprecated data transformation fields --------------------------------------------------------
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")
_DATA_PARAMS = {V1.DATA: "data_param", V1.IMAGE_DATA: "image_data_param",
                V1.WINDOW_DATA: "window_data_param"}


# --- nets -----------------------------------------------------------------------------------------
def net_needs_v0_upgrade(param: caffe_pb2.NetParameter) -> bool:
    return any(layer.HasField("layer") for layer in param.layers)


def net_needs_data_upgrade(param: caffe_pb2.NetParameter) -> bool:
    for layer in param.layers:
        name = _DATA_PARAMS.get(layer.type)
        if name and any(getattr(layer, name).HasField(f) for f in _TRANSFORM_FIELDS):
            return True
    return False


def net_needs_batch_norm_upgrade(param: caffe_pb2.NetParameter) -> bool:
    return any(layer.type == "BatchNorm" and len(layer.param) == 3 for layer in param.layer)


def net_needs_upgrade(param: caffe_pb2.NetParameter) -> bool:
    """Caffe's NetNeedsUpgrade: whether ``upgrade_net_param`` would change anything."""
    return (net_needs_v0_upgrade(param) or len(param.layers) > 0
            or net_needs_data_upgrade(param) or len(param.input) > 0
            or net_needs_batch_norm_upgrade(param))


def upgrade_net_param(
    param: caffe_pb2.NetParameter, filename: str | None = None
) -> caffe_pb2.NetParameter:
    """Upgrade ``param`` in place to the current format (Caffe's UpgradeNetAsNeeded).

    Returns ``param``. Problems Caffe only logs (a V0 field that the layer type does not take)
    are logged as errors and the upgrade goes on; problems Caffe dies on raise NetError.
    """
    upgrade_net(param, filename)
    return param


def upgrade_net(param: caffe_pb2.NetParameter, filename: str | None = None) -> bool:
    """:func:`upgrade_net_param`, returning whether the upgrade was free of problems."""
    success = True
    where = f"{filename}: " if filename else "net: "
    source = filename or "(net given in memory)"
    log = get_logger()
    if len(param.layers) and len(param.layer):
        raise NetError(
            f"{where}both 'layer' and the deprecated V1 'layers' are present; a net must use "
            "only one of them (the current format is layer { type: \"Convolution\" ... }, the "
            "old one layers { type: CONVOLUTION ... })"
        )
    if net_needs_v0_upgrade(param):
        log.info("Attempting to upgrade input file specified using deprecated "
                 "V0LayerParameter: %s", source)
        if _upgrade_v0_net(param, where, log):
            log.info("Successfully upgraded file specified using deprecated V0LayerParameter")
        else:
            success = False
            log.error("Warning: had one or more problems upgrading V0NetParameter to "
                      "NetParameter (see above); continuing anyway.")
        log.warning("Note that future Caffe releases will not support V0NetParameter; use "
                    "pyforge upgrade-net to upgrade this and any other net protos (prototxt "
                    "or .caffemodel) to the new format.")
    if net_needs_data_upgrade(param):
        log.info("Attempting to upgrade input file specified using deprecated transformation "
                 "parameters: %s", source)
        _upgrade_data_transformation(param)
        log.info("Successfully upgraded file specified using deprecated data transformation "
                 "parameters.")
        log.warning("Note that future Caffe releases will only support transform_param "
                    "messages for transformation fields.")
    if len(param.layers):
        log.info("Attempting to upgrade input file specified using deprecated "
                 "V1LayerParameter: %s", source)
        if _upgrade_v1_net(param, log):
            log.info("Successfully upgraded file specified using deprecated V1LayerParameter")
        else:
            success = False
            log.error("Warning: had one or more problems upgrading V1LayerParameter (see "
                      "above); continuing anyway.")
    if len(param.input):
        log.info("Attempting to upgrade input file specified using deprecated input fields: "
                 "%s", source)
        _upgrade_input_fields(param, where)
        log.info("Successfully upgraded file specified using deprecated input fields.")
        log.warning("Note that future Caffe releases will only support input layers and not "
                    "input fields.")
    elif len(param.input_shape) or len(param.input_dim):
        raise NetError(f"{where}input_shape/input_dim given without 'input' names")
    if net_needs_batch_norm_upgrade(param):
        log.info("Attempting to upgrade batch norm layers using deprecated params: %s", source)
        for layer in param.layer:
            # Caffe: a BatchNorm with exactly three param specs gets lr_mult = decay_mult = 0
            # (its blobs are statistics, updated in Forward, never by the solver).
            if layer.type == "BatchNorm" and len(layer.param) == 3:
                for spec in layer.param:
                    spec.lr_mult = 0
                    spec.decay_mult = 0
        log.info("Successfully upgraded batch norm layers using deprecated params.")
    _warn_ignored_transform_fields(param, log)
    return success


def _upgrade_v0_net(param: caffe_pb2.NetParameter, where: str, log: logging.Logger) -> bool:
    """Caffe's UpgradeV0Net: fold padding layers, then upgrade every V0 layer to V1."""
    original = caffe_pb2.NetParameter()
    original.CopyFrom(param)
    padded = _fold_v0_padding_layers(original, where)
    compatible = True
    param.Clear()
    # Caffe keeps only these net-level fields of a V0 net.
    if original.HasField("name"):
        param.name = original.name
    for connection in padded:
        compatible &= _upgrade_v0_layer(connection, param.layers.add(), where, log)
    param.input.extend(original.input)
    param.input_dim.extend(original.input_dim)
    if original.HasField("force_backward"):
        param.force_backward = original.force_backward
    return compatible


def _fold_v0_padding_layers(param: caffe_pb2.NetParameter,
                            where: str) -> list[caffe_pb2.V1LayerParameter]:
    """Caffe's UpgradeV0PaddingLayers: V0 nets padded with separate ``padding`` layers; the pad
    moves into the convolution/pooling layer that reads the padded blob, which then reads the
    padding layer's input instead."""
    last_producer: dict[str, int] = {name: -1 for name in param.input}
    kept: list[caffe_pb2.V1LayerParameter] = []
    for i, connection in enumerate(param.layers):
        v0 = connection.layer
        if v0.type != "padding":
            copy = caffe_pb2.V1LayerParameter()
            copy.CopyFrom(connection)
            kept.append(copy)
        for j, blob in enumerate(connection.bottom):
            if blob not in last_producer:
                raise NetError(f"{where}V0 layer '{v0.name}': unknown bottom blob '{blob}' "
                               f"(bottom index {j})")
            producer = last_producer[blob]
            if producer < 0:
                continue
            source = param.layers[producer]
            if source.layer.type != "padding":
                continue
            # Caffe: other uses of a padding layer are undefined, and CHECKed.
            if v0.type not in ("conv", "pool"):
                raise NetError(f"{where}V0 padding layer '{source.layer.name}' feeds layer "
                               f"'{v0.name}' of type '{v0.type}'; only conv and pool layers "
                               "can take a padding layer's output")
            if len(connection.bottom) != 1:
                raise NetError(f"{where}V0 layer '{v0.name}' reads a padding layer, so it must "
                               f"have exactly 1 bottom, found {len(connection.bottom)}")
            if len(source.bottom) != 1 or len(source.top) != 1:
                raise NetError(f"{where}V0 padding layer '{source.layer.name}' must have "
                               f"exactly 1 bottom and 1 top, found {len(source.bottom)} and "
                               f"{len(source.top)}")
            kept[-1].layer.pad = source.layer.pad
            kept[-1].bottom[j] = source.bottom[0]
        for blob in connection.top:
            last_producer[blob] = i
    return kept


def _set_path(message, path: str, value) -> None:
    """Set ``a.b`` on ``message``: append to repeated fields, copy messages, set scalars."""
    sub_name, field = path.split(".") if "." in path else (path, None)
    sub = getattr(message, sub_name)
    if field is None:
        sub.CopyFrom(value)
        return
    descriptor = sub.DESCRIPTOR.fields_by_name[field]
    if descriptor.message_type is not None:
        getattr(sub, field).CopyFrom(value)
    elif _is_repeated(descriptor):
        getattr(sub, field).append(value)
    else:
        setattr(sub, field, value)


def _is_repeated(descriptor) -> bool:
    # protobuf >= 5 has is_repeated; older ones only the label.
    flag = getattr(descriptor, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return descriptor.label == descriptor.LABEL_REPEATED


def _upgrade_v0_layer(connection: caffe_pb2.V1LayerParameter, out: caffe_pb2.V1LayerParameter,
                      where: str, log: logging.Logger) -> bool:
    """Caffe's UpgradeV0LayerParameter: one V0 layer (inside its V1 connection) to V1."""
    compatible = True
    out.Clear()
    out.bottom.extend(connection.bottom)
    out.top.extend(connection.top)
    if not connection.HasField("layer"):
        return compatible
    v0 = connection.layer
    if v0.HasField("name"):
        out.name = v0.name
    kind = v0.type
    if v0.HasField("type"):
        if kind not in _V0_TYPES:
            raise NetError(f"{where}V0 layer '{v0.name}': unknown layer type '{kind}' (known: "
                           f"{', '.join(sorted(_V0_TYPES))})")
        out.type = _V0_TYPES[kind]
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for field, targets in _V0_FIELDS:
        if not v0.HasField(field):
            continue
        target = targets.get(_ANY) or targets.get(kind)
        if target is None:
            log.error("Unknown parameter %s for layer type %s", field, kind)
            compatible = False
            continue
        _set_path(out, target, getattr(v0, field))
    return compatible


def _upgrade_data_transformation(param: caffe_pb2.NetParameter) -> None:
    """Caffe's UpgradeNetDataTransformation (V1 layers only)."""
    for layer in param.layers:
        name = _DATA_PARAMS.get(layer.type)
        if name is None:
            continue
        sub = getattr(layer, name)
        # Caffe creates both messages (mutable_*) for every layer of these types.
        sub.SetInParent()
        layer.transform_param.SetInParent()
        for field in _TRANSFORM_FIELDS:
            if sub.HasField(field):
                setattr(layer.transform_param, field, getattr(sub, field))
                sub.ClearField(field)


def _upgrade_v1_net(param: caffe_pb2.NetParameter, log: logging.Logger) -> bool:
    """Caffe's UpgradeV1Net: every V1 ``layers`` entry becomes a ``layer``."""
    compatible = True
    upgraded = []
    for i, v1 in enumerate(param.layers):
        layer = caffe_pb2.LayerParameter()
        if not _upgrade_v1_layer(v1, layer, log):
            log.error("Upgrade of input layer %d failed.", i)
            compatible = False
        upgraded.append(layer)
    param.ClearField("layers")
    param.layer.extend(upgraded)
    return compatible


def _upgrade_v1_layer(v1: caffe_pb2.V1LayerParameter, layer: caffe_pb2.LayerParameter,
                      log: logging.Logger) -> bool:
    """Caffe's UpgradeV1LayerParameter."""
    compatible = True
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    if v1.HasField("name"):
        layer.name = v1.name
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        layer.type = V1_TYPE_NAMES[V1.LayerType.Name(v1.type)]
    layer.blobs.extend(v1.blobs)

    def spec(i: int) -> caffe_pb2.ParamSpec:
        while len(layer.param) <= i:
            layer.param.add()
        return layer.param[i]

    for i, name in enumerate(v1.param):
        spec(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        # V1 DimCheckMode and ParamSpec.DimCheckMode share their values (STRICT 0, PERMISSIVE 1).
        spec(i).share_mode = mode
    for i, lr in enumerate(v1.blobs_lr):
        spec(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        spec(i).decay_mult = decay
    layer.loss_weight.extend(v1.loss_weight)
    for field in V1_PARAM_FIELDS:
        if v1.HasField(field):
            getattr(layer, field).CopyFrom(getattr(v1, field))
    if v1.HasField("layer"):
        log.error("Input NetParameter has V0 layer -- ignoring.")
        compatible = False
    return compatible


def _upgrade_input_fields(param: caffe_pb2.NetParameter, where: str) -> None:
    """Legacy ``input`` / ``input_shape`` / ``input_dim`` become an Input layer named 'input'."""
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


#: Deprecated transformation fields that the current-format data layers ignore (Caffe moves them
#: into transform_param only in V1 nets). WindowData still reads its own ``scale``.
_IGNORED_TRANSFORM_FIELDS = {
    "data_param": _TRANSFORM_FIELDS,
    "image_data_param": _TRANSFORM_FIELDS,
    "window_data_param": ("mean_file", "crop_size", "mirror"),
}


def _warn_ignored_transform_fields(param: caffe_pb2.NetParameter, log: logging.Logger) -> None:
    for layer in param.layer:
        for name, fields in _IGNORED_TRANSFORM_FIELDS.items():
            if not layer.HasField(name):
                continue
            sub = getattr(layer, name)
            for field in fields:
                if sub.HasField(field):
                    log.warning("layer '%s': %s.%s is deprecated and ignored, as in Caffe; "
                                "set transform_param { %s: ... } instead", layer.name, name,
                                field, field)


# --- solvers --------------------------------------------------------------------------------------
def solver_needs_upgrade(param: caffe_pb2.SolverParameter) -> bool:
    """Whether ``upgrade_solver_param`` changes more than the snapshot_prefix default."""
    nets = _embedded_nets(param)
    return param.HasField("solver_type") or any(net_needs_upgrade(net) for _, net in nets)


def _embedded_nets(param: caffe_pb2.SolverParameter) -> list[tuple[str, caffe_pb2.NetParameter]]:
    nets = []
    for name in ("net_param", "train_net_param"):
        if param.HasField(name):
            nets.append((name, getattr(param, name)))
    nets.extend((f"test_net_param[{i}]", net) for i, net in enumerate(param.test_net_param))
    return nets


def upgrade_solver_param(
    param: caffe_pb2.SolverParameter, filename: str | None = None, *,
    default_snapshot_prefix: bool = True,
) -> caffe_pb2.SolverParameter:
    """Upgrade the deprecated ``solver_type`` enum and default ``snapshot_prefix``.

    Nets given inside the solver (``net_param``, ``train_net_param``, ``test_net_param``) are
    upgraded like net files; Caffe does not upgrade those and would build them empty.
    ``default_snapshot_prefix`` is off for ``pyforge upgrade-solver``, which (like Caffe's
    upgrade_solver_proto_text) writes only the format upgrade.
    """
    where = f"{filename}: " if filename else ""
    log = get_logger()
    if param.HasField("solver_type"):
        if param.HasField("type"):
            raise SolverError(
                f"{where}both solver_type (deprecated) and type are set; keep only "
                f"type: \"{param.type}\""
            )
        log.info("Attempting to upgrade input file specified using deprecated 'solver_type' "
                 "field (enum)': %s", filename or "(solver given in memory)")
        param.type = _SOLVER_TYPE_NAMES[param.solver_type]
        param.ClearField("solver_type")
        log.info("Successfully upgraded file specified using deprecated 'solver_type' field "
                 "(enum) to 'type' field (string).")
        log.warning("Note that future Caffe releases will only support 'type' field (string) "
                    "for a solver's type.")
    for name, net in _embedded_nets(param):
        if net_needs_upgrade(net):
            upgrade_net_param(net, f"{filename or 'solver'} ({name})")
    if filename is not None and default_snapshot_prefix:
        # Caffe: the prefix defaults to the solver file path without its extension; a prefix that
        # names an existing directory gets the solver file's stem appended.
        stem = os.path.splitext(filename)[0]
        if not param.HasField("snapshot_prefix"):
            param.snapshot_prefix = stem
        elif os.path.isdir(param.snapshot_prefix):
            param.snapshot_prefix = os.path.join(param.snapshot_prefix, os.path.basename(stem))
    return param
