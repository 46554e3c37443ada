"""The code paths of pycaffe's example notebooks, written as those notebooks use the API:
learning LeNet (NetSpec, SGDSolver, step, blobs and params, a GPU request), net surgery
(filters edited in place, reshaped inputs, fully connected weights transplanted into
convolutions) and a Python loss layer on a linear-regression net. Counts are smaller than the
notebooks'; the data is the reference MNIST sample."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

import caffe
from caffe import layers as L  # noqa: N812
from caffe import params as P  # noqa: N812
from caffe.proto import caffe_pb2


def lenet(lmdb, batch_size):
    n = caffe.NetSpec()
    n.data, n.label = L.Data(batch_size=batch_size, backend=P.Data.LMDB, source=lmdb,
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type="xavier"))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


AUTO_SOLVER = """train_net: "mnist/lenet_auto_train.prototxt"
test_net: "mnist/lenet_auto_test.prototxt"
test_iter: 10
test_interval: 500
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 100
max_iter: 10000
snapshot: 5000
snapshot_prefix: "mnist/lenet"
random_seed: 1701
"""


@pytest.fixture
def examples(caffe_ref, tmp_path, monkeypatch):
    """A folder laid out as Caffe's examples/: mnist/ with the LMDBs; the working directory."""
    (tmp_path / "mnist").mkdir()
    for split in ("train", "test"):
        os.symlink(caffe_ref / "mnist" / f"mnist_{split}_lmdb",
                   tmp_path / "mnist" / f"mnist_{split}_lmdb")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_learning_lenet(examples):
    with open("mnist/lenet_auto_train.prototxt", "w") as f:
        f.write(str(lenet("mnist/mnist_train_lmdb", 64)))
    with open("mnist/lenet_auto_test.prototxt", "w") as f:
        f.write(str(lenet("mnist/mnist_test_lmdb", 100)))
    with open("mnist/lenet_auto_solver.prototxt", "w") as f:
        f.write(AUTO_SOLVER)
    caffe.set_device(0)
    caffe.set_mode_gpu()
    solver = caffe.SGDSolver("mnist/lenet_auto_solver.prototxt")
    assert [(k, v.data.shape) for k, v in solver.net.blobs.items()] == [
        ("data", (64, 1, 28, 28)), ("label", (64,)), ("conv1", (64, 20, 24, 24)),
        ("pool1", (64, 20, 12, 12)), ("conv2", (64, 50, 8, 8)), ("pool2", (64, 50, 4, 4)),
        ("fc1", (64, 500)), ("score", (64, 10)), ("loss", ())]
    assert [(k, v[0].data.shape) for k, v in solver.net.params.items()] == [
        ("conv1", (20, 1, 5, 5)), ("conv2", (50, 20, 5, 5)), ("fc1", (500, 800)),
        ("score", (10, 500))]
    solver.net.forward()
    solver.test_nets[0].forward()
    tiled = solver.net.blobs["data"].data[:8, 0].transpose(1, 0, 2).reshape(28, 8 * 28)
    assert tiled.shape == (28, 224) and 0 <= tiled.min() and tiled.max() <= 1
    labels = solver.net.blobs["label"].data[:8]
    assert set(labels) <= set(range(10))
    solver.step(1)
    filters = solver.net.params["conv1"][0].diff[:, 0].reshape(4, 5, 5, 5)
    assert np.abs(filters).max() > 0

    niter, test_interval = 40, 20
    train_loss = np.zeros(niter)
    test_acc = np.zeros(int(np.ceil(niter / test_interval)))
    output = np.zeros((niter, 8, 10))
    for it in range(niter):
        solver.step(1)
        train_loss[it] = solver.net.blobs["loss"].data
        # start at conv1 so that the test net keeps its batch
        solver.test_nets[0].forward(start="conv1")
        output[it] = solver.test_nets[0].blobs["score"].data[:8]
        if it % test_interval == 0:
            correct = 0
            for _ in range(4):
                solver.test_nets[0].forward()
                correct += sum(solver.test_nets[0].blobs["score"].data.argmax(1)
                               == solver.test_nets[0].blobs["label"].data)
            test_acc[it // test_interval] = correct / 4e2
    assert solver.iter == niter + 1
    assert train_loss[-10:].mean() < 0.6 * train_loss[:10].mean()
    assert test_acc[-1] > max(test_acc[0], 0.6)
    # forward(start="conv1") scored the same test batch every iteration, as the weights moved.
    assert not np.array_equal(output[0], output[-1])
    assert not list(examples.glob("mnist/*.jsonl"))  # pycaffe's files only


def test_a_solver_written_from_python(examples):
    """The notebook's custom_net part: a SolverParameter built in Python, with solver_mode GPU,
    train_net/test_net fields and get_solver."""
    with open("mnist/custom_auto_train.prototxt", "w") as f:
        f.write(str(lenet("mnist/mnist_train_lmdb", 64)))
    with open("mnist/custom_auto_test.prototxt", "w") as f:
        f.write(str(lenet("mnist/mnist_test_lmdb", 100)))
    s = caffe_pb2.SolverParameter()
    s.random_seed = 0xCAFFE
    s.train_net = "mnist/custom_auto_train.prototxt"
    s.test_net.append("mnist/custom_auto_test.prototxt")
    s.test_interval = 500
    s.test_iter.append(10)
    s.max_iter = 10000
    s.type = "Adam"
    s.base_lr = 0.001
    s.lr_policy = "fixed"
    s.display = 1000
    s.snapshot = 5000
    s.snapshot_prefix = "mnist/custom_net"
    s.solver_mode = caffe_pb2.SolverParameter.GPU
    with open("mnist/custom_auto_solver.prototxt", "w") as f:
        f.write(str(s))
    solver = caffe.get_solver("mnist/custom_auto_solver.prototxt")
    assert type(solver) is caffe.AdamSolver
    first = None
    for _ in range(20):
        solver.step(1)
        first = first if first is not None else float(solver.net.blobs["loss"].data)
    assert float(solver.net.blobs["loss"].data) < first
    assert solver.lr == pytest.approx(0.001)


CONV = """name: "convolution"
layer { name: "data" type: "Input" top: "data"
  input_param { shape: { dim: 1 dim: 1 dim: 100 dim: 100 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 5 stride: 1
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 } } }
"""


def _correlate_valid(image, kernel):
    """Caffe's convolution (a cross-correlation) of one channel, 'valid' region."""
    kh, kw = kernel.shape
    out = np.zeros((image.shape[0] - kh + 1, image.shape[1] - kw + 1))
    for dy in range(kh):
        for dx in range(kw):
            out += kernel[dy, dx] * image[dy:dy + out.shape[0], dx:dx + out.shape[1]]
    return out


def test_net_surgery_edits_filters_in_place(tmp_path):
    cv2 = pytest.importorskip("cv2")
    (tmp_path / "conv.prototxt").write_text(CONV)
    yy, xx = np.mgrid[0:60, 0:80]
    cv2.imwrite(str(tmp_path / "cat_gray.jpg"), (128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 5.0))
                .astype(np.uint8))
    caffe.set_mode_cpu()
    net = caffe.Net(str(tmp_path / "conv.prototxt"), caffe.TEST)
    assert (list(net.blobs.keys()), list(net.params.keys())) == (["data", "conv"], ["conv"])
    im = np.array(caffe.io.load_image(str(tmp_path / "cat_gray.jpg"), color=False)).squeeze()
    assert im.shape == (60, 80)
    im_input = im[np.newaxis, np.newaxis, :, :]
    net.blobs["data"].reshape(*im_input.shape)
    net.blobs["data"].data[...] = im_input
    net.forward()
    assert net.blobs["conv"].data.shape == (1, 3, 56, 76)
    conv0 = net.blobs["conv"].data[0, 0]  # a view the next forward pass writes into
    before = conv0.mean()
    net.params["conv"][1].data[0] = 1.
    net.forward()
    assert conv0.mean() == pytest.approx(before + 1, abs=1e-5)

    ksize = net.params["conv"][0].data.shape[2:]
    sigma = 1.
    y, x = np.mgrid[-ksize[0] // 2 + 1:ksize[0] // 2 + 1, -ksize[1] // 2 + 1:ksize[1] // 2 + 1]
    g = np.exp(-((x ** 2 + y ** 2) / (2.0 * sigma ** 2)))
    gaussian = (g / g.sum()).astype(np.float32)
    net.params["conv"][0].data[0] = gaussian
    net.params["conv"][0].data[1:] = 0.
    sobel = np.array((-1, -2, -1, 0, 0, 0, 1, 2, 1), dtype=np.float32).reshape((3, 3))
    net.params["conv"][0].data[1, 0, 1:-1, 1:-1] = sobel
    net.params["conv"][0].data[2, 0, 1:-1, 1:-1] = sobel.T
    net.forward()
    out = net.blobs["conv"].data[0]
    np.testing.assert_allclose(out[0], _correlate_valid(im, gaussian) + 1, rtol=1e-4, atol=1e-5)
    for channel, kernel in ((1, sobel), (2, sobel.T)):
        np.testing.assert_allclose(out[channel], _correlate_valid(im, np.pad(kernel, 1)),
                                   rtol=1e-4, atol=1e-4)


FC_NET = """name: "fc"
layer { name: "data" type: "Input" top: "data"
  input_param { shape: { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.2 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc6" type: "InnerProduct" bottom: "conv1" top: "fc6"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.2 }
    bias_filler { type: "constant" value: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc6" top: "prob" }
"""

FULL_CONV = FC_NET.replace('name: "fc6" type: "InnerProduct" bottom: "conv1" top: "fc6"\n'
                           '  inner_product_param { num_output: 5',
                           'name: "fc6-conv" type: "Convolution" bottom: "conv1" top: "fc6"\n'
                           '  convolution_param { num_output: 5 kernel_size: 6').replace(
    "dim: 8 dim: 8", "dim: 10 dim: 12")


def test_net_surgery_casts_fully_connected_layers_into_convolutions(tmp_path):
    (tmp_path / "deploy.prototxt").write_text(FC_NET)
    (tmp_path / "full_conv.prototxt").write_text(FULL_CONV)
    caffe.set_random_seed(4)
    trained = str(tmp_path / "trained.caffemodel")
    caffe.Net(str(tmp_path / "deploy.prototxt"), caffe.TEST).save(trained)
    # pycaffe's older constructor form, as the notebook writes it.
    net = caffe.Net(str(tmp_path / "deploy.prototxt"), trained, caffe.TEST)
    fc_params = {"fc6": (net.params["fc6"][0].data, net.params["fc6"][1].data)}
    assert fc_params["fc6"][0].shape == (5, 144)
    net_full_conv = caffe.Net(str(tmp_path / "full_conv.prototxt"), trained, caffe.TEST)
    conv_params = {"fc6-conv": (net_full_conv.params["fc6-conv"][0].data,
                                net_full_conv.params["fc6-conv"][1].data)}
    assert conv_params["fc6-conv"][0].shape == (5, 4, 6, 6)
    conv_params["fc6-conv"][0].flat = fc_params["fc6"][0].flat
    conv_params["fc6-conv"][1][...] = fc_params["fc6"][1]
    surgery = str(tmp_path / "full_conv.caffemodel")
    net_full_conv.save(surgery)

    reloaded = caffe.Net(str(tmp_path / "full_conv.prototxt"), caffe.TEST, weights=surgery)
    image = np.random.default_rng(9).uniform(0, 1, (10, 12, 3)).astype(np.float32)
    mean = np.random.default_rng(1).uniform(0, 1, (3, 10, 12))
    np.save(tmp_path / "mean.npy", mean)
    transformer = caffe.io.Transformer({"data": reloaded.blobs["data"].data.shape})
    transformer.set_mean("data", np.load(tmp_path / "mean.npy").mean(1).mean(1))
    transformer.set_transpose("data", (2, 0, 1))
    transformer.set_channel_swap("data", (2, 1, 0))
    transformer.set_raw_scale("data", 255.0)
    out = reloaded.forward_all(data=np.asarray([transformer.preprocess("data", image)]))
    assert out["prob"].shape == (1, 5, 3, 5)  # a 3 x 5 map of the 8 x 8 classifier
    np.testing.assert_allclose(
        transformer.deprocess("data", reloaded.blobs["data"].data[0]), image, rtol=1e-5,
        atol=1e-5)
    # Each map position is the fully connected net on the 8 x 8 window there.
    window = reloaded.blobs["data"].data[:, :, 2:10, 1:9]
    expected = net.forward(data=window)["prob"][0]
    np.testing.assert_allclose(out["prob"][0, :, 2, 1], expected, rtol=1e-4, atol=1e-6)


# pycaffe's examples/pycaffe/layers/pyloss.py (the notebook's Python loss layer).
PYLOSS = (Path(__file__).resolve().parents[1] / "data" / "pycaffe" / "pyloss.py").read_text()

LINREG = """name: 'LinearRegressionExample'
layer { type: 'DummyData' name: 'x' top: 'x'
  dummy_data_param { shape: { dim: 10 dim: 3 dim: 2 } data_filler: { type: 'gaussian' } } }
layer { type: 'DummyData' name: 'y' top: 'y'
  dummy_data_param { shape: { dim: 10 dim: 3 dim: 2 } data_filler: { type: 'gaussian' } } }
layer { type: 'InnerProduct' name: 'ipx' top: 'ipx' bottom: 'x'
  inner_product_param { num_output: 10 weight_filler { type: 'xavier' } } }
layer { type: 'InnerProduct' name: 'ipy' top: 'ipy' bottom: 'y'
  inner_product_param { num_output: 10 weight_filler { type: 'xavier' } } }
layer { type: 'Python' name: 'loss' top: 'loss' bottom: 'ipx' bottom: 'ipy'
  python_param { module: '%s' layer: 'EuclideanLossLayer' } loss_weight: 1 }
"""


@pytest.fixture
def linreg(tmp_path, monkeypatch):
    module = f"pyloss_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(PYLOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "linreg.prototxt"
    path.write_text(LINREG % module)
    yield str(path)
    sys.modules.pop(module, None)


def test_python_loss_layer_on_linreg(linreg, tmp_path):
    caffe.set_random_seed(2)
    net = caffe.Net(linreg, caffe.TRAIN)
    out = net.forward()
    assert out["loss"].shape == (1,)  # a Python layer's top is what reshape made it
    loss = out["loss"].item()
    ipx, ipy = net.blobs["ipx"].data, net.blobs["ipy"].data
    assert loss == pytest.approx(np.sum((ipx - ipy) ** 2) / 10 / 2, rel=1e-5)
    net.backward()
    # d loss / d ipx_weights by the chain rule, from the layer's own diff.
    x = net.blobs["x"].data.reshape(10, -1)
    expected = ((ipx - ipy) / 10).T @ x
    np.testing.assert_allclose(net.params["ipx"][0].diff, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.blobs["ipy"].diff, -(ipx - ipy) / 10, rtol=1e-5)

    solver_file = tmp_path / "linreg_solver.prototxt"
    solver_file.write_text(f'net: "{linreg}"\nbase_lr: 0.05\nlr_policy: "fixed"\n'
                           'momentum: 0.9\nmax_iter: 30\nrandom_seed: 3\n'
                           f'snapshot_after_train: false\nsnapshot_prefix: "{tmp_path / "lr"}"\n')
    solver = caffe.SGDSolver(str(solver_file))
    losses = []
    solver.add_callback(lambda: None, lambda: losses.append(solver.net.blobs["loss"].data.item()))
    solver.solve()
    assert solver.iter == 30 and len(losses) == 30
    assert losses[-1] < 0.5 * losses[0]
