"""Net-definition rewriting before layers are built: NetState filtering and Split insertion."""

from __future__ import annotations

import logging
from collections import defaultdict

from ..errors import NetError
from ..proto import caffe_pb2


def state_meets_rule(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule, layer_name: str,
                     logger: logging.Logger | None = None) -> bool:
    """Caffe's StateMeetsRule: phase, min/max level, required stages, forbidden stages."""

    def why(message: str) -> bool:
        if logger is not None:
            logger.info("%s specified by a rule in layer %s", message, layer_name)
        return False

    if rule.HasField("phase") and rule.phase != state.phase:
        return why(f"The NetState phase ({state.phase}) differed from the phase ({rule.phase})")
    if rule.HasField("min_level") and state.level < rule.min_level:
        return why(f"The NetState level ({state.level}) is above the min_level ({rule.min_level})")
    if rule.HasField("max_level") and state.level > rule.max_level:
        return why(f"The NetState level ({state.level}) is above the max_level ({rule.max_level})")
    stages = set(state.stage)
    for stage in rule.stage:
        if stage not in stages:
            return why(f"The NetState did not contain stage '{stage}'")
    for stage in rule.not_stage:
        if stage in stages:
            return why(f"The NetState contained a not_stage '{stage}'")
    return True


def filter_net(param: caffe_pb2.NetParameter, logger: logging.Logger | None = None
               ) -> caffe_pb2.NetParameter:
    """Keep the layers whose include/exclude rules match ``param.state`` (Caffe's FilterNet)."""
    state = param.state
    filtered = caffe_pb2.NetParameter()
    filtered.CopyFrom(param)
    del filtered.layer[:]
    for layer in param.layer:
        if len(layer.include) and len(layer.exclude):
            raise NetError(f"layer '{layer.name}' specifies both include and exclude rules; "
                           "give only one kind")
        if len(layer.include):
            keep = any(state_meets_rule(state, r, layer.name, logger) for r in layer.include)
        else:
            keep = not any(state_meets_rule(state, r, layer.name, logger) for r in layer.exclude)
        if keep:
            filtered.layer.add().CopyFrom(layer)
    return filtered


def split_layer_name(layer: str, blob: str, top_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(layer: str, blob: str, top_index: int, split_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split_{split_index}"


def insert_splits(param: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """Insert a Split layer after every top that feeds more than one consumer.

    A consumer is a later bottom naming the blob (its *last* producer, since in-place layers
    re-produce a name) or a non-zero explicit loss_weight on the top. Implicit loss weights of
    loss layers are added later, at layer setup, so they are not seen here (as in Caffe).
    """
    last_top: dict[str, tuple[int, int]] = {}
    source_of_bottom: dict[tuple[int, int], tuple[int, int]] = {}
    consumers: dict[tuple[int, int], int] = defaultdict(int)
    loss_weight_of: dict[tuple[int, int], float] = {}
    for i, layer in enumerate(param.layer):
        for j, name in enumerate(layer.bottom):
            if name not in last_top:
                raise NetError(f"layer '{layer.name}': unknown bottom blob '{name}' (bottom "
                               f"index {j}); no earlier layer produces it")
            source = last_top[name]
            source_of_bottom[(i, j)] = source
            consumers[source] += 1
        for j, name in enumerate(layer.top):
            last_top[name] = (i, j)
        if len(layer.loss_weight):
            if len(layer.loss_weight) != len(layer.top):
                raise NetError(f"layer '{layer.name}': loss_weight must be unspecified or given "
                               f"once per top blob ({len(layer.loss_weight)} for "
                               f"{len(layer.top)} tops)")
            for j, weight in enumerate(layer.loss_weight):
                loss_weight_of[(i, j)] = weight
                if weight:
                    consumers[(i, j)] += 1

    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    next_split: dict[tuple[int, int], int] = defaultdict(int)
    for i, layer in enumerate(param.layer):
        copy = out.layer.add()
        copy.CopyFrom(layer)
        for j in range(len(copy.bottom)):
            source = source_of_bottom[(i, j)]
            if consumers[source] > 1:
                producer = param.layer[source[0]].name
                copy.bottom[j] = split_blob_name(producer, copy.bottom[j], source[1],
                                                 next_split[source])
                next_split[source] += 1
        for j, name in enumerate(copy.top):
            count = consumers[(i, j)]
            if count <= 1:
                continue
            weight = loss_weight_of.get((i, j), 0.0)
            split = out.layer.add()
            split.name = split_layer_name(layer.name, name, j)
            split.type = "Split"
            split.bottom.append(name)
            for k in range(count):
                split.top.append(split_blob_name(layer.name, name, j, k))
            if weight:
                split.loss_weight.append(weight)
                split.loss_weight.extend([0.0] * (count - 1))
                # The loss keeps split output 0; consumers take the following ones.
                copy.ClearField("loss_weight")
                next_split[(i, j)] += 1
    return out
