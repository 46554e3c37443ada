"""The README's pycaffe tutorial runs as printed: the solver loop, net surgery, the Python loss
layer and NetSpec, each as a user would run it (a fresh interpreter in a folder laid out like
the repository root after ``create_mnist.sh``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyforge.tools import convert_mnist

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "prototxt_examples" / "mnist"


def _python_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API (pycaffe)"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def repo_like(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    work = root / "prototxt_examples" / "mnist"
    work.mkdir(parents=True)
    for item in EXAMPLE.iterdir():
        if item.suffix in (".prototxt", ".gz"):
            shutil.copy2(item, work / item.name)
    base = str(work)
    convert_mnist(f"{base}/train-images-idx3-ubyte.gz", f"{base}/train-labels-idx1-ubyte.gz",
                  f"{base}/mnist_train_lmdb")
    convert_mnist(f"{base}/t10k-images-idx3-ubyte.gz", f"{base}/t10k-labels-idx1-ubyte.gz",
                  f"{base}/mnist_test_lmdb")
    return root


def _run(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_readme_has_the_four_tutorial_blocks():
    blocks = _python_blocks()
    assert len(blocks) == 4
    assert "SGDSolver" in blocks[0] and "net.save" in blocks[1]
    assert "class EuclideanLossLayer" in blocks[2] and "NetSpec" in blocks[3]


@pytest.mark.slow
def test_solver_loop_then_net_surgery(repo_like):
    loop, surgery = _python_blocks()[:2]
    out = _run(loop, repo_like).splitlines()
    # Ten lines "iter loss mean|w|" and the accuracy line.
    assert [int(line.split()[0]) for line in out[:10]] == list(range(20, 220, 20))
    losses = [float(line.split()[1]) for line in out[:10]]
    assert losses[-1] < 0.5 < losses[0] * 2
    accuracy = float(out[10].split()[1])
    assert accuracy > 0.8
    assert (repo_like / "lenet_200.caffemodel").exists()
    out = _run(surgery, repo_like).splitlines()
    assert out[-1] == "0"  # class 3 is never predicted after the edit
    assert (repo_like / "lenet_edited.caffemodel").exists()


def test_python_loss_layer_from_the_readme_matches_euclidean_loss(tmp_path):
    (tmp_path / "pyloss.py").write_text(_python_blocks()[2])
    net_text = """
layer { name: "in" type: "Input" top: "x" top: "target"
  input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } } }
%s
"""
    readme = (ROOT / "README.md").read_text()
    python_layer = re.search(r'```\n(layer \{ name: "loss" type: "Python".*?)```', readme,
                             flags=re.S).group(1)
    builtin = 'layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" ' \
              'top: "loss" }'
    (tmp_path / "py.prototxt").write_text(net_text % python_layer)
    (tmp_path / "builtin.prototxt").write_text(net_text % builtin)
    code = """
import numpy as np
import caffe
caffe.set_random_seed(3)
nets = [caffe.Net(name, caffe.TRAIN) for name in ("py.prototxt", "builtin.prototxt")]
rng = np.random.default_rng(0)
x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 5))
for net in nets:
    net.params["ip"][0].data[...] = nets[0].params["ip"][0].data
    net.blobs["x"].data[...] = x
    net.blobs["target"].data[...] = t
    net.forward()
    net.backward()
np.save("out.npy", np.array([[n.blobs["loss"].data.item() for n in nets]]))
np.save("grads.npy", np.stack([n.params["ip"][0].diff for n in nets]))
"""
    _run(code, tmp_path)
    losses = np.load(tmp_path / "out.npy")[0]
    grads = np.load(tmp_path / "grads.npy")
    assert losses[0] > 0
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_netspec_block_writes_a_net_that_builds(repo_like):
    _run(_python_blocks()[3], repo_like)
    code = """
import caffe
net = caffe.Net("lenet_auto_train.prototxt", caffe.TRAIN)
print(net.blobs["data"].data.shape, float(net.forward()["loss"]) > 0)
"""
    assert _run(code, repo_like).strip() == "(64, 1, 28, 28) True"
