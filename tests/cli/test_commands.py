"""The commands print Caffe's lines and accept Caffe's flag spellings."""

from __future__ import annotations

import re

import pytest

from pyforge.cli import main, normalize_argv
from tests.logcapture import capture_log


@pytest.mark.parametrize("argv,expected", [
    (["train", "-solver", "s.prototxt"], ["train", "--solver", "s.prototxt"]),
    (["train", "-solver=s.prototxt"], ["train", "--solver=s.prototxt"]),
    (["train", "--solver=s.prototxt"], ["train", "--solver=s.prototxt"]),
    (["test", "-iterations", "3", "-model=m"], ["test", "--iterations", "3", "--model=m"]),
    (["train", "-h"], ["train", "-h"]),
    (["train", "-x"], ["train", "-x"]),
])
def test_gflags_spellings_become_click_options(argv, expected):
    assert normalize_argv(argv) == expected


def test_test_command_prints_batches_loss_and_means(in_caffe_ref):
    with capture_log() as log:
        code = main(["test", "-model", "lenet/lenet_train_test.prototxt",
                     "-weights=runs/sgd_inv/snap_iter_30.caffemodel", "--iterations", "3"])
    assert code == 0
    lines = log.messages
    assert "Running for 3 iterations." in lines
    batches = [m for m in lines if m.startswith("Batch ")]
    assert [m.split(" = ")[0] for m in batches] == [
        f"Batch {i}, {name}" for i in range(3) for name in ("accuracy", "loss")]
    loss_line = next(m for m in lines if m.startswith("Loss: "))
    accuracy = next(m for m in lines if m.startswith("accuracy = "))
    mean_loss = next(m for m in lines if m.startswith("loss = "))
    assert re.fullmatch(r"loss = (\S+) \(\* 1 = \1 loss\)", mean_loss)
    assert float(loss_line.split()[1]) == pytest.approx(float(mean_loss.split()[2]), rel=1e-5)
    values = [float(m.split(" = ")[1]) for m in batches if ", accuracy" in m]
    assert float(accuracy.split(" = ")[1]) == pytest.approx(sum(values) / 3, rel=1e-5)


def test_time_command_prints_caffes_table(caffe_ref):
    model = caffe_ref / "shapes" / "examples_mnist_lenet.prototxt"
    with capture_log() as log:
        assert main(["time", f"-model={model}", "-iterations", "2", "--phase=TEST"]) == 0
    lines = log.messages
    start = lines.index("*** Benchmark begins ***")
    assert lines[start + 1] == "Testing for 2 iterations."
    assert re.fullmatch(r"Iteration: 1 forward-backward time: \S+ ms\.", lines[start + 2])
    assert lines[start + 4] == "Average time per layer: "
    table = lines[start + 5 : start + 5 + 2 * 9]
    assert re.fullmatch(r"      data\tforward: \S+ ms\.", table[0])
    assert re.fullmatch(r"      data\tbackward: \S+ ms\.", table[1])
    assert re.fullmatch(r"     conv1\tforward: \S+ ms\.", table[2])
    assert any(re.fullmatch(r"Average Forward-Backward: [\d.e+-]+ ms\.", m) for m in lines)
    assert lines[-1] == "*** Benchmark ends ***"


def test_time_refuses_an_unknown_phase(caffe_ref, capsys):
    model = caffe_ref / "shapes" / "examples_mnist_lenet.prototxt"
    assert main(["time", f"--model={model}", "--phase=VAL"]) == 2  # a bad flag value
    assert 'phase must be "TRAIN" or "TEST"' in capsys.readouterr().err


def test_device_query_reports_cpu_blas_and_numba():
    with capture_log() as log:
        assert main(["device_query"]) == 0
    text = log.text
    for key in ("cpu:", "logical cpus:", "numba threads:", "blas:", "numba:", "numpy:"):
        assert key in text
    from pyforge.layers.blas import blas_name

    assert f"convolution sgemm: {blas_name()}" in text


def test_train_accepts_positional_and_flag_solver(in_caffe_ref, tmp_path):
    solver = (in_caffe_ref / "runs" / "sgd_fixed_nomom" / "solver.prototxt").read_text()
    solver = re.sub(r"max_iter: \d+", "max_iter: 2", solver)
    solver = re.sub(r'snapshot_prefix: ".*"', f'snapshot_prefix: "{tmp_path}/s"', solver)
    path = tmp_path / "solver.prototxt"
    path.write_text(solver.replace('net: "', f'net: "{in_caffe_ref}/'))
    for argv in (["train", str(path)], ["train", "-solver", str(path)]):
        with capture_log() as log:
            assert main(argv + ["-weights", "init/snap_iter_0.caffemodel"]) == 0
        assert log.messages[-2:] == ["Optimization Done.", "Optimization Done."]
        assert "Finetuning from init/snap_iter_0.caffemodel" in log.messages
    assert (tmp_path / "s_iter_2.caffemodel").exists()


def test_time_runs_every_backward_once_before_the_timed_passes(caffe_ref, monkeypatch):
    """A deploy net has no loss, so Backward() skips every layer, while the timed passes run
    each layer's backward, as Caffe's do: the warm-up runs them once untimed as well (their
    kernels compile there, not inside the first timed pass)."""
    from pyforge.layers.conv import ConvolutionLayer

    calls = []
    original = ConvolutionLayer.backward

    def spy(self, top, propagate_down, bottom):
        calls.append(self.name)
        return original(self, top, propagate_down, bottom)

    monkeypatch.setattr(ConvolutionLayer, "backward", spy)
    model = caffe_ref / "shapes" / "examples_mnist_lenet.prototxt"
    with capture_log() as log:
        assert main(["time", f"-model={model}", "-iterations", "2", "--phase=TEST"]) == 0
    assert calls == ["conv2", "conv1"] * 3  # the warm-up and two timed passes
    assert log.messages.index("*** Benchmark begins ***") > 0
