"""Convolutions that run the in-place layers after them in their own pass.

Deploy nets follow most convolutions with BatchNorm (stored statistics), Scale and ReLU, in
place on the convolution's output (or the first of them writing a new blob, the others in place
on it): three more passes over a blob that has left the cache.
When such a chain follows a convolution immediately, :class:`Net` runs it inside the
convolution (:class:`pyforge.layers.conv.Epilogue`), image by image (or plane by plane) while
the output is still in cache, with each layer's own arithmetic in its order: the blobs hold
the same bits as when the layers run one after the other. Nothing can tell the difference:
the chain works in place, so its intermediate values never stand in a blob after the pass.

When the first follower writes a new blob (MobileNet's BatchNorm) and nothing else reads the
convolution's own output, the pass leaves that output unwritten (``elidable``): half the
memory traffic of such a layer. The output is still there for whoever asks: the blob is handed
a recompute (:meth:`pyforge.blob.Blob.defer`, the convolution run again over its bottom), and
once read it is computed on every pass. Before a pass over part of the net (pycaffe's
``forward(start=, end=)``) the outputs still left out are computed, since that pass may change
their bottoms. Only nets that run no backward through the chain elide (deploy and test nets).
The recompute reads the bottom as it is when the output is read: an input written into the
net after the pass and before that read is the one difference Caffe could show.

When the chain's result goes nowhere but into a Concat along channels (GoogLeNet's inception
branches, SqueezeNet's fire expands), the pass writes it straight into its part of the
Concat's top (``sink``), and the Concat skips that copy. The result's own blob is handed a
recompute that copies its values back from there (:class:`pyforge.blob.CopyBack`). This
applies when nothing has read that blob yet, no backward runs through the chain or the
Concat, no later layer writes the Concat's top in place, and the forward range reaches the
Concat. The copy back reads the Concat's top as it stands: a write into that top after the pass
and before the read is the one difference here.

A chain runs fused only when the whole of it is inside the forward range asked for and
``debug_info`` (which prints every layer's output) is off; ``pyforge time`` times the layers
one by one, unfused.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..blob import CopyBack
from ..layers.conv import ConvolutionLayer, Epilogue
from ..layers.neuron import ReLULayer
from ..layers.normalization import BatchNormLayer
from ..layers.scale import ScaleLayer
from ..layers.shape import ConcatLayer

#: Layer types a chain may hold, in the order they may follow each other.
_ORDER = (BatchNormLayer, ScaleLayer, ReLULayer)


@dataclass(frozen=True)
class Chain:
    """A convolution (``conv``) and the ids of the layers it runs in its pass, in order."""

    conv: int
    members: tuple[int, ...]
    #: Whether the convolution's output may be left unwritten (see the module's docstring).
    elidable: bool = False
    #: The id of the Concat the chain's result may be written into (see the module's
    #: docstring), or None.
    sink: int | None = None

    @property
    def last(self) -> int:
        return self.members[-1]


def plan_chains(net) -> dict[int, Chain]:
    """The fusable chains of ``net``, by the layer id of their convolution."""
    chains = {}
    for conv_id, conv in enumerate(net.layers):
        if type(conv) is not ConvolutionLayer or len(net.top_ids[conv_id]) != 1:
            continue
        if len(net.bottom_ids[conv_id]) != 1 or any(conv.loss_weights):
            continue
        blob = net.top_ids[conv_id][0]
        members: list[int] = []
        kinds = list(_ORDER)
        for layer_id in range(conv_id + 1, len(net.layers)):
            layer = net.layers[layer_id]
            kind = next((k for k in kinds if type(layer) is k), None)
            tops = net.top_ids[layer_id]
            # The first follower may write a new blob (MobileNet's BatchNorm does), which the
            # others then work on in place; the convolution's output keeps its own values.
            if (kind is None or net.bottom_ids[layer_id] != [blob] or len(tops) != 1
                    or (members and tops != [blob]) or any(layer.loss_weights)
                    or not _fusable(layer, conv.num_output)):
                break
            members.append(layer_id)
            blob = tops[0]
            kinds = kinds[kinds.index(kind) + 1:]
        if members:
            chains[conv_id] = Chain(conv_id, tuple(members),
                                    _elidable(net, conv_id, tuple(members)),
                                    _concat_sink(net, conv_id, tuple(members)))
    return chains


def _elidable(net, conv_id: int, members: tuple[int, ...]) -> bool:
    """Whether nothing but the chain's first follower reads the convolution's output, that
    follower writes a new blob and no backward runs through the chain.

    The recompute reads the convolution's bottom as it stands when the output is read. No
    later layer can have changed it: a layer working in place on it would be its second
    reader, and Caffe's wiring (a Split before both readers) forbids that."""
    output = net.top_ids[conv_id][0]
    if net.top_ids[members[0]] == [output] or output in net.output_ids:
        return False
    readers = [i for i, bottoms in enumerate(net.bottom_ids) if output in bottoms]
    if readers != [members[0]]:
        return False
    return not any(net.layer_need_backward[i] for i in (conv_id, *members))


def _concat_sink(net, conv_id: int, members: tuple[int, ...]) -> int | None:
    """The Concat (along channels) that alone reads the chain's result, when no backward
    runs through either and no later layer writes its top in place; else None."""
    result = net.top_ids[members[-1]][0]
    readers = [i for i, bottoms in enumerate(net.bottom_ids)
               if result in bottoms and i not in members]
    if len(readers) != 1 or result in net.output_ids:
        return None
    concat_id = readers[0]
    concat, bottoms = net.layers[concat_id], net.bottom_ids[concat_id]
    if (type(concat) is not ConcatLayer or len(bottoms) < 2 or bottoms.count(result) != 1
            or getattr(concat, "axis", None) != 1):
        return None
    whole = net.top_ids[concat_id][0]
    if any(whole in net.top_ids[i] for i in range(concat_id + 1, len(net.layers))):
        return None
    return None if any(net.layer_need_backward[i]
                       for i in (conv_id, *members, concat_id)) else concat_id


def _fusable(layer, channels: int) -> bool:
    if isinstance(layer, BatchNormLayer):
        return layer.use_global_stats and layer.channels == channels
    if isinstance(layer, ScaleLayer):
        # One learned factor (and offset) per channel (axis 1) of the (N, C, H, W) output.
        return (len(layer.blobs) == 1 + layer.bias_term
                and all(blob.shape == (channels,) for blob in layer.blobs)
                and layer.param.scale_param.axis in (1, -3))
    return True


def epilogue(net, chain: Chain) -> Epilogue:
    """The parameters of ``chain``'s layers as they stand now (statistics and weights may have
    changed since the last pass)."""
    result = Epilogue()
    first = chain.members[0]
    if net.top_ids[first] != net.top_ids[chain.conv]:
        # (overwritten whole, so neither a read nor a reason to run a recompute left for it)
        result.dst = net.blob_list[net.top_ids[first][0]].output_array()
    for layer_id in chain.members:
        layer = net.layers[layer_id]
        if isinstance(layer, BatchNormLayer):
            result.mean, result.std = layer.stored_statistics()
        elif isinstance(layer, ScaleLayer):
            result.scale = layer.blobs[0].data
            if layer.bias_term:
                result.shift = layer.blobs[1].data
            if net.layer_need_backward[layer_id]:
                result.kept = layer.temp  # the input its backward reads, as its forward keeps
        else:
            result.slope = float(layer.param.relu_param.negative_slope)
    return result


def run_chain(net, chain: Chain, end: int) -> None:
    """A convolution and its in-place followers in one pass (none of them has a loss), in a
    forward pass that ends at layer ``end``. The convolution's own output is left for a
    recompute on request when the chain allows it and nobody has read that blob yet; the
    result goes straight into the Concat's top when it may (see the module's docstring)."""
    bottom, top = net.bottoms(chain.conv), net.tops(chain.conv)
    conv = net.layers[chain.conv]
    result = net.tops(chain.last)[0]
    top[0].output_array()  # recomputes left by the last pass are moot now
    result.output_array()
    for layer_id in (chain.conv, *chain.members):
        net.layers[layer_id].reshape(net.bottoms(layer_id), net.tops(layer_id))
    if not bottom[0].count:
        return
    plan = epilogue(net, chain)
    band = _concat_band(net, chain, end, result) if conv.can_elide else None
    if band is not None:
        plan.dst, plan.dst_channel, band = band
    elide_own = chain.elidable and conv.can_elide and not top[0].observed
    plan.elide = elide_own or (band is not None and result is top[0])
    conv.forward(bottom, top, plan)
    if elide_own:
        # with this pass's weights, whatever happens to them before the read
        top[0].defer(functools.partial(conv.forward, bottom, top, None, conv.frozen_params()))
    if band is not None:
        result.defer(CopyBack(result, band))


def _concat_band(net, chain: Chain, end: int, result):
    """Where in its Concat's top the chain's ``result`` goes this pass: (the top's array, the
    first channel, the band of the top viewed in 2-D), or None when the chain writes its own
    blob. The Concat has not been reshaped for this pass yet: a top whose shape does not fit
    the result (a new batch size) takes the plain path, and the Concat checks the band
    again before it skips its copy."""
    if chain.sink is None or chain.sink > end or result.observed:
        return None
    whole = net.tops(chain.sink)[0]
    channel = 0
    for part in net.bottoms(chain.sink):
        if part is result:
            break
        channel += part.shape[1] if part.num_axes > 1 else 0
    n, c = result.shape[:2]
    if (whole.num_axes != 4 or whole.shape[0] != n or whole.shape[2:] != result.shape[2:]
            or whole.shape[1] < channel + c):
        return None
    array = whole.data
    plane = result.count // max(n * c, 1)
    band = array.reshape(n, -1)[:, channel * plane:(channel + c) * plane]
    return array, channel, band


def settle_elided(net) -> None:
    """Compute every output the last pass left out, before a pass over part of the net
    changes the bottoms their recomputes would read."""
    for chain in net.chains.values():
        if chain.elidable:
            net.blob_list[net.top_ids[chain.conv][0]].settle()
        if chain.sink is not None:
            net.blob_list[net.top_ids[chain.last][0]].settle()
