"""pycaffe's ``caffe.pycaffe``: ``caffe.Net``, pyforge's Net with pycaffe's methods and semantics.

What pycaffe users rely on, and what this class keeps:

- ``net.blobs[name].data`` / ``.diff`` and ``net.params[layer][i].data`` are the arrays the
  layers compute in; writing into them in place (``[...] =``, ``.flat =``) is seen by the next
  pass, and the arrays ``forward()`` returns are those same arrays (copy them to keep them).
- ``forward()`` with no inputs runs the data layers, so a Data layer's cursor advances by one
  batch per call; ``forward(data=x)`` writes ``x`` into the input blob first.
- ``forward(start=, end=)`` / ``backward(start=, end=)`` run a range of layers, by name.
- Parameter diffs accumulate over backward passes, as in Caffe; ``clear_param_diffs()`` zeroes
  them (a solver does it at every iteration).

Nets built by a solver are pyforge Nets promoted to this class (:func:`adopt`), so
``solver.net`` has the same interface. As in pycaffe, this module also answers for the solver
classes, ``NCCL`` and ``Timer`` (``from caffe.pycaffe import SGDSolver``).
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from pyforge.blob import Blob
from pyforge.errors import NetError, PyforgeError
from pyforge.io.snapshot import is_hdf5, load_weights, write_model
from pyforge.log import get_logger
from pyforge.net.net import Net as _EngineNet
from pyforge.proto import caffe_pb2, read_net_param

from ._caffe import NCCL, Timer, net_rng

__all__ = ["NCCL", "Net", "Timer"]

AUTOMATIC = "(automatic)"  # Caffe's name for the anonymous tops of loss layers


class UnknownLayerError(PyforgeError, ValueError):
    """A layer name the net does not have (pycaffe's ``list.index`` raises ValueError)."""


class UnknownBlobError(PyforgeError, KeyError):
    """A blob name the net does not have (pycaffe's dict lookup raises KeyError)."""


class InputArraysError(PyforgeError, RuntimeError):
    """Arrays that do not fit the MemoryData layer (pycaffe raises RuntimeError)."""


class Net(_EngineNet):
    """A net built from a prototxt, with pycaffe's interface.

    ``Net(network_file, phase, level=0, stages=None, weights=None)``, or pycaffe's older
    ``Net(network_file, weights, phase)``. ``phase`` is ``caffe.TRAIN`` or ``caffe.TEST``. As in
    Caffe, ``phase`` and ``level`` replace the prototxt's ``state`` values and ``stages`` are
    added to its stages. pyforge also takes a ``NetParameter`` in place of the file name.
    """

    def __init__(self, network_file, *args, **kwargs) -> None:
        phase, level, stages, weights = _net_arguments(args, kwargs)
        if isinstance(network_file, caffe_pb2.NetParameter):
            param = caffe_pb2.NetParameter()
            param.CopyFrom(network_file)
            source = None
        else:
            source = os.fspath(network_file)
            param = read_net_param(source)
        param.state.phase = phase
        param.state.stage.extend(stages)
        param.state.level = level
        super().__init__(param, rng=net_rng(), logger=get_logger(), source_file=source)
        self._init_pycaffe()
        if weights is not None:
            self.copy_from(weights)

    def _init_pycaffe(self) -> None:
        """Set up what the pycaffe interface adds to a built net."""
        self._callbacks: dict[str, list[Callable[[int], object]]] = {
            "before_forward": [], "after_forward": [], "before_backward": [],
            "after_backward": []}
        #: pycaffe's name -> loss weight of every blob, in blob order.
        self.blob_loss_weights: OrderedDict[str, float] = OrderedDict(
            (name, float(self.loss_weight_by_blob.get(i, 0.0)))
            for i, name in enumerate(self.blob_names) if name != AUTOMATIC)

    def __del__(self) -> None:
        # Caffe frees a net's data readers and prefetch threads with the net; a dropped Python
        # net must stop them itself, or each one leaves a thread polling its queue.
        with contextlib.suppress(Exception):
            self.close()

    # --- pycaffe's views ---------------------------------------------------------------------
    @property
    def _layer_names(self) -> list[str]:
        return list(self.layer_names)

    @property
    def _blob_names(self) -> list[str]:
        return list(self.blob_names)

    @property
    def _blobs(self) -> list[Blob]:
        return list(self.blob_list)

    @property
    def _inputs(self) -> list[int]:
        return list(self.input_ids)

    @property
    def _outputs(self) -> list[int]:
        return list(self.output_ids)

    @property
    def _blob_loss_weights(self) -> list[float]:
        return [float(self.loss_weight_by_blob.get(i, 0.0)) for i in range(len(self.blob_list))]

    def _top_ids(self, layer_id: int) -> list[int]:
        return list(self.top_ids[layer_id])

    def _bottom_ids(self, layer_id: int) -> list[int]:
        return list(self.bottom_ids[layer_id])

    @property
    def layer_dict(self) -> OrderedDict:
        return OrderedDict(zip(self.layer_names, self.layers))

    @property
    def top_names(self) -> OrderedDict[str, list[str]]:
        return OrderedDict((name, self._names(ids))
                           for name, ids in zip(self.layer_names, self.top_ids))

    @property
    def bottom_names(self) -> OrderedDict[str, list[str]]:
        return OrderedDict((name, self._names(ids))
                           for name, ids in zip(self.layer_names, self.bottom_ids))

    def _names(self, ids: list[int]) -> list[str]:
        return [self.blob_names[i] for i in ids if self.blob_names[i] != AUTOMATIC]

    def _layer_index(self, name: str) -> int:
        try:
            return self.layer_names.index(name)
        except ValueError:
            raise UnknownLayerError(f"net '{self.name}' has no layer '{name}' (layers: "
                                    f"{', '.join(self.layer_names)})") from None

    def _blob(self, blobs: Mapping[str, Blob], name: str) -> Blob:
        try:
            return blobs[name]
        except KeyError:
            raise UnknownBlobError(f"net '{self.name}' has no blob '{name}' (blobs: "
                                   f"{', '.join(blobs)})") from None

    # --- running -------------------------------------------------------------------------------
    def forward(self, blobs=None, start=None, end=None, **kwargs) -> dict[str, np.ndarray]:
        """Run layers ``start`` to ``end`` (names; default all) and return ``{name: data}`` for
        the net's outputs, or the tops of ``end`` when given, plus the blobs named in
        ``blobs``. Keyword arguments give the data of every net input (each as large as the
        input blob's batch); without them the data layers produce the batch."""
        extra = list(blobs or [])
        start_id = self._layer_index(start) if start is not None else 0
        if end is not None:
            end_id = self._layer_index(end)
            wanted = self.top_names[end] + extra
        else:
            end_id = len(self.layers) - 1
            wanted = self.outputs + extra
        current = self.blobs
        for name in wanted:
            self._blob(current, name)
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise PyforgeError(f"input blob arguments {sorted(kwargs)} do not match the net "
                                   f"inputs {sorted(self.inputs)}")
            for name, value in kwargs.items():
                _assign(current[name], "data", name, value)
        self._forward(start_id, end_id)
        current = self.blobs  # a layer may have reshaped a blob (new arrays)
        return {name: current[name].data for name in dict.fromkeys(wanted)}

    def backward(self, diffs=None, start=None, end=None, **kwargs) -> dict[str, np.ndarray]:
        """Run backward from layer ``start`` down to ``end`` (names; default all) and return
        ``{name: diff}`` for the net's inputs, or the bottoms of ``end`` when given, plus the
        blobs named in ``diffs``. Keyword arguments give the diff of every net output; without
        them the loss layers' weights drive the pass."""
        extra = list(diffs or [])
        start_id = self._layer_index(start) if start is not None else len(self.layers) - 1
        if end is not None:
            end_id = self._layer_index(end)
            wanted = self.bottom_names[end] + extra
        else:
            end_id = 0
            wanted = self.inputs + extra
        current = self.blobs
        for name in wanted:
            self._blob(current, name)
        if kwargs:
            if set(kwargs) != set(self.outputs):
                raise PyforgeError(f"top diff arguments {sorted(kwargs)} do not match the net "
                                   f"outputs {sorted(self.outputs)}")
            for name, value in kwargs.items():
                _assign(current[name], "diff", name, value)
        # pycaffe runs BackwardFromTo, which (unlike Backward()) logs no parameter norms.
        self._backward(start_id, end_id)
        return {name: current[name].diff for name in dict.fromkeys(wanted)}

    def forward_all(self, blobs=None, **kwargs) -> dict[str, np.ndarray]:
        """Forward any number of items in batches of the net's batch size; returns
        ``{name: array}`` with one row per item (the last batch is zero-padded, and the padding
        dropped from the results)."""
        if not kwargs:
            raise PyforgeError("forward_all needs the input arrays as keyword arguments "
                               f"(inputs: {', '.join(self.inputs) or 'none'})")
        names = list(dict.fromkeys(self.outputs + list(blobs or [])))
        collected = {name: _Rows() for name in names}
        for batch in self._batch(kwargs):
            for name, value in self.forward(blobs=blobs, **batch).items():
                collected[name].add(value)
        pad = self._padding(kwargs)
        return {name: rows.array(pad) for name, rows in collected.items()}

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """Forward and backward in batches: keyword arguments give input data (for forward)
        and output diffs (for backward); returns ``(outputs, diffs)`` dicts as forward_all
        does. Batches without given arrays use the blobs' current contents."""
        import itertools

        out_names = list(dict.fromkeys(self.outputs + list(blobs or [])))
        diff_names = list(dict.fromkeys(self.inputs + list(diffs or [])))
        all_outs = {name: _Rows() for name in out_names}
        all_diffs = {name: _Rows() for name in diff_names}
        forward_batches = self._batch({k: kwargs[k] for k in self.inputs if k in kwargs})
        backward_batches = self._batch({k: kwargs[k] for k in self.outputs if k in kwargs})
        for fb, bb in itertools.zip_longest(forward_batches, backward_batches, fillvalue={}):
            for name, value in self.forward(blobs=blobs, **fb).items():
                all_outs[name].add(value)
            for name, value in self.backward(diffs=diffs, **bb).items():
                all_diffs[name].add(value)
        pad = self._padding(kwargs) if kwargs else 0
        return ({name: rows.array(pad) for name, rows in all_outs.items()},
                {name: rows.array(pad) for name, rows in all_diffs.items()})

    def _batch_size(self) -> int:
        # pycaffe takes the batch size from the first blob of the net.
        first = self.blob_list[0] if self.blob_list else None
        if first is None or not first.shape:
            raise PyforgeError(f"net '{self.name}' has no batched first blob to split inputs by")
        return first.shape[0]

    def _padding(self, arrays: Mapping[str, np.ndarray]) -> int:
        n = len(next(iter(arrays.values())))
        size = self._batch_size()
        return (-n) % size

    def _batch(self, arrays: Mapping[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Split ``{name: array}`` into batches of the net's batch size, zero-padding the
        last one (pycaffe's Net._batch)."""
        if not arrays:
            return
        n = len(next(iter(arrays.values())))
        size = self._batch_size()
        for start in range(0, n - n % size, size):
            yield {name: np.asarray(a)[start:start + size] for name, a in arrays.items()}
        remainder = n % size
        if remainder:
            padded = {}
            for name, a in arrays.items():
                a = np.asarray(a)
                padding = np.zeros((size - remainder,) + a.shape[1:], dtype=a.dtype)
                padded[name] = np.concatenate([a[n - remainder:], padding])
            yield padded

    def reshape(self) -> None:
        """Reshape every layer's tops after an input blob was reshaped (Caffe's Net::Reshape)."""
        for layer_id, layer in enumerate(self.layers):
            layer.reshape(self.bottoms(layer_id), self.tops(layer_id))

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """Give a MemoryData first layer its arrays: data (N, C, H, W) float32 and labels (N,)
        or (N, 1, 1, 1), N a multiple of its batch size. The arrays are used, not copied."""
        if isinstance(labels, np.ndarray) and labels.ndim == 1:
            labels = np.ascontiguousarray(labels[:, np.newaxis, np.newaxis, np.newaxis])
        self._set_input_arrays(data, labels)

    def _set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """pycaffe's binding under set_input_arrays: labels must already be (N, 1, 1, 1)."""
        first = self.layers[0] if self.layers else None
        if first is None or first.type_name != "MemoryData":
            raise InputArraysError("set_input_arrays may only be called if the first layer is "
                                   "a MemoryData layer")
        try:
            first.reset(data, labels)
        except NetError as exc:
            raise InputArraysError(exc.message) from None

    # --- pycaffe's bindings of Net::ForwardFromTo / BackwardFromTo ----------------------------
    def _forward(self, start: int, end: int) -> float:
        """Run layers ``start`` to ``end`` (indices, inclusive); returns their loss."""
        return self.forward_from_to(int(start), int(end))

    def _backward(self, start: int, end: int) -> None:
        """Run backward from layer ``start`` down to ``end`` (indices, inclusive)."""
        self.backward_from_to(int(start), int(end))

    # --- per-layer callbacks (Net::add_before_forward ...) ------------------------------------
    def before_forward(self, callback: Callable[[int], object]) -> None:
        """Call ``callback(layer_index)`` before each layer's forward."""
        self._callbacks["before_forward"].append(callback)

    def after_forward(self, callback: Callable[[int], object]) -> None:
        self._callbacks["after_forward"].append(callback)

    def before_backward(self, callback: Callable[[int], object]) -> None:
        """Call ``callback(layer_index)`` before each layer's backward (also for layers that
        need none, as Caffe does)."""
        self._callbacks["before_backward"].append(callback)

    def after_backward(self, callback: Callable[[int], object]) -> None:
        self._callbacks["after_backward"].append(callback)

    def forward_from_to(self, start: int = 0, end: int | None = None) -> float:
        before, after = self._callbacks["before_forward"], self._callbacks["after_forward"]
        if not before and not after:
            return super().forward_from_to(start, end)
        end = len(self.layers) - 1 if end is None else end
        loss = 0.0
        for layer_id in range(start, end + 1):
            for callback in before:
                callback(layer_id)
            loss += super().forward_from_to(layer_id, layer_id)
            for callback in after:
                callback(layer_id)
        return loss

    def backward_from_to(self, start: int, end: int = 0) -> None:
        before, after = self._callbacks["before_backward"], self._callbacks["after_backward"]
        if not before and not after:
            super().backward_from_to(start, end)
            return
        for layer_id in range(start, end - 1, -1):
            for callback in before:
                callback(layer_id)
            super().backward_from_to(layer_id, layer_id)
            for callback in after:
                callback(layer_id)

    # --- weights ---------------------------------------------------------------------------------
    def copy_from(self, filename) -> None:
        """Copy parameters by layer name from a .caffemodel or .caffemodel.h5."""
        load_weights(self, os.fspath(filename))

    def share_with(self, other: _EngineNet) -> None:
        """Use ``other``'s parameter data, layer by layer name (Caffe's ShareTrainedLayersWith)."""
        self.share_trained_layers_with(other)

    def save(self, filename) -> None:
        """Write the weights as a binary .caffemodel (no diffs)."""
        write_model(os.fspath(filename), self)

    def save_hdf5(self, filename) -> None:
        """Write the weights as Caffe's HDF5 (.caffemodel.h5)."""
        write_model(os.fspath(filename), self, hdf5=True)

    def load_hdf5(self, filename) -> None:
        """Copy parameters by layer name from Caffe's HDF5 weights."""
        path = os.fspath(filename)
        if os.path.exists(path) and not is_hdf5(path):
            raise PyforgeError(f"{path}: not an HDF5 file; load a binary .caffemodel with "
                               "net.copy_from()")
        load_weights(self, path)


def adopt(net: _EngineNet) -> Net:
    """Give a net built by pyforge's engine (for example by a solver) the pycaffe interface.

    The pycaffe class only adds methods and a few attributes, so the built object is promoted
    in place rather than rebuilt: the solver keeps the very object the user sees."""
    if not isinstance(net, Net):
        net.__class__ = Net
        net._init_pycaffe()
    return net


def _net_arguments(args: tuple, kwargs: dict) -> tuple[int, int, list[str], str | None]:
    """(phase, level, stages, weights) from pycaffe's two constructor forms."""
    unknown = set(kwargs) - {"phase", "level", "stages", "weights"}
    if unknown:
        raise PyforgeError(f"caffe.Net got unexpected keyword argument(s) {sorted(unknown)}; "
                           "it takes (network_file, phase, level=0, stages=None, weights=None)")
    args = list(args)
    weights = kwargs.get("weights")
    if args and isinstance(args[0], (str, os.PathLike)):
        # Net(file, weights, phase): pycaffe's older form, still accepted there with a warning.
        if weights is not None:
            raise PyforgeError("caffe.Net got the weights twice (positionally and as weights=)")
        weights = args.pop(0)
        get_logger().warning("caffe.Net(network_file, weights, phase) is deprecated; use "
                             "caffe.Net(network_file, phase, weights=weights)")
    if len(args) > 3:
        raise PyforgeError(f"caffe.Net takes at most 5 arguments, got {len(args) + 1}")
    names = ["phase", "level", "stages"]
    values = dict(zip(names, args))
    for name in names[: len(args)]:
        if name in kwargs:
            raise PyforgeError(f"caffe.Net got {name} twice")
    values.update({k: v for k, v in kwargs.items() if k in names})
    if "phase" not in values:
        raise PyforgeError("caffe.Net needs a phase: caffe.Net(network_file, caffe.TEST) or "
                           "caffe.TRAIN")
    phase = values["phase"]
    if isinstance(phase, bool) or phase not in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        raise PyforgeError(f"caffe.Net: phase must be caffe.TRAIN (0) or caffe.TEST (1), found "
                           f"{phase!r}")
    level = values.get("level", 0)
    stages = values.get("stages") or []
    if isinstance(stages, str):
        stages = [stages]
    if weights is not None:
        weights = os.fspath(weights)
    return int(phase), int(level), [str(s) for s in stages], weights


def _assign(blob: Blob, field: str, name: str, value) -> None:
    """``blob.<field>[...] = value`` with pycaffe's batch check and a clear shape error."""
    target = getattr(blob, field)
    value = np.asarray(value)
    if value.ndim and target.ndim and value.shape[0] != target.shape[0]:
        raise PyforgeError(f"'{name}' is not batch sized: {value.shape[0]} items given, the "
                           f"blob holds {target.shape[0]} (shape {target.shape})")
    try:
        target[...] = value
    except ValueError:
        raise PyforgeError(f"'{name}' has shape {value.shape}, the blob has {target.shape}; "
                           f"reshape it first (net.blobs['{name}'].reshape(...) then "
                           "net.reshape())") from None


class _Rows:
    """The rows one output collects over batches: one per item, or one per batch for a
    scalar (a loss), which has no padding rows to drop."""

    def __init__(self) -> None:
        self.rows: list = []
        self.per_batch = False

    def add(self, value: np.ndarray) -> None:
        if value.ndim == 0:
            self.per_batch = True
            self.rows.append(value.copy())
        else:
            self.rows.extend(value.copy())

    def array(self, pad: int) -> np.ndarray:
        array = np.asarray(self.rows)
        if pad and not self.per_batch:
            array = array[: len(array) - pad]
        return array


def __getattr__(name: str):
    # pycaffe's module also holds the solver classes; they live in caffe._solver, which
    # imports this module (so they cannot be imported here at load time).
    from . import _solver

    if name in _solver.__all__:
        return getattr(_solver, name)
    raise AttributeError(f"module 'caffe.pycaffe' has no attribute {name!r}")
