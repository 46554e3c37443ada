"""Net: builds layers from a NetParameter and runs forward and backward over them."""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..blob import Blob, mean_abs
from ..errors import NetError, WeightsError, user_code_error_line
from ..layers import LAYERS
from ..layers.base import Layer, NetContext
from ..log import fmt, get_logger
from ..proto import caffe_pb2
from ..proto.io import debug_string
from ..proto.numbers import layer_settings_error
from ..proto.wire import net_chunks
from ..registry import UnknownNameError
from ..rng import make_rng
from .fusion import plan_chains, run_chain, settle_elided
from .graph import filter_net, insert_splits
from .sharing import sharing_problem
from .weights import copy_params


@dataclass
class _Wiring:
    """What Net construction tracks while it appends layers."""

    #: Blob name -> blob id, for every named blob so far.
    blob_ids: dict[str, int] = field(default_factory=dict)
    #: Names of the blobs no later layer has consumed yet (the net's outputs at the end).
    available: set[str] = field(default_factory=set)
    #: Shared parameter name -> the id of its owner in params_flat.
    param_names: dict[str, int] = field(default_factory=dict)
    #: Floats of top data so far (Caffe's "Memory required for data").
    memory: int = 0


@dataclass
class LearnableParam:
    """One owner parameter blob, with the multipliers the solver applies to it."""

    blob: Blob
    lr_mult: float
    decay_mult: float
    has_lr_mult: bool
    has_decay_mult: bool
    layer: str
    index: int


class Net:
    """A built network (Caffe's Net<float>).

    ``blobs``/``params``/``layers`` follow pycaffe's names. ``forward`` returns the loss and
    ``backward`` runs the layers that need it, from last to first.
    """

    def __init__(self, param: caffe_pb2.NetParameter, rng: np.random.Generator | None = None,
                 logger: logging.Logger | None = None, source_file: str | None = None,
                 reserve_diff: int = 0) -> None:
        #: Extra float slots after the gradients in the diff buffer (data-parallel training
        #: sends its control flags in the same collective as the gradients).
        self.reserve_diff = reserve_diff
        self.logger = logger or get_logger()
        self.source_file = source_file
        rng = rng if rng is not None else make_rng(None)
        self.phase = param.state.phase
        filtered = filter_net(param, self.logger)
        self.logger.info("Initializing net from parameters: \n%s", debug_string(filtered))
        built = insert_splits(filtered)
        self.name = built.name
        self.ctx = NetContext(phase=self.phase, rng=rng, logger=self.logger,
                              source_file=source_file)
        self._init_tables()
        wiring = _Wiring()
        for layer_id, lp in enumerate(built.layer):
            self._append_layer(layer_id, lp, wiring)
        self._prune_backward(built.force_backward)
        self.output_ids = [wiring.blob_ids[name] for name in sorted(wiring.available)]
        for blob_id in self.output_ids:
            self.logger.info("This network produces output %s", self.blob_names[blob_id])
        self._share_weights()
        self.chains = plan_chains(self)
        self.debug_info = built.debug_info
        self.param_proto = built
        self.logger.info("Network initialization done.")

    # --- construction helpers ----------------------------------------------------------------
    def _init_tables(self) -> None:
        """The per-layer, per-blob and per-param tables Caffe's Net keeps (same names)."""
        self.layers: list[Layer] = []
        self.layer_names: list[str] = []
        self.blob_list: list[Blob] = []
        self.blob_names: list[str] = []
        self.blob_need_backward: list[bool] = []
        self.bottom_ids: list[list[int]] = []
        self.top_ids: list[list[int]] = []
        self.bottom_need_backward: list[list[bool]] = []
        self.layer_need_backward: list[bool] = []
        self.loss_weight_by_blob: dict[int, float] = {}
        self.input_ids: list[int] = []
        self.params_flat: list[Blob] = []  # every param blob, owners and sharers
        self.param_owner: list[int] = []  # -1 for owners, else index into params_flat
        self.param_display_names: list[str] = []
        self.param_layer_index: list[tuple[int, int]] = []
        self.param_ids_of_layer: list[list[int]] = []
        self.learnable: list[LearnableParam] = []
        self.learnable_id_of_param: list[int] = []

    def _append_layer(self, layer_id: int, lp: caffe_pb2.LayerParameter,
                      wiring: _Wiring) -> None:
        """Create layer ``layer_id``, wire its bottoms and tops, set it up and register its
        parameters (Caffe's Net::Init loop body), logging what Caffe logs."""
        log = self.logger.info
        if not lp.HasField("phase"):
            lp.phase = self.phase
        if len(lp.propagate_down) and len(lp.propagate_down) != len(lp.bottom):
            raise NetError(f"layer '{lp.name}': propagate_down must be given 0 or "
                           f"{len(lp.bottom)} times (once per bottom), found "
                           f"{len(lp.propagate_down)}")
        problem = layer_settings_error(lp)
        if problem is not None:
            raise NetError(f"{self.source_file}: {problem}" if self.source_file else problem)
        log("Creating layer %s", lp.name)
        # Caffe's Net::Init decides which parameters need backward from the net's copy of the
        # LayerParameter, read before the layer's own LayerSetUp may add param specs to its
        # copy (BatchNorm adds lr_mult 0 for its statistics); AppendParam reads the layer's copy.
        net_lr_mults = [spec.lr_mult for spec in lp.param]
        try:
            cls = LAYERS.get(lp.type, f"layer '{lp.name}'")
        except UnknownNameError as exc:
            raise NetError(str(exc)) from None
        with _resource_errors(lp.name):
            layer = cls(lp, self.ctx)
        self.layers.append(layer)
        self.layer_names.append(lp.name)
        log("Creating Layer %s", lp.name)
        bottoms, bottom_need, need_backward = self._wire_bottoms(lp, wiring)
        tops = self._wire_tops(lp, cls, wiring)
        self.bottom_ids.append(bottoms)
        self.top_ids.append(tops)
        self.bottom_need_backward.append(bottom_need)
        with _resource_errors(lp.name):
            layer.setup([self.blob_list[i] for i in bottoms], [self.blob_list[i] for i in tops])
        log("Setting up %s", lp.name)
        for j, blob_id in enumerate(tops):
            weight = layer.loss_weights[j]
            self.loss_weight_by_blob[blob_id] = weight
            log("Top shape: %s", self.blob_list[blob_id].shape_string())
            if weight:
                log("    with loss weight %s", fmt(weight))
            wiring.memory += self.blob_list[blob_id].count
        log("Memory required for data: %d", wiring.memory * 4)
        need_backward |= self._register_params(layer_id, net_lr_mults, wiring)
        self.layer_need_backward.append(need_backward)
        if need_backward:
            for blob_id in tops:
                self.blob_need_backward[blob_id] = True

    def _wire_bottoms(self, lp: caffe_pb2.LayerParameter,
                      wiring: _Wiring) -> tuple[list[int], list[bool], bool]:
        """Blob ids of the layer's bottoms, whether each needs backward, and whether any
        bottom blob needs backward at all (Caffe's AppendBottom)."""
        bottoms: list[int] = []
        bottom_need: list[bool] = []
        need_backward = False
        for j, name in enumerate(lp.bottom):
            if name not in wiring.available:
                raise NetError(f"layer '{lp.name}': unknown bottom blob '{name}' (bottom "
                               f"index {j})")
            blob_id = wiring.blob_ids[name]
            self.logger.info("%s <- %s", lp.name, name)
            bottoms.append(blob_id)
            wiring.available.discard(name)
            need = self.blob_need_backward[blob_id]
            if len(lp.propagate_down):
                need = lp.propagate_down[j]
            bottom_need.append(need)
            need_backward |= self.blob_need_backward[blob_id]
        return bottoms, bottom_need, need_backward

    def _wire_tops(self, lp: caffe_pb2.LayerParameter, cls: type[Layer],
                   wiring: _Wiring) -> list[int]:
        """Blob ids of the layer's tops, new blobs except in place (Caffe's AppendTop); loss
        layers get their automatic tops."""
        tops: list[int] = []
        for j, name in enumerate(lp.top):
            if j < len(lp.bottom) and name == lp.bottom[j]:
                self.logger.info("%s -> %s (in-place)", lp.name, name)
                tops.append(wiring.blob_ids[name])
            elif name in wiring.blob_ids:
                raise NetError(f"layer '{lp.name}': top blob '{name}' is produced by "
                               "multiple sources (only in-place reuse, top i == bottom i, "
                               "is allowed)")
            else:
                self.logger.info("%s -> %s", lp.name, name)
                tops.append(self._new_blob(name))
                wiring.blob_ids[name] = tops[-1]
            if lp.type == "Input":
                self.input_ids.append(tops[-1])
            wiring.available.add(name)
        if cls.auto_top_blobs:
            needed = max(cls.min_top_blobs, cls.exact_num_top_blobs)
            for _ in range(len(lp.top), needed):
                tops.append(self._new_blob("(automatic)"))
        return tops

    def _register_params(self, layer_id: int, net_lr_mults: list[float],
                         wiring: _Wiring) -> bool:
        """Set which parameters get gradients and append each to the net's parameter tables;
        returns whether any parameter needs backward.

        As Caffe 1.0's Net::Init, a parameter needs backward when the *net's* param spec (the
        prototxt's, ``net_lr_mults``) has a non-zero lr_mult, default 1; the learning-rate and
        decay multipliers the solver uses come from the *layer's* copy (``_append_param``). So
        a BatchNorm written without ``param { lr_mult: 0 }`` has its statistics marked as
        needing backward (debug_info prints their zero diffs, and the layer makes its tops
        need backward) while the solver steps them with lr_mult 0."""
        layer = self.layers[layer_id]
        n_params = len(layer.blobs)
        if len(net_lr_mults) > n_params:
            raise NetError(f"layer '{layer.param.name}': too many param specs "
                           f"({len(net_lr_mults)}) for its {n_params} parameter blob(s)")
        layer.param_propagate_down = [
            (net_lr_mults[i] if i < len(net_lr_mults) else 1.0) != 0 for i in range(n_params)
        ]
        self.param_ids_of_layer.append([])
        for i in range(n_params):
            self._append_param(layer_id, i, wiring.param_names)
        return any(layer.param_propagate_down)

    def _new_blob(self, name: str) -> int:
        self.blob_list.append(Blob())
        self.blob_names.append(name)
        self.blob_need_backward.append(False)
        return len(self.blob_list) - 1

    def _append_param(self, layer_id: int, param_id: int, name_index: dict[str, int]) -> None:
        """Register one parameter blob (Caffe's AppendParam), reading the layer's own copy of
        its LayerParameter: the specs a layer added in its setup count here."""
        layer = self.layers[layer_id]
        lp = layer.param
        spec = lp.param[param_id] if param_id < len(lp.param) else caffe_pb2.ParamSpec()
        name = spec.name
        self.param_display_names.append(name or str(param_id))
        net_param_id = len(self.params_flat)
        blob = layer.blobs[param_id]
        self.params_flat.append(blob)
        self.param_ids_of_layer[layer_id].append(net_param_id)
        self.param_layer_index.append((layer_id, param_id))
        if not name or name not in name_index:
            self.param_owner.append(-1)
            if name:
                name_index[name] = net_param_id
            self.learnable_id_of_param.append(len(self.learnable))
            self.learnable.append(LearnableParam(
                blob=blob, lr_mult=spec.lr_mult, decay_mult=spec.decay_mult,
                has_lr_mult=spec.HasField("lr_mult"), has_decay_mult=spec.HasField("decay_mult"),
                layer=lp.name, index=param_id))
            return
        owner_id = name_index[name]
        self.param_owner.append(owner_id)
        owner_layer, owner_index = self.param_layer_index[owner_id]
        self.logger.info("Sharing parameters '%s' owned by layer '%s', param index %d", name,
                         self.layer_names[owner_layer], owner_index)
        owner_blob = self.params_flat[owner_id]
        where = (f"cannot share param '{name}' owned by layer '{self.layer_names[owner_layer]}' "
                 f"with layer '{lp.name}'")
        if spec.share_mode == caffe_pb2.ParamSpec.PERMISSIVE:
            if blob.count != owner_blob.count:
                raise NetError(f"{where}: count mismatch; owner shape is "
                               f"{owner_blob.shape_string()}, sharing shape is "
                               f"{blob.shape_string()}")
        elif blob.shape != owner_blob.shape:
            raise NetError(f"{where}: shape mismatch; owner shape is {owner_blob.shape_string()}, "
                           f"sharing shape is {blob.shape_string()}")
        learnable_id = self.learnable_id_of_param[owner_id]
        self.learnable_id_of_param.append(learnable_id)
        owner = self.learnable[learnable_id]
        if spec.HasField("lr_mult"):
            if owner.has_lr_mult and spec.lr_mult != owner.lr_mult:
                raise NetError(f"shared param '{name}' has mismatched lr_mult: {spec.lr_mult} in "
                               f"layer '{lp.name}', {owner.lr_mult} in its owner")
            owner.has_lr_mult, owner.lr_mult = True, spec.lr_mult
        if spec.HasField("decay_mult"):
            if owner.has_decay_mult and spec.decay_mult != owner.decay_mult:
                raise NetError(f"shared param '{name}' has mismatched decay_mult: "
                               f"{spec.decay_mult} in layer '{lp.name}', {owner.decay_mult} in "
                               "its owner")
            owner.has_decay_mult, owner.decay_mult = True, spec.decay_mult

    def _prune_backward(self, force_backward: bool) -> None:
        """Caffe's backward analysis: skip layers that do not reach a loss."""
        under_loss: set[str] = set()
        skip_backprop: set[str] = set()
        for layer_id in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[layer_id]
            contributes = False
            skip_down = True
            for j, blob_id in enumerate(self.top_ids[layer_id]):
                name = self.blob_names[blob_id]
                if layer.loss_weights[j] or name in under_loss:
                    contributes = True
                if name not in skip_backprop:
                    skip_down = False
                if contributes and not skip_down:
                    break
            if self.layer_need_backward[layer_id] and skip_down:
                self.layer_need_backward[layer_id] = False
                self.bottom_need_backward[layer_id] = [False] * len(self.bottom_ids[layer_id])
            if not contributes:
                self.layer_need_backward[layer_id] = False
            verdict = "needs" if self.layer_need_backward[layer_id] else "does not need"
            self.logger.info("%s %s backward computation.", self.layer_names[layer_id], verdict)
            for j, blob_id in enumerate(self.bottom_ids[layer_id]):
                name = self.blob_names[blob_id]
                if contributes:
                    under_loss.add(name)
                else:
                    self.bottom_need_backward[layer_id][j] = False
                if not self.bottom_need_backward[layer_id][j]:
                    skip_backprop.add(name)
        if force_backward:
            for layer_id, layer in enumerate(self.layers):
                self.layer_need_backward[layer_id] = True
                for j, blob_id in enumerate(self.bottom_ids[layer_id]):
                    need = self.bottom_need_backward[layer_id][j] or layer.allow_force_backward(j)
                    self.bottom_need_backward[layer_id][j] = need
                    self.blob_need_backward[blob_id] = self.blob_need_backward[blob_id] or need
                layer.param_propagate_down = [True] * len(layer.blobs)

    def _share_weights(self) -> None:
        """Put every owner parameter's data and diff into one contiguous buffer each, then let
        every sharer use its owner's memory (Caffe's ShareWeights).

        One buffer per net makes the update one vectorised operation and a data-parallel
        gradient exchange a single collective over ``param_diff``."""
        total = sum(p.blob.count for p in self.learnable)
        self.param_data = np.empty(total, dtype=np.float32)
        self.diff_buffer = np.zeros(total + self.reserve_diff, dtype=np.float32)
        self.param_diff = self.diff_buffer[:total]
        offset = 0
        for p in self.learnable:
            blob, n = p.blob, p.blob.count
            data = self.param_data[offset:offset + n].reshape(blob.shape)
            data[...] = blob.data
            blob.data = data
            blob.diff = self.param_diff[offset:offset + n].reshape(blob.shape)
            offset += n
        for i, owner in enumerate(self.param_owner):
            if owner >= 0:
                self.params_flat[i].share_data(self.params_flat[owner])
                self.params_flat[i].share_diff(self.params_flat[owner])

    # --- running -----------------------------------------------------------------------------
    def bottoms(self, layer_id: int) -> list[Blob]:
        return [self.blob_list[i] for i in self.bottom_ids[layer_id]]

    def tops(self, layer_id: int) -> list[Blob]:
        return [self.blob_list[i] for i in self.top_ids[layer_id]]

    def forward_from_to(self, start: int = 0, end: int | None = None, fuse: bool = True
                        ) -> float:
        """Run layers ``start`` to ``end``; return their weighted loss. A convolution whose
        in-place followers are all in the range runs them in its own pass
        (:mod:`pyforge.net.fusion`), unless ``debug_info`` prints every layer or ``fuse`` is
        false (``pyforge time``, which times the layers one by one)."""
        end = len(self.layers) - 1 if end is None else end
        if start > 0 or end < len(self.layers) - 1:
            settle_elided(self)
        loss = 0.0
        layer_id = start
        while layer_id <= end:
            chain = None if self.debug_info or not fuse else self.chains.get(layer_id)
            if chain is not None and chain.last <= end:
                run_chain(self, chain, end)
                layer_id = chain.last + 1
                continue
            layer = self.layers[layer_id]
            bottom, top = self.bottoms(layer_id), self.tops(layer_id)
            layer.reshape(bottom, top)
            if not (bottom and all(b.count == 0 for b in bottom)):
                # (an empty batch, e.g. after Filter, gives empty outputs)
                layer.forward(bottom, top)
                for j, weight in enumerate(layer.loss_weights):
                    if weight:
                        t = top[j]
                        loss += float(np.dot(t.data.ravel(), t.diff.ravel()))
                if self.debug_info:
                    self._forward_debug(layer_id)
            layer_id += 1
        return loss

    def forward_loss(self) -> float:
        """Run every layer; return the weighted loss (Caffe's Forward(&loss)).

        (``forward``/``backward`` are left to the pycaffe-style subclass, whose ``forward``
        returns a dict of outputs as pycaffe's does.)"""
        return self.forward_from_to(0, len(self.layers) - 1)

    def backward_from_to(self, start: int, end: int = 0) -> None:
        for layer_id in range(start, end - 1, -1):
            bottoms = self.bottoms(layer_id)
            if bottoms and all(b.count == 0 for b in bottoms):
                continue
            if self.layer_need_backward[layer_id]:
                self.layers[layer_id].backward(self.tops(layer_id),
                                               self.bottom_need_backward[layer_id],
                                               self.bottoms(layer_id))
                if self.debug_info:
                    self._backward_debug(layer_id)

    def backward_all(self) -> None:
        """Backward through every layer that needs it (Caffe's Backward())."""
        self.backward_from_to(len(self.layers) - 1, 0)
        if self.debug_info:
            asum_data = sum(p.blob.asum_data() for p in self.learnable)
            asum_diff = sum(p.blob.asum_diff() for p in self.learnable)
            sumsq_data = sum(p.blob.sumsq_data() for p in self.learnable)
            sumsq_diff = sum(p.blob.sumsq_diff() for p in self.learnable)
            self.logger.error(
                "    [Backward] All net params (data, diff): L1 norm = (%s, %s); "
                "L2 norm = (%s, %s)", fmt(np.float32(asum_data)), fmt(np.float32(asum_diff)),
                fmt(np.float32(np.sqrt(sumsq_data))), fmt(np.float32(np.sqrt(sumsq_diff))))

    def forward_backward(self) -> float:
        loss = self.forward_loss()
        self.backward_all()
        return loss

    def _forward_debug(self, layer_id: int) -> None:
        name = self.layer_names[layer_id]
        for blob_id in self.top_ids[layer_id]:
            blob = self.blob_list[blob_id]
            self.logger.info("    [Forward] Layer %s, top blob %s data: %s", name,
                             self.blob_names[blob_id], fmt(mean_abs(blob.data, np.float32)))
        for i, param_id in enumerate(self.param_ids_of_layer[layer_id]):
            blob = self.layers[layer_id].blobs[i]
            self.logger.info("    [Forward] Layer %s, param blob %s data: %s", name,
                             self.param_display_names[param_id],
                             fmt(mean_abs(blob.data, np.float32)))

    def _backward_debug(self, layer_id: int) -> None:
        name = self.layer_names[layer_id]
        for j, blob_id in enumerate(self.bottom_ids[layer_id]):
            if self.bottom_need_backward[layer_id][j]:
                blob = self.blob_list[blob_id]
                self.logger.info("    [Backward] Layer %s, bottom blob %s diff: %s", name,
                                 self.blob_names[blob_id], fmt(mean_abs(blob.diff, np.float32)))
        layer = self.layers[layer_id]
        for i, blob in enumerate(layer.blobs):
            if layer.param_propagate_down[i]:
                self.logger.info("    [Backward] Layer %s, param blob %d diff: %s", name, i,
                                 fmt(mean_abs(blob.diff, np.float32)))

    def clear_param_diffs(self) -> None:
        self.param_diff[...] = 0

    def update(self) -> None:
        """``data -= diff`` for every owner parameter (Caffe's Net::Update), in one pass over
        the contiguous parameter buffer."""
        np.subtract(self.param_data, self.param_diff, out=self.param_data)

    # --- pycaffe-style views -------------------------------------------------------------------
    @property
    def blobs(self) -> OrderedDict[str, Blob]:
        out: OrderedDict[str, Blob] = OrderedDict()
        for name, blob in zip(self.blob_names, self.blob_list):
            if name != "(automatic)":
                out[name] = blob
        return out

    @property
    def params(self) -> OrderedDict[str, list[Blob]]:
        out: OrderedDict[str, list[Blob]] = OrderedDict()
        for name, layer in zip(self.layer_names, self.layers):
            if layer.blobs:
                out[name] = layer.blobs
        return out

    @property
    def outputs(self) -> list[str]:
        return [self.blob_names[i] for i in self.output_ids]

    @property
    def inputs(self) -> list[str]:
        return [self.blob_names[i] for i in self.input_ids]

    def output_blobs(self) -> list[tuple[str, Blob, float]]:
        """(name, blob, loss weight) of each output, in Caffe's (name-sorted) order."""
        return [(self.blob_names[i], self.blob_list[i], self.loss_weight_by_blob.get(i, 0.0))
                for i in self.output_ids]

    def layer_by_name(self, name: str) -> Layer | None:
        for layer_name, layer in zip(self.layer_names, self.layers):
            if layer_name == name:
                return layer
        return None

    # --- weights ---------------------------------------------------------------------------------
    def to_proto(self, write_diff: bool = False, with_blobs: bool = True
                 ) -> caffe_pb2.NetParameter:
        """The net as built, with current parameter values (Caffe's Net::ToProto); without
        them when ``with_blobs`` is false."""
        out = caffe_pb2.NetParameter()
        out.name = self.name
        for layer in self.layers:
            lp = out.layer.add()
            lp.CopyFrom(layer.param)
            del lp.blobs[:]
            if with_blobs:
                for blob in layer.blobs:
                    lp.blobs.append(blob.to_proto(write_diff))
        return out

    def to_chunks(self, write_diff: bool = False) -> list:
        """The serialized :meth:`to_proto`, byte for byte, as chunks that reference the
        parameters' memory (:mod:`pyforge.proto.wire`): what snapshots write."""
        blobs = [[blob.to_chunks(write_diff) for blob in layer.blobs] for layer in self.layers]
        return net_chunks(self.to_proto(with_blobs=False), blobs)

    def copy_trained_layers_from(self, source: caffe_pb2.NetParameter, filename: str) -> None:
        """Copy parameters by layer name from a NetParameter (Caffe's CopyTrainedLayersFrom)."""
        blobs = [(layer.name, dict(enumerate(layer.blobs))) for layer in source.layer]
        self.copy_params_from(blobs, filename, missing_shared_ok=False)

    def copy_params_from(self, source, filename: str, missing_shared_ok: bool = False) -> None:
        """Copy ``[(layer name, {param index: BlobProto or ndarray})]`` into layers by name
        (see :func:`pyforge.net.weights.copy_params`)."""
        copy_params(self, source, filename, missing_shared_ok)

    def fingerprint(self) -> list:
        """What a snapshot must match to resume into this net: each layer with parameters, its
        type and its parameter shapes, in order."""
        return [[name, layer.type_name, [list(b.shape) for b in layer.blobs]]
                for name, layer in zip(self.layer_names, self.layers) if layer.blobs]

    def share_trained_layers_with(self, other: Net) -> None:
        """Use ``other``'s parameter data by layer name (Caffe's ShareTrainedLayersWith);
        a mismatch is a WeightsError naming its cause (:mod:`.sharing`)."""
        problem = sharing_problem(self, other)
        if problem is not None:
            raise WeightsError(problem)
        for name, src_layer in zip(other.layer_names, other.layers):
            layer = self.layer_by_name(name)
            if layer is None:
                self.logger.info("Ignoring source layer %s", name)
                continue
            for mine, theirs in zip(layer.blobs, src_layer.blobs):
                mine.data = theirs.data

    def get_state(self) -> dict:
        """Data cursors and random states of every layer that has them, by layer name."""
        return {name: state for name, layer in zip(self.layer_names, self.layers)
                if (state := layer.get_state()) is not None}

    def set_state(self, states: dict) -> None:
        for name, state in states.items():
            layer = self.layer_by_name(name)
            if layer is None:
                self.logger.warning("saved state for layer '%s', which this net does not have; "
                                    "ignored", name)
                continue
            layer.set_state(state)

    def close(self) -> None:
        for layer in self.layers:
            closer = getattr(layer, "close", None)
            if closer is not None:
                closer()


@contextlib.contextmanager
def _resource_errors(layer_name: str):
    """Shapes too large to allocate (or negative) are the net's fault: say which layer."""
    try:
        yield
    except MemoryError:
        raise NetError(f"layer '{layer_name}': not enough memory for its blobs (check the "
                       "shapes and num_output)") from None
    except ValueError as exc:
        text = str(exc)
        if user_code_error_line(exc):  # a Python layer's own ValueError stays the user's
            raise
        if "too big" in text or "negative dimensions" in text or "maximum supported" in text:
            raise NetError(f"layer '{layer_name}': impossible blob shape ({text})") from None
        raise
