"""Copying saved parameters into a built net by layer name (Caffe's CopyTrainedLayersFrom)."""

from __future__ import annotations

import numpy as np

from ..blob import BlobValues, proto_shape, shapes_equal
from ..errors import WeightsError
from ..kernels.checks import all_finite


def copy_params(net, source, filename: str, missing_shared_ok: bool = False) -> None:
    """Copy ``[(layer name, {param index: BlobValues, BlobProto or ndarray})]`` into ``net``'s
    layers by name.

    Every mismatch is reported at once, with both shapes. Layers the net does not have are
    ignored (and logged), as in Caffe. With ``missing_shared_ok`` (Caffe's HDF5 weights) a
    parameter may be absent when the net shares it from another layer."""
    problems = []
    plan = []
    for name, blobs in source:
        layer_id = next((i for i, n in enumerate(net.layer_names) if n == name), None)
        if layer_id is None:
            net.logger.info("Ignoring source layer %s", name)
            continue
        layer = net.layers[layer_id]
        targets = layer.blobs
        if len(blobs) > len(targets) or (not missing_shared_ok and len(blobs) != len(targets)):
            problems.append(f"layer '{name}' has {len(blobs)} parameter blob(s) in the file "
                            f"but {len(targets)} in the net")
            continue
        for j, blob in enumerate(targets):
            if j not in blobs:
                if net.param_owner[net.param_ids_of_layer[layer_id][j]] != -1:
                    continue  # shared from its owner: not stored, and not needed
                problems.append(f"layer '{name}' lacks parameter blob {j} in the file")
                continue
            value = blobs[j]
            if isinstance(value, np.ndarray):
                ok = value.shape == blob.shape
                shape = " ".join(str(d) for d in value.shape)
            else:
                if not isinstance(value, BlobValues):
                    value = BlobValues.from_proto(value)
                ok = shapes_equal(value.header, blob.shape)
                shape = " ".join(str(d) for d in proto_shape(value.header))
                counts = [0 if v is None else v.size for v in (value.data, value.diff)]
                if ok and (counts[0] != blob.count or counts[1] not in (0, blob.count)):
                    problems.append(
                        f"param {j} of layer '{name}' holds {counts[0]} data and "
                        f"{counts[1]} diff values for its shape {shape} ({blob.count})")
                    continue
            if not ok:
                problems.append(
                    f"cannot copy param {j} weights from layer '{name}': shape mismatch, "
                    f"source param shape is {shape}, target param shape is "
                    f"{blob.shape_string().rsplit(' (', 1)[0]}")
                continue
            plan.append((name, j, blob, value))
    if problems:
        hint = ("; to learn a layer from scratch rather than copying it from a saved net, "
                "rename the layer")
        raise WeightsError(f"{filename}: " + "; ".join(problems) + hint)
    for _, _, blob, value in plan:
        if isinstance(value, np.ndarray):
            blob.data[...] = value
            continue
        blob.data[...] = value.data.reshape(blob.shape)
        if value.diff is not None and value.diff.size:
            blob.diff[...] = value.diff.reshape(blob.shape)
    nonfinite = [(name, j, blob.data) for name, j, blob, _ in plan
                 if not all_finite(blob.data.reshape(-1))]
    if nonfinite:
        raise WeightsError(f"{filename}: " + nonfinite_note(nonfinite) + "; a diverged run or "
                           "a damaged file")


def nonfinite_note(arrays: list[tuple[str, int, np.ndarray]]) -> str:
    """"layer 'ip1' param 0 has 3 NaN among its 400000 values (the first at [1, 7])",
    for the first of ``(layer name, param index, array)``, and how many more arrays do."""
    name, j, array = arrays[0]
    counts = [(int(np.isnan(array).sum()), "NaN"), (int(np.isinf(array).sum()), "infinite")]
    found = " and ".join(f"{n} {what}" for n, what in counts if n)
    first = np.unravel_index(int(np.flatnonzero(~np.isfinite(array))[0]), array.shape)
    where = ", ".join(str(int(i)) for i in first)
    more = f" (and {len(arrays) - 1} more blob(s))" if len(arrays) > 1 else ""
    return (f"layer '{name}' param {j} has {found} among its {array.size} values (the first "
            f"at [{where}]){more}")

