"""caffe.Net from Python, checked against Caffe's values and pyforge's CLI on the same files."""

from __future__ import annotations

import numpy as np
import pytest

import caffe
from pyforge import api
from pyforge.errors import PyforgeError
from tests.caffe_api.conftest import INIT_WEIGHTS, LENET, LENET_DEPLOY
from tests.logcapture import capture_log


def _cli_batches(iterations: int) -> list[dict[str, float]]:
    """The per-batch outputs `pyforge test` prints for LeNet with the initial weights."""
    with capture_log() as log:
        api.test(LENET, INIT_WEIGHTS, iterations=iterations)
    batches: list[dict[str, float]] = [{} for _ in range(iterations)]
    for message in log.messages:
        if message.startswith("Batch "):
            head, value = message.split(" = ")
            index, name = head[len("Batch "):].split(", ")
            batches[int(index)][name] = float(value)
    return batches


def test_forward_gives_caffes_batch_0_and_the_clis_batches(in_caffe_ref):
    net = caffe.Net(LENET, caffe.TEST, weights=INIT_WEIGHTS)
    out = net.forward()
    assert set(out) == {"accuracy", "loss"}
    first = {k: float(v) for k, v in out.items()}
    # Real Caffe's values for batch 0 (runs/debug_info/caffe.log).
    assert first["loss"] == pytest.approx(2.41096, abs=5e-6)
    assert first["accuracy"] == pytest.approx(0.04, abs=1e-7)
    # The data cursor advances with every forward call, as the CLI's batches do.
    second = {k: float(v) for k, v in net.forward().items()}
    cli = _cli_batches(2)
    assert cli[0] == {"accuracy": pytest.approx(0.04), "loss": pytest.approx(2.41096, abs=5e-6)}
    assert second == {k: pytest.approx(v, abs=5e-6) for k, v in cli[1].items()}
    assert second["loss"] != pytest.approx(first["loss"])
    assert float(out["loss"]) == second["loss"]  # the arrays returned are the blobs' own


def test_forward_returns_the_blobs_own_arrays(in_caffe_ref):
    net = caffe.Net(LENET, caffe.TEST, weights=INIT_WEIGHTS)
    out = net.forward(blobs=["ip2", "label"])
    assert set(out) == {"accuracy", "loss", "ip2", "label"}
    assert out["ip2"] is net.blobs["ip2"].data
    assert out["ip2"].shape == (100, 10)
    kept = out["ip2"].copy()
    net.forward()
    assert not np.array_equal(out["ip2"], kept)  # pycaffe's arrays are overwritten in place


def test_legacy_constructor_and_argument_errors(in_caffe_ref):
    with capture_log() as log:
        legacy = caffe.Net(LENET, INIT_WEIGHTS, caffe.TEST)
    assert any("deprecated" in m for m in log.messages)
    modern = caffe.Net(LENET, phase=caffe.TEST, weights=INIT_WEIGHTS)
    for name in modern.params:
        for a, b in zip(legacy.params[name], modern.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(PyforgeError, match="needs a phase"):
        caffe.Net(LENET)
    with pytest.raises(PyforgeError, match="phase must be"):
        caffe.Net(LENET, 7)
    with pytest.raises(PyforgeError, match="no such file"):
        caffe.Net("missing.prototxt", caffe.TEST)


def test_train_phase_level_and_stages(in_caffe_ref, tmp_path):
    net_file = tmp_path / "staged.prototxt"
    net_file.write_text("""name: "staged"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "deep" type: "ReLU" bottom: "x" top: "y" include { min_level: 1 } }
layer { name: "extra" type: "TanH" bottom: "x" top: "z" include { stage: "extra" } }
""")
    assert caffe.Net(str(net_file), caffe.TRAIN)._layer_names == ["in"]
    assert caffe.Net(net_file, caffe.TEST, level=1)._layer_names == ["in", "deep"]
    assert caffe.Net(net_file, caffe.TEST, stages=["extra"])._layer_names == ["in", "extra"]


def test_views_match_pycaffe(in_caffe_ref):
    net = caffe.Net(LENET, caffe.TEST)
    assert net._layer_names[:3] == ["mnist", "label_mnist_1_split", "conv1"]
    assert [layer.type for layer in net.layers][:4] == ["Data", "Split", "Convolution", "Pooling"]
    assert list(net.layer_dict)[2] == "conv1"
    assert net.layer_dict["conv1"] is net.layers[2]
    assert net.inputs == [] and net.outputs == ["accuracy", "loss"]
    assert net.top_names["mnist"] == ["data", "label"]
    assert net.bottom_names["loss"] == ["ip2_ip2_0_split_1", "label_mnist_1_split_1"]
    assert net.top_names["relu1"] == ["ip1"] and net.bottom_names["relu1"] == ["ip1"]
    assert net.blob_loss_weights["loss"] == 1.0 and net.blob_loss_weights["accuracy"] == 0.0
    assert list(net.blob_loss_weights) == list(net.blobs)
    assert net._blob_loss_weights[net._blob_names.index("loss")] == 1.0
    assert [net._blob_names[i] for i in net._outputs] == net.outputs
    assert [net._blob_names[i] for i in net._top_ids(0)] == ["data", "label"]
    assert list(net.params) == ["conv1", "conv2", "ip1", "ip2"]
    conv1 = net.params["conv1"]
    assert conv1[0].data.shape == (20, 1, 5, 5) and conv1[1].data.shape == (20,)
    data = net.blobs["data"]
    assert (data.num, data.channels, data.height, data.width, data.count) == (
        100, 1, 28, 28, 100 * 28 * 28)
    assert tuple(data.shape) == (100, 1, 28, 28)


def test_net_surgery_copy_weights_and_edit_in_place(in_caffe_ref):
    source = caffe.Net(LENET, caffe.TEST, weights=INIT_WEIGHTS)
    target = caffe.Net(LENET, caffe.TEST)  # random fillers
    expected = float(source.forward()["loss"])
    assert float(target.forward()["loss"]) != pytest.approx(expected, abs=1e-3)
    target = caffe.Net(LENET, caffe.TEST)  # its cursor back at batch 0
    for name, blobs in source.params.items():
        for mine, theirs in zip(target.params[name], blobs):
            mine.data[...] = theirs.data
    assert float(target.forward()["loss"]) == pytest.approx(expected, abs=1e-6)
    # Zero the classifier in place: every class scores 0, the loss is ln(10).
    target.params["ip2"][0].data[...] = 0
    target.params["ip2"][1].data.flat = 0
    assert float(target.forward()["loss"]) == pytest.approx(np.log(10), abs=1e-6)


def test_forward_with_inputs_matches_the_data_layer_net(in_caffe_ref):
    train_test = caffe.Net(LENET, caffe.TEST, weights=INIT_WEIGHTS)
    train_test.forward()
    images = train_test.blobs["data"].data[:64].copy()
    deploy = caffe.Net(LENET_DEPLOY, caffe.TEST, weights=INIT_WEIGHTS)
    assert deploy.inputs == ["data"] and deploy.outputs == ["prob"]
    prob = deploy.forward(data=images)["prob"].copy()
    logits = train_test.blobs["ip2"].data[:64]
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(prob, softmax, rtol=1e-5, atol=1e-6)
    # In-place writes into the input blob are what the next forward reads.
    deploy.blobs["data"].data[...] = 0
    assert not np.allclose(deploy.forward()["prob"], prob)
    deploy.blobs["data"].data[...] = images
    np.testing.assert_array_equal(deploy.forward()["prob"], prob)
    with pytest.raises(PyforgeError, match="do not match the net inputs"):
        deploy.forward(image=images)
    with pytest.raises(PyforgeError, match="not batch sized"):
        deploy.forward(data=images[:3])


def test_forward_and_backward_ranges(in_caffe_ref):
    net = caffe.Net(LENET_DEPLOY, caffe.TEST, weights=INIT_WEIGHTS)
    rng = np.random.default_rng(0)
    images = rng.random((64, 1, 28, 28), dtype=np.float32)
    full = net.forward(data=images)["prob"].copy()
    part = net.forward(end="ip1")
    assert set(part) == {"ip1"}
    rest = net.forward(start="relu1")  # ip1's top, written by ip1 above
    np.testing.assert_allclose(rest["prob"], full, rtol=1e-6)
    with pytest.raises(PyforgeError, match="no layer 'nope'"):
        net.forward(end="nope")
    with pytest.raises(ValueError):  # pycaffe's list.index raises ValueError
        net.forward(start="nope")
    # Without a loss and without force_backward Caffe prunes every layer from backward.
    net.forward(data=images, end="ip2")
    net.blobs["ip2"].diff[...] = 1
    diffs = net.backward(start="ip2", end="ip2")
    assert set(diffs) == {"ip1"} and not diffs["ip1"].any()


def test_backward_from_output_diffs_reaches_the_input(in_caffe_ref, tmp_path):
    net_file = tmp_path / "linear.prototxt"
    net_file.write_text("""name: "linear" force_backward: true
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
""")
    net = caffe.Net(str(net_file), caffe.TRAIN)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    net.forward(x=x)
    top = np.ones((4, 2), dtype=np.float32)
    net.blobs["y"].diff[...] = top
    ranged = net.backward(start="fc", end="fc")
    assert set(ranged) == {"x"}
    np.testing.assert_allclose(ranged["x"], top @ net.params["fc"][0].data, rtol=1e-6)
    net.clear_param_diffs()
    diffs = net.backward(y=top)
    w = net.params["fc"][0].data
    np.testing.assert_allclose(diffs["x"], top @ w, rtol=1e-6)
    # Parameter diffs accumulate over backward passes until cleared.
    np.testing.assert_allclose(net.params["fc"][0].diff, top.T @ x, rtol=1e-6)
    net.backward(y=top)
    np.testing.assert_allclose(net.params["fc"][0].diff, 2 * top.T @ x, rtol=1e-6)
    net.clear_param_diffs()
    assert not net.params["fc"][0].diff.any()
    with pytest.raises(PyforgeError, match="do not match the net outputs"):
        net.backward(z=top)


def test_reshape_input_then_net_reshape(in_caffe_ref):
    net = caffe.Net(LENET_DEPLOY, caffe.TEST, weights=INIT_WEIGHTS)
    net.blobs["data"].reshape(3, 1, 28, 28)
    net.reshape()
    assert net.blobs["prob"].data.shape == (3, 10)
    out = net.forward(data=np.zeros((3, 1, 28, 28), dtype=np.float32))
    assert out["prob"].shape == (3, 10)
    np.testing.assert_allclose(out["prob"].sum(1), 1, rtol=1e-6)


def test_forward_all_pads_and_trims_batches(in_caffe_ref):
    net = caffe.Net(LENET_DEPLOY, caffe.TEST, weights=INIT_WEIGHTS)
    rng = np.random.default_rng(1)
    images = rng.random((70, 1, 28, 28), dtype=np.float32)  # one full batch of 64, then 6
    out = net.forward_all(data=images)
    assert out["prob"].shape == (70, 10)
    one_batch = net.forward(data=images[:64])["prob"].copy()
    np.testing.assert_allclose(out["prob"][:64], one_batch, rtol=1e-6)
    padded = np.concatenate([images[64:], np.zeros((58, 1, 28, 28), np.float32)])
    np.testing.assert_allclose(out["prob"][64:], net.forward(data=padded)["prob"][:6],
                               rtol=1e-6)
    outs, diffs = net.forward_backward_all(data=images[:10])
    assert outs["prob"].shape == (10, 10) and diffs["data"].shape == (10, 1, 28, 28)
    with pytest.raises(PyforgeError, match="needs the input arrays"):
        net.forward_all()


def test_save_copy_from_and_hdf5_round_trip(in_caffe_ref, tmp_path):
    net = caffe.Net(LENET, caffe.TEST, weights=INIT_WEIGHTS)
    net.params["ip2"][1].data[...] = 7
    net.save(str(tmp_path / "edited.caffemodel"))
    net.save_hdf5(str(tmp_path / "edited.caffemodel.h5"))
    for load in ("copy_from", "load_hdf5"):
        other = caffe.Net(LENET, caffe.TEST)
        path = tmp_path / ("edited.caffemodel.h5" if load == "load_hdf5" else "edited.caffemodel")
        getattr(other, load)(str(path))
        for name in net.params:
            for a, b in zip(net.params[name], other.params[name]):
                np.testing.assert_array_equal(a.data, b.data)
    # The saved model is what `pyforge test` scores.
    with capture_log():
        cli = api.test(LENET, str(tmp_path / "edited.caffemodel"), iterations=1)
    fresh = caffe.Net(LENET, caffe.TEST, weights=str(tmp_path / "edited.caffemodel"))
    assert float(fresh.forward()["loss"]) == pytest.approx(cli["loss"], abs=1e-5)
    with pytest.raises(PyforgeError, match="not an HDF5 file"):
        fresh.load_hdf5(str(tmp_path / "edited.caffemodel"))


def test_share_with_uses_the_other_nets_weights(in_caffe_ref):
    trained = caffe.Net(LENET, caffe.TRAIN, weights=INIT_WEIGHTS)
    tester = caffe.Net(LENET, caffe.TEST)
    tester.share_with(trained)
    assert tester.params["conv1"][0].data is trained.params["conv1"][0].data
    trained.params["ip2"][0].data[...] = 0
    trained.params["ip2"][1].data[...] = 0
    assert float(tester.forward()["loss"]) == pytest.approx(np.log(10), abs=1e-6)


def test_layer_callbacks_run_in_order(in_caffe_ref):
    net = caffe.Net(LENET_DEPLOY, caffe.TEST)
    calls = []
    net.before_forward(lambda i: calls.append(("before", i)))
    net.after_forward(lambda i: calls.append(("after", i)))
    net.before_backward(lambda i: calls.append(("back", i)))
    net.forward(data=np.zeros((64, 1, 28, 28), np.float32), end="conv1")
    assert calls == [("before", 0), ("after", 0), ("before", 1), ("after", 1)]
    calls.clear()
    net.backward(start="conv1")
    assert calls == [("back", 1), ("back", 0)]


def test_set_input_arrays_feeds_a_memory_data_layer(tmp_path):
    net_file = tmp_path / "memory.prototxt"
    net_file.write_text("""name: "memory"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 } }
layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }
""")
    net = caffe.Net(str(net_file), caffe.TEST)
    data = np.arange(16, dtype=np.float32).reshape(4, 1, 2, 2)
    labels = np.array([0, 1, 2, 3], dtype=np.float32)
    net.set_input_arrays(data, labels)
    first = net.forward()
    np.testing.assert_array_equal(first["flat"], data[:2].reshape(2, 4))
    np.testing.assert_array_equal(net.forward()["label"], labels[2:])
    plain = caffe.Net(_plain_net(tmp_path), caffe.TEST)
    with pytest.raises(PyforgeError, match="MemoryData"):
        plain.set_input_arrays(data, labels)


def _plain_net(folder) -> str:
    """A one-layer net without a MemoryData layer."""
    path = folder / "plain.prototxt"
    path.write_text('layer { name: "in" type: "Input" top: "x" '
                    'input_param { shape { dim: 1 } } }\n')
    return str(path)


def test_random_seed_makes_nets_reproducible(in_caffe_ref):
    caffe.set_random_seed(5)
    first = caffe.Net(LENET, caffe.TEST).params["conv1"][0].data.copy()
    second = caffe.Net(LENET, caffe.TEST).params["conv1"][0].data.copy()
    assert not np.array_equal(first, second)  # later nets continue the seeded stream
    caffe.set_random_seed(5)
    np.testing.assert_array_equal(caffe.Net(LENET, caffe.TEST).params["conv1"][0].data, first)


def test_mode_switches():
    caffe.set_mode_cpu()
    caffe.set_device(0)
    caffe.set_mode_gpu()  # accepted, with a warning: the work stays on the CPU
    assert caffe.solver_count() == 1 and not caffe.has_nccl()
    assert "Convolution" in caffe.layer_type_list()
