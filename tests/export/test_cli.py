"""``pyforge export`` from the command line: its flags, and its refusals (one line on stderr,
exit 1, no file left behind, not even a temporary one)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from pyforge.cli import main
from pyforge.export.check import compare, onnxruntime_forward, pyforge_forward, random_inputs
from pyforge.export.registry import CONVERTERS
from tests.export.helpers import LENET, ROOT, seeded_net, with_batch
from tests.logcapture import capture_log

LENET_TRAIN_TEST = ROOT / "prototxt_examples" / "mnist" / "lenet_train_test.prototxt"

HEAD = """name: "small"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
"""

#: name -> (extra layers, what the one error line must say)
REFUSED = {
    "python": ('layer { name: "py" type: "Python" bottom: "ip" top: "out" '
               'python_param { module: "mine" layer: "Mine" } }',
               "layer 'py' of type 'Python' cannot be exported to ONNX: it runs Python code"),
    "loss": ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" '
             'top: "loss" }',
             "layer 'loss' of type 'SoftmaxWithLoss' cannot be exported to ONNX: it is a loss "
             "layer; remove it"),
    "accuracy": ('layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" '
                 'top: "acc" }',
                 "layer 'acc' of type 'Accuracy' cannot be exported to ONNX: it scores against "
                 "labels"),
    "unknown": ('layer { name: "odd" type: "FancyOp" bottom: "ip" top: "out" }',
                "layer 'odd' of type 'FancyOp' cannot be exported to ONNX: pyforge does not "
                "know this type"),
    "no_onnx_form": ('layer { name: "spp" type: "SPP" bottom: "ip" top: "out" }',
                     "layer 'spp' of type 'SPP' cannot be exported to ONNX: ONNX has no "
                     "equivalent; remove it or replace it with exportable layers (AbsVal,"),
    "batch_statistics": ('layer { name: "bn" type: "BatchNorm" bottom: "ip" top: "bn" '
                         'batch_norm_param { use_global_stats: false } }',
                         "layer 'bn' of type 'BatchNorm' cannot be exported to ONNX: it "
                         "normalizes with the statistics of each batch"),
}


def run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("pyforge:")]


def assert_refused(code, err, folder, expected: str, status: int = 1) -> None:
    assert code == status
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("pyforge: error: " + expected), lines[0]
    assert "Traceback" not in err
    assert not [p for p in folder.iterdir() if p.suffix in (".onnx", ".tmp")]


@pytest.fixture
def lenet(tmp_path):
    model = with_batch(LENET, 2, tmp_path)
    weights = tmp_path / "lenet.caffemodel"
    return model, weights, seeded_net(model, weights)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_layer_leaves_no_file(case, tmp_path, capsys):
    extra, expected = REFUSED[case]
    model = tmp_path / "net.prototxt"
    model.write_text(HEAD + extra)
    weights = tmp_path / "net.caffemodel"
    weights.write_bytes(b"")  # never read: the refusal comes first
    if case == "batch_statistics":  # refused by the converter, after the weights are loaded
        seeded_net(model, weights)
    out = tmp_path / "net.onnx"
    code, err = run(["export", f"--model={model}", f"--weights={weights}", f"--output={out}"],
                    capsys)
    assert_refused(code, err, tmp_path, expected)


def test_data_layers_are_refused_with_the_input_layer_to_use(tmp_path, capsys):
    out = tmp_path / "lenet.onnx"
    weights = tmp_path / "none.caffemodel"
    weights.write_bytes(b"")  # never read: the refusal comes first
    code, err = run(["export", f"--model={LENET_TRAIN_TEST}", f"--weights={weights}",
                     f"--output={out}"], capsys)
    assert_refused(code, err, tmp_path, "layer 'mnist' of type 'Data' cannot be exported to "
                   "ONNX: it is a data layer; replace it with an Input layer that declares the "
                   "shape of data, label")


def test_stage_flag_filters_layers_before_the_refusal(tmp_path, capsys):
    model = tmp_path / "net.prototxt"
    model.write_text(HEAD + 'layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" '
                            'top: "acc" exclude { stage: "deploy" } }')
    weights = tmp_path / "net.caffemodel"
    seeded_net(model, weights)
    out = tmp_path / "net.onnx"
    code, err = run(["export", f"--model={model}", f"--weights={weights}", f"--output={out}"],
                    capsys)
    assert_refused(code, err, tmp_path, "layer 'acc' of type 'Accuracy'")
    code, err = run(["export", f"--model={model}", f"--weights={weights}", f"--output={out}",
                     "--stage=deploy"], capsys)
    assert code == 0, err
    assert {o.name for o in onnx.load(str(out)).graph.output} == {"ip", "label"}


def test_dynamic_batch_refuses_a_layer_that_holds_the_batch(tmp_path, capsys):
    model = tmp_path / "net.prototxt"
    model.write_text(HEAD + 'layer { name: "cut" type: "Slice" bottom: "ip" top: "a" top: "b" '
                            'slice_param { axis: 0 } }')
    weights = tmp_path / "net.caffemodel"
    seeded_net(model, weights)
    out = tmp_path / "net.onnx"
    code, err = run(["export", f"--model={model}", f"--weights={weights}", f"--output={out}",
                     "--dynamic-batch"], capsys)
    assert_refused(code, err, tmp_path, "layer 'cut' of type 'Slice' slices along axis 0, "
                   "the batch axis")


def test_failed_check_exits_1_and_writes_nothing(lenet, tmp_path, capsys, monkeypatch):
    model, weights, _ = lenet
    def relu_as_sigmoid(g, site):  # a wrong conversion
        g.add("Sigmoid", site.inputs, site.outputs, layer=site.name)

    monkeypatch.setitem(CONVERTERS._entries, "ReLU", relu_as_sigmoid)
    out = tmp_path / "lenet.onnx"
    code, err = run(["export", f"--model={model}", f"--weights={weights}", f"--output={out}"],
                    capsys)
    assert_refused(code, err, tmp_path, "the exported model differs from pyforge's forward: "
                   "output 'prob' (2x10) is off by")
    assert err.strip().endswith("nothing was written")
    # --no-check skips the comparison: the (wrong) model is written.
    code, err = run(["export", f"--model={model}", f"--weights={weights}", f"--output={out}",
                     "--no-check"], capsys)
    assert code == 0, err
    assert out.exists()


@pytest.mark.parametrize("flags,expected", [
    (["--opset=12"], "--opset must be between 13"),
    ([f"--opset={onnx.defs.onnx_opset_version() + 1}"], "--opset must be between 13"),
    (["--output="], "need an output file to export (--output)"),
    (["--weights="], "need model weights to export (--weights)"),
    (["--output=missing/folder/x.onnx"], "cannot write --output missing/folder/x.onnx: folder"),
])
def test_bad_flags_are_one_line(flags, expected, lenet, tmp_path, capsys, monkeypatch):
    model, weights, _ = lenet
    monkeypatch.chdir(tmp_path)
    argv = ["export", f"--model={model}", f"--weights={weights}", "--output=lenet.onnx", *flags]
    code, err = run(argv, capsys)
    assert_refused(code, err, tmp_path, expected, status=2)  # the command line is wrong


def test_opset_flag_and_check_lines(lenet, tmp_path):
    model, weights, _ = lenet
    out = tmp_path / "lenet.onnx"
    with capture_log() as log:
        assert main(["export", f"--model={model}", f"--weights={weights}", f"--output={out}",
                     "--opset", "13"]) == 0
    exported = onnx.load(str(out))
    assert [(o.domain, o.version) for o in exported.opset_import] == [("", 13)]
    assert exported.producer_name == "pyforge"
    assert any(m.startswith("Check: ONNX Runtime ") for m in log.messages)
    assert any(m.startswith("    prob 2x10: largest error ") for m in log.messages)
    assert any(m.startswith("Check passed: largest error ") for m in log.messages)
    assert log.messages[-1].startswith(f"Wrote {out}: 9 layers as ")


def test_dynamic_batch_flag(lenet, tmp_path):
    model, weights, net = lenet
    out = tmp_path / "lenet.onnx"
    assert main(["export", f"--model={model}", f"--weights={weights}", f"--output={out}",
                 "--dynamic-batch"]) == 0
    (graph_input,) = onnx.load(str(out)).graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    feeds = random_inputs(net, 4, batch=7)
    got = onnxruntime_forward(str(out), feeds, ["prob"])["prob"]
    assert got.shape == (7, 10)
    assert compare(pyforge_forward(net, feeds)["prob"], got, "prob").relative <= 1e-4


def test_hdf5_weights(tmp_path):
    model = with_batch(LENET, 2, tmp_path)
    weights = tmp_path / "lenet.caffemodel.h5"
    seeded_net(model, weights, hdf5=True)
    out = tmp_path / "lenet.onnx"
    assert main(["export", f"--model={model}", f"--weights={weights}", f"--output={out}"]) == 0
    assert out.exists()


V1_NET = """name: "legacy"
input: "data"
input_dim: 2 input_dim: 1 input_dim: 8 input_dim: 8
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "xavier" } } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layers { name: "ip" type: INNER_PRODUCT bottom: "pool" top: "ip"
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
"""


def test_v1_net_is_upgraded_and_exported(tmp_path):
    model = tmp_path / "legacy.prototxt"
    model.write_text(V1_NET)
    weights = tmp_path / "legacy.caffemodel"
    net = seeded_net(model, weights)
    out = tmp_path / "legacy.onnx"
    assert main(["export", f"--model={model}", f"--weights={weights}", f"--output={out}"]) == 0
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["data"]
    assert [o.name for o in graph.output] == ["prob"]
    # The ReLU wrote "conv" in place: the convolution's value has its own name.
    assert [n.op_type for n in graph.node][:2] == ["Conv", "Relu"]
    assert graph.node[0].output == ["conv__conv"] and graph.node[1].output == ["conv"]
    feeds = random_inputs(net, 3)
    np.testing.assert_allclose(onnxruntime_forward(str(out), feeds, ["prob"])["prob"],
                               pyforge_forward(net, feeds)["prob"], rtol=1e-5, atol=1e-7)


def test_v1_type_names_in_current_layers(tmp_path):
    """Layer types may be written with their V1 names; the export goes by the layer class."""
    model = tmp_path / "aliases.prototxt"
    model.write_text("""
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 1 dim: 6 dim: 6 } } }
layer { name: "conv" type: "CONVOLUTION" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "squash" type: "SIGMOID" bottom: "conv" top: "squash" }
""")
    weights = tmp_path / "aliases.caffemodel"
    seeded_net(model, weights)
    out = tmp_path / "aliases.onnx"
    assert main(["export", f"--model={model}", f"--weights={weights}", f"--output={out}"]) == 0
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["Conv", "Sigmoid"]
