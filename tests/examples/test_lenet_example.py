"""The bundled LeNet example: converts the MNIST sample, trains 2,000 iterations and reaches
Caffe's accuracy (Caffe: 0.967 on the 1,000 test images; pyforge must reach 0.95)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pyforge import api
from pyforge.tools import convert_mnist
from tests.logcapture import capture_log

EXAMPLE = Path(__file__).resolve().parents[2] / "prototxt_examples" / "mnist"


@pytest.mark.slow
def test_lenet_example_reaches_caffes_accuracy(tmp_path, monkeypatch):
    work = tmp_path / "prototxt_examples" / "mnist"
    work.mkdir(parents=True)
    for item in EXAMPLE.iterdir():
        if item.suffix in (".prototxt", ".gz"):
            shutil.copy2(item, work / item.name)
    monkeypatch.chdir(tmp_path)
    base = "prototxt_examples/mnist"
    assert convert_mnist(f"{base}/train-images-idx3-ubyte.gz",
                         f"{base}/train-labels-idx1-ubyte.gz", f"{base}/mnist_train_lmdb") == 4000
    assert convert_mnist(f"{base}/t10k-images-idx3-ubyte.gz",
                         f"{base}/t10k-labels-idx1-ubyte.gz", f"{base}/mnist_test_lmdb") == 1000
    with capture_log() as log:
        api.train(f"{base}/lenet_solver.prototxt")
    accuracies = [float(m.group(1)) for m in
                  re.finditer(r"Test net output #0: accuracy = (\S+)", log.text)]
    assert len(accuracies) == 5  # iterations 0, 500, 1000, 1500, 2000
    assert accuracies[-1] >= 0.95, accuracies
    assert (work / "lenet_iter_2000.caffemodel").exists()
    assert (work / "lenet_iter_2000.solverstate").exists()
    assert log.messages[-1] == "Optimization Done."
