"""LeNet and the model-zoo deploy nets (CaffeNet, GoogLeNet, ResNet-50, SqueezeNet 1.1,
MobileNet v2) export with seeded random weights; the export's own check of the outputs passes
(<= 1e-4 of their scale), and every layer of the written model, fed pyforge's bottoms, gives
pyforge's tops to 1e-4 of their scale (a saturated softmax cannot hide a wrong layer)."""

from __future__ import annotations

import onnx
import pytest

from pyforge.export import export_onnx
from tests.export.helpers import LENET, ZOO, every_layer_error, seeded_net, with_batch

#: (prototxt, batch for the test, weights format): small batches keep the test quick, and the
#: large nets' weights go through HDF5, which writes 60M floats in a fraction of the time.
NETS = {
    "lenet": (LENET, 2, ".caffemodel"),
    "caffenet": (ZOO / "caffenet_deploy.prototxt", 1, ".caffemodel.h5"),
    "googlenet": (ZOO / "googlenet_deploy.prototxt", 1, ".caffemodel"),
    "resnet50": (ZOO / "resnet50_deploy.prototxt", 1, ".caffemodel.h5"),
    "squeezenet1_1": (ZOO / "squeezenet1_1_deploy.prototxt", 2, ".caffemodel"),
    "mobilenet_v2": (ZOO / "mobilenet_v2_deploy.prototxt", 2, ".caffemodel"),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_zoo_net_exports_and_matches_pyforge(name, tmp_path):
    source, batch, extension = NETS[name]
    model = with_batch(source, batch, tmp_path)
    weights = tmp_path / f"{name}{extension}"
    net = seeded_net(model, weights, hdf5=extension.endswith(".h5"))
    output = tmp_path / f"{name}.onnx"
    result = export_onnx(str(model), str(weights), str(output))
    assert output.exists()
    assert [n for n, _ in result.errors] == ["prob"]
    assert all(error <= 1e-4 for _, error in result.errors)

    exported = onnx.load(str(output))
    (graph_input,) = exported.graph.input
    assert graph_input.name == "data"
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == list(net.blobs["data"].shape)
    assert [o.name for o in exported.graph.output] == ["prob"]

    errors = every_layer_error(net, output)
    assert set(errors) == set(net.layer_names) - {"data", "input"}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-4, (worst, errors[worst])
