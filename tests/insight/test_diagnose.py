"""diagnose: per-layer statistics of a few training iterations, and findings that flag broken
initialisations (dead ReLUs, saturation, vanishing and exploding gradients) but not a healthy
net."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from pyforge.cli import main
from pyforge.errors import PyforgeError
from pyforge.insight.diagnose import Thresholds, diagnose, findings_text, is_net_prototxt
from tests.conformance.traces import loss_tolerance, reference_traces

pytest.importorskip("matplotlib")

LENET_SMALL = Path(__file__).parents[1] / "data" / "insight" / "lenet_small.prototxt"
IP1_FILLERS = ('num_output: 64\n    weight_filler { type: "xavier" } '
               'bias_filler { type: "constant" value: 0 }')


def _variant(tmp_path: Path, name: str, old: str = "", new: str = "") -> str:
    text = LENET_SMALL.read_text()
    if old:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}.prototxt"
    path.write_text(text)
    return str(path)


def _kinds(report) -> set[str]:
    return {f.kind for f in report.findings}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _mlp(tmp_path: Path, name: str, layers: int, activation: str, filler: str) -> str:
    """DummyData (gaussian inputs, labels 0) through ``layers`` InnerProduct + activation."""
    text = f'''name: "{name}"
layer {{ name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {{ shape {{ dim: 16 dim: 32 }} shape {{ dim: 16 }}
    data_filler {{ type: "gaussian" std: 1 }} data_filler {{ type: "constant" value: 0 }} }} }}
'''
    bottom = "data"
    for i in range(layers):
        text += f'''layer {{ name: "ip{i}" type: "InnerProduct" bottom: "{bottom}" top: "ip{i}"
  inner_product_param {{ num_output: 32 weight_filler {{ {filler} }} }} }}
layer {{ name: "act{i}" type: "{activation}" bottom: "ip{i}" top: "ip{i}" }}
'''
        bottom = f"ip{i}"
    text += f'''layer {{ name: "out" type: "InnerProduct" bottom: "{bottom}" top: "out"
  inner_product_param {{ num_output: 4 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "label" top: "loss" }}
'''
    path = tmp_path / f"{name}.prototxt"
    path.write_text(text)
    return str(path)


def test_healthy_net_is_not_flagged_and_the_report_is_complete(in_caffe_ref, tmp_path):
    out = tmp_path / "report"
    report = diagnose(_variant(tmp_path, "healthy"), iterations=4, output_dir=str(out))
    assert report.findings == [], findings_text(report)
    assert len(report.losses) == 4 and all(0 < v < 5 for v in report.losses)
    assert {p.name for p in out.iterdir()} == {"layers.csv", "params.csv", "histograms.png",
                                              "findings.txt"}
    assert "No problems found." in (out / "findings.txt").read_text()
    layers = _read_csv(out / "layers.csv")
    assert list(layers[0]) == ["iteration", "layer", "type", "blob", "kind", "count", "mean",
                               "std", "rms", "min", "max", "zero_frac", "saturated_frac",
                               "dead_unit_frac", "nonfinite"]
    first = [(r["layer"], r["blob"], r["kind"]) for r in layers if r["iteration"] == "0"]
    # Outputs in forward order, then gradients in backward order; an in-place ReLU is seen
    # both before (conv1) and after (relu_c1) it overwrites its blob; the loss is not listed.
    assert first[:4] == [("mnist", "data", "activation"), ("mnist", "label", "activation"),
                         ("conv1", "conv1", "activation"), ("relu_c1", "conv1", "activation")]
    assert ("ip2", "ip2", "gradient") in first and ("conv1", "conv1", "gradient") in first
    assert first.index(("ip2", "ip2", "gradient")) < first.index(("conv1", "conv1", "gradient"))
    assert not [f for f in first if f[0] == "loss"]
    relu = next(r for r in layers if r["layer"] == "relu_c1")
    assert float(relu["min"]) == 0 and 0 <= float(relu["dead_unit_frac"]) <= 1
    assert relu["saturated_frac"] == ""
    params = _read_csv(out / "params.csv")
    assert len(params) == 4 * 8  # 4 iterations x (weights, bias) of 4 layers
    for p in params:
        # Plain SGD for a bare net: the update is lr x the gradient.
        assert float(p["update_norm"]) == pytest.approx(0.01 * float(p["grad_norm"]), rel=1e-4)
        if float(p["weight_norm"]) > 0:
            assert float(p["update_ratio"]) == pytest.approx(
                float(p["update_norm"]) / float(p["weight_norm"]))
    from tests.insight.test_plot import assert_png

    assert_png(out / "histograms.png", min_height=800)


def test_dead_relu_is_flagged(in_caffe_ref, tmp_path):
    dead = IP1_FILLERS.replace("value: 0", "value: -10")
    report = diagnose(_variant(tmp_path, "dead", IP1_FILLERS, dead), iterations=3)
    flagged = [f for f in report.findings if f.kind == "dead ReLU"]
    assert [f.layers for f in flagged] == [("relu1",)]
    assert "100.0% of its outputs are 0" in flagged[0].message
    assert "100% of its 64 units never fired" in flagged[0].message
    # Nothing reaches the layers below it, nor ip2's weights (its input is all zeros).
    vanishing = next(f for f in report.findings if f.kind == "vanishing gradient")
    assert set(vanishing.layers) == {"conv1", "conv2", "ip1", "ip2"}


def test_huge_initial_weights_are_flagged_as_exploding(in_caffe_ref, tmp_path):
    net = _variant(tmp_path, "std100", 'weight_filler { type: "xavier" }',
                   'weight_filler { type: "gaussian" std: 100 }')
    report = diagnose(net, iterations=3)
    kinds = _kinds(report)
    assert {"exploding activations", "exploding gradient"} <= kinds
    activations = next(f for f in report.findings if f.kind == "exploding activations")
    # conv1's output rms is about 700 x the input's, under the threshold; conv2's is 1e6 x.
    assert activations.layers == ("conv2",)
    assert "at iteration 0" in activations.message
    assert "initial weights are too large" in activations.message


def test_huge_base_lr_is_flagged_as_exploding(in_caffe_ref, tmp_path):
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{_variant(tmp_path, "healthy")}"\nbase_lr: 10\n'
                      'lr_policy: "fixed"\nmax_iter: 100\nrandom_seed: 1701\n')
    report = diagnose(str(solver), iterations=3)
    updates = next(f for f in report.findings
                   if f.kind == "exploding gradient" and "single updates" in f.message)
    assert set(updates.layers) == {"conv1", "conv2", "ip1", "ip2"}
    assert any(p.update_ratio > 0.1 for p in report.params if p.iteration == 0)
    assert not any("initial weights" in f.message for f in report.findings
                   if f.kind == "exploding activations")


def test_healthy_lenet_solver_is_not_flagged_and_trains_as_caffe(in_caffe_ref):
    report = diagnose("runs/sgd_inv/solver.prototxt", weights="init/snap_iter_0.caffemodel",
                      iterations=3)
    assert report.findings == [], findings_text(report)
    reference, _, envelope = reference_traces(in_caffe_ref / "runs" / "sgd_inv")
    for it, loss in enumerate(report.losses):
        assert loss == pytest.approx(reference.loss[it], rel=loss_tolerance(envelope, it))


def test_saturated_tanh_is_flagged(tmp_path):
    report = diagnose(_mlp(tmp_path, "tanh", 2, "TanH", 'type: "gaussian" std: 2'),
                      iterations=2)
    saturated = [f for f in report.findings if f.kind == "saturated"]
    assert [f.layers for f in saturated] == [("act0",), ("act1",)]
    rows = [b for b in report.blobs if b.layer == "act0" and b.kind == "activation"]
    assert all(b.saturated_frac > 0.5 for b in rows)


def test_vanishing_gradient_in_a_deep_sigmoid_net_is_flagged(tmp_path):
    report = diagnose(_mlp(tmp_path, "deep", 8, "Sigmoid", 'type: "gaussian" std: 0.05'),
                      iterations=2)
    vanishing = next(f for f in report.findings if f.kind == "vanishing gradient")
    assert "ip0" in vanishing.layers and "ip7" not in vanishing.layers
    healthy = diagnose(_mlp(tmp_path, "deep_tanh", 8, "TanH", 'type: "xavier"'), iterations=2)
    assert healthy.findings == [], findings_text(healthy)


def test_non_finite_values_are_traced_to_their_first_layer(tmp_path):
    report = diagnose(_mlp(tmp_path, "inf", 1, "ReLU", 'type: "gaussian" std: 1e38'),
                      iterations=1)
    first = report.findings[0]
    assert first.kind == "non-finite"
    assert first.layers == ("ip0",)
    assert "iteration 0" in first.message


def test_thresholds_are_configurable(tmp_path):
    net = _mlp(tmp_path, "relu", 1, "ReLU", 'type: "xavier"')
    strict = Thresholds(dead_relu_zero_fraction=0.1)
    assert "dead ReLU" in _kinds(diagnose(net, iterations=1, thresholds=strict))
    assert "dead ReLU" not in _kinds(diagnose(net, iterations=1))


def test_the_readme_example_is_lenet_small_with_dead_biases():
    example = (LENET_SMALL.parent / "lenet_dead_relu.prototxt").read_text()
    body = LENET_SMALL.read_text().split('name: "LeNetSmall"')[1]
    expected = body.replace(IP1_FILLERS, IP1_FILLERS.replace("value: 0", "value: -10")).replace(
        '"mnist/mnist_train_lmdb"', '"prototxt_examples/mnist/mnist_train_lmdb"')
    assert example.split('name: "LeNetSmall"')[1] == expected


def test_solver_or_net_is_told_by_its_content(tmp_path):
    assert is_net_prototxt(str(LENET_SMALL))
    solver = tmp_path / "s.prototxt"
    solver.write_text('net: "n.prototxt"\nbase_lr: 0.1\n')
    assert not is_net_prototxt(str(solver))
    with pytest.raises(PyforgeError, match="cannot read"):
        is_net_prototxt(str(tmp_path / "missing.prototxt"))
    with pytest.raises(PyforgeError, match="--iters must be positive"):
        diagnose(str(solver), iterations=0)


def test_diagnose_command(tmp_path, capsys):
    net = _mlp(tmp_path, "cli", 1, "ReLU", 'type: "xavier"')
    out = tmp_path / "report"
    assert main(["diagnose", net, "--iters", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"pyforge diagnose {net}: 2 training iteration(s)")
    assert "No problems found." in printed and "Thresholds:" in printed
    assert (out / "histograms.png").exists()
    assert main(["diagnose", str(tmp_path / "missing.prototxt")]) == 2
    assert "missing.prototxt' does not exist" in capsys.readouterr().err


def test_means_ignore_missing_values():
    from pyforge.insight.findings import _mean

    assert _mean([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(_mean([]))
