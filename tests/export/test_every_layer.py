"""A net that uses every exportable layer type, most with non-default parameters and at
Caffe's edge cases (tests/data/export/every_layer.prototxt), exports at several opsets; each of
its layers, fed pyforge's bottoms, matches pyforge to 1e-4 of scale, and so do its outputs end
to end, also at another batch size with --dynamic-batch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from pyforge.export import export_onnx
from pyforge.export.check import compare, onnxruntime_forward, pyforge_forward, random_inputs
from pyforge.export.registry import CONVERTERS
from pyforge.proto import read_net_param
from tests.export.helpers import DATA, every_layer_error, seeded_net

EVERY = DATA / "every_layer.prototxt"
NEWEST = onnx.defs.onnx_opset_version()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("every")
    weights = folder / "every.caffemodel"
    return seeded_net(EVERY, weights), weights, folder


def test_the_net_uses_every_exportable_type():
    used = {layer.type for layer in read_net_param(EVERY).layer}
    assert used == set(CONVERTERS.names())


@pytest.mark.parametrize("opset", [13, 17, 18, NEWEST])
def test_every_layer_matches_pyforge(seeded, opset):
    net, weights, folder = seeded
    output = folder / f"every_{opset}.onnx"
    result = export_onnx(str(EVERY), str(weights), str(output), opset=opset)
    assert onnx.load(str(output)).opset_import[0].version == opset
    assert {name for name, _ in result.errors} == set(net.outputs)
    assert max(error for _, error in result.errors) <= 1e-4
    errors = every_layer_error(net, output, opset=opset)
    assert set(errors) == set(net.layer_names) - {"data", "silence"}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-4, (worst, errors[worst])


def test_caffe_edge_cases_hold_in_the_export(seeded):
    net, weights, folder = seeded
    output = folder / "every_edges.onnx"
    export_onnx(str(EVERY), str(weights), str(output))
    feeds = random_inputs(net, 5)
    expected = pyforge_forward(net, feeds)
    got = onnxruntime_forward(str(output), feeds, list(expected))
    # A MAX window wholly past the image gives Caffe's -FLT_MAX, exactly.
    past = got["pool_max_past"]
    assert past.shape == (2, 4, 3, 3)
    assert np.all(past[:, :, 2, :] == np.finfo(np.float32).min)
    np.testing.assert_array_equal(past, expected["pool_max_past"])
    # Ceil-rounded shapes with Caffe's dropped last window and the clipped AVE divisor.
    assert got["pool_max_drop"].shape == (2, 6, 3, 3)
    assert got["pool_ave_clip"].shape == (2, 2, 5, 5)
    assert compare(expected["pool_ave_clip"], got["pool_ave_clip"], "").relative <= 1e-6
    # The argmax mask holds in-plane indices h * W + w, as Caffe's.
    np.testing.assert_array_equal(got["pool_mask"], expected["pool_mask"])


def test_argmax_breaks_ties_as_caffe(tmp_path):
    """Caffe ranks equal values by the larger index first; ONNX TopK by the smaller."""
    model = tmp_path / "argmax.prototxt"
    model.write_text("""
layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "top" type: "ArgMax" bottom: "x" top: "top"
  argmax_param { top_k: 3 out_max_val: true } }
layer { name: "along" type: "ArgMax" bottom: "x" top: "along" argmax_param { axis: 1 top_k: 2 } }
""")
    weights = tmp_path / "argmax.caffemodel"
    net = seeded_net(model, weights)
    output = tmp_path / "argmax.onnx"
    export_onnx(str(model), str(weights), str(output))
    feeds = {"x": np.array([[1, 3, 3, 0, 3, 2], [5, 5, 1, 1, 5, 0]], np.float32)}
    expected = pyforge_forward(net, feeds)
    got = onnxruntime_forward(str(output), feeds, ["top", "along"])
    np.testing.assert_array_equal(expected["top"][:, 0], [[4, 2, 1], [4, 1, 0]])
    for name in ("top", "along"):
        np.testing.assert_array_equal(got[name], expected[name])


def test_dynamic_batch_runs_at_another_batch_size(seeded):
    net, weights, folder = seeded
    output = folder / "every_dynamic.onnx"
    result = export_onnx(str(EVERY), str(weights), str(output), dynamic_batch=True)
    # The check ran at the prototxt's batch (2) and at 3.
    assert len(result.errors) == 2 * len(net.outputs)
    graph = onnx.load(str(output)).graph
    for value in graph.input:
        assert value.type.tensor_type.shape.dim[0].dim_param == "N"
    outputs = {o.name: o.type.tensor_type.shape.dim for o in graph.output}
    assert outputs["prelu"][0].dim_param == "N"
    assert [d.dim_value for d in outputs["prelu"][1:]] == [4, 14, 14]
    assert len(outputs["total"]) == 0  # the scalar sum over everything
    feeds = random_inputs(net, 9, batch=5)
    try:
        expected = pyforge_forward(net, feeds)
        got = onnxruntime_forward(str(output), feeds, list(expected))
        assert got["prelu"].shape[0] == 5
        for name in expected:
            assert compare(expected[name], got[name], name).relative <= 1e-4, name
    finally:
        pyforge_forward(net, random_inputs(net, 9, batch=2))  # the module's net, as it was
