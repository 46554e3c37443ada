"""``pyforge export``: a Caffe deploy net and its weights -> an ONNX model, proven on the spot.

The exporter sits above the engine: it builds the net as ``pyforge test`` does (TEST phase,
V0/V1 definitions upgraded, weights from .caffemodel or .caffemodel.h5), converts layer by
layer (:mod:`pyforge.export.converters`), and then runs the written model in ONNX Runtime on
seeded random input and compares every output with pyforge's own forward. The engine never
imports this package, and ``onnx`` is needed only here (the ``[onnx]`` extra).

Order of events, so that a refusal leaves nothing behind: the prototxt is read and every layer
type checked; the net is built and its weights loaded; every layer is converted in memory;
the model is written to a temporary file beside the output and checked; only a model that
passes is moved to the output path.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExportError, UsageError
from ..log import get_logger
from ..proto import caffe_pb2, read_net_param

#: The default operator set: 17 is read by every current ONNX runtime and converter.
DEFAULT_OPSET = 17
#: Softmax's one-axis semantics (Caffe's) start at opset 13.
MIN_OPSET = 13
#: The seed of the check's random input (Caffe's test seed).
CHECK_SEED = 1701
#: Protobuf's limit on one serialized message.
PROTOBUF_LIMIT = 2**31 - 1


@dataclass
class ExportResult:
    path: str
    opset: int
    layers: int
    nodes: int
    #: Per output: (name, largest error relative to the output's scale); empty with no check.
    errors: list[tuple[str, float]] = field(default_factory=list)


def _require(module: str, why: str):
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(f"pyforge export needs the '{module}' package {why}") from None


def _check_opset(opset: int, onnx) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise UsageError(f"--opset must be between {MIN_OPSET} (Softmax along one axis, as "
                         f"Caffe's) and {newest} (the newest the installed onnx "
                         f"{onnx.__version__} knows), found {opset}")


def _check_output(output: str) -> Path:
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"--output {output} is a directory; give a file name such as "
                         "model.onnx")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write --output {output}: folder {folder} does not exist")
    return path


def export_onnx(model: str, weights: str, output: str, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False, check: bool = True, level: int = 0,
                stage: str = "") -> ExportResult:
    """Export ``model`` with ``weights`` to ``output``; see the module docstring."""
    log = get_logger()
    for value, flag, what in ((model, "--model", "a model definition"),
                              (weights, "--weights", "model weights"),
                              (output, "--output", "an output file")):
        if not value:  # a bad command line (exit 2), as in every command
            raise UsageError(f"need {what} to export ({flag})")
    onnx = _require("onnx", "(pip install 'pyforge[onnx]')")
    _check_opset(opset, onnx)
    if check:
        _require("onnxruntime", "for the check against pyforge's forward (pip install "
                                "onnxruntime), or pass --no-check")
    out_path = _check_output(output)

    from ..api import named_file, stages_from_flag

    named_file(model, "model")
    named_file(weights, "weights")
    from ..io.snapshot import load_weights
    from ..net.graph import filter_net
    from ..net.net import Net
    from ..rng import make_rng
    from .registry import refuse_unexportable

    param = read_net_param(model)
    param.state.CopyFrom(caffe_pb2.NetState(phase=caffe_pb2.TEST, level=level,
                                            stage=stages_from_flag(stage)))
    from . import converters  # noqa: F401  (registers the converters)

    refuse_unexportable(filter_net(param))
    net = Net(param, rng=make_rng(CHECK_SEED), logger=log, source_file=model)
    try:
        load_weights(net, weights)
        from .onnx_graph import net_to_onnx

        proto = net_to_onnx(net, opset, dynamic_batch,
                            doc=f"Exported by pyforge from {model} with weights {weights}").model
        if proto.ByteSize() > PROTOBUF_LIMIT:
            raise ExportError(f"the model is {proto.ByteSize() / 2**30:.2f} GiB, over the 2 GiB "
                              "protobuf limit of one ONNX file")
        try:
            onnx.checker.check_model(proto, full_check=True)
            # The shapes of the values between layers, for tools that show or cut the graph.
            proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        except Exception as exc:  # onnx's checker raises several exception types
            raise ExportError("the exported graph fails ONNX's checker: "
                              f"{' '.join(str(exc).split())}") from None
        result = ExportResult(str(out_path), opset, len(net.layers), len(proto.graph.node))
        _write_checked(proto, out_path, net, check, dynamic_batch, result, log)
    finally:
        net.close()
    return result


def _write_checked(proto, out_path: Path, net, check: bool, dynamic_batch: bool,
                   result: ExportResult, log) -> None:
    """Write to a temporary file beside the output, check it, then move it into place."""
    import onnx

    handle, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp",
                                   dir=out_path.parent)
    os.close(handle)
    try:
        onnx.save_model(proto, tmp)
        if check:
            _check(net, tmp, result, dynamic_batch, log)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    log.info("Wrote %s: %d layers as %d ONNX nodes, opset %d", out_path, result.layers,
             result.nodes, result.opset)


def _check(net, path: str, result: ExportResult, dynamic_batch: bool, log) -> None:
    """Compare with pyforge at the prototxt's batch size, and with --dynamic-batch at one more
    (so that a batch size baked into the graph shows)."""
    import onnxruntime

    from .check import TOLERANCE, check_export

    batches: list[int | None] = [None]
    if dynamic_batch and net.input_ids:
        batches.append(net.blob_list[net.input_ids[0]].shape[0] + 1)
    log.info("Check: ONNX Runtime %s vs pyforge's forward on seeded random input (seed %d)",
             onnxruntime.__version__, CHECK_SEED)
    comparisons = []
    for batch in batches:
        for c in check_export(net, path, CHECK_SEED, batch):
            log.info("    %s %s: largest error %.3g, %.3g of its scale %.4g", c.name,
                     "x".join(map(str, c.shape)) or "scalar", c.error, c.relative, c.scale)
            comparisons.append(c)
    result.errors = [(c.name, c.relative) for c in comparisons]
    worst = max(comparisons, key=lambda c: c.relative)
    if not worst.relative <= TOLERANCE:
        raise ExportError(f"the exported model differs from pyforge's forward: output "
                          f"'{worst.name}' ({'x'.join(map(str, worst.shape))}) is off by "
                          f"{worst.relative:.3g} of its scale (limit {TOLERANCE:g}); nothing "
                          "was written")
    log.info("Check passed: largest error %.3g of the output's scale (limit %g)",
             worst.relative, TOLERANCE)
