"""Convolutions running their in-place BatchNorm / Scale / ReLU followers in their own pass
(pyforge.net.fusion): the same bits in every blob as the layers one after the other."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from pyforge.blob import CopyBack
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto, read_net_param
from tests.net_weights import seed_weights

ZOO = Path(__file__).resolve().parents[2] / "prototxt_examples" / "zoo"
QUIET = logging.getLogger("pyforge.tests.quiet")


def _zoo(name: str, batch: int) -> Net:
    param = read_net_param(ZOO / f"{name}_deploy.prototxt")
    param.state.phase = caffe_pb2.TEST
    layer = next(lp for lp in param.layer if lp.type == "Input")
    layer.input_param.shape[0].dim[0] = batch
    net = Net(param, rng=np.random.default_rng(3), logger=QUIET)
    seed_weights(net, np.random.default_rng(4))
    return net


def _one_by_one(net: Net) -> None:
    for layer_id, layer in enumerate(net.layers):
        bottom, top = net.bottoms(layer_id), net.tops(layer_id)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)


@pytest.mark.parametrize(("name", "batch"), [("mobilenet_v2", 2), ("resnet50", 1),
                                             ("squeezenet1_1", 2)])
def test_fused_forward_is_bitwise_the_layers_one_by_one(name, batch):
    net = _zoo(name, batch)
    # Every convolution whose output goes straight into BatchNorm, Scale or ReLU runs them.
    followed = [i for i, layer in enumerate(net.layers[:-1]) if layer.type == "Convolution"
                and net.layers[i + 1].type in ("BatchNorm", "Scale", "ReLU")
                and net.bottom_ids[i + 1] == net.top_ids[i]]
    assert sorted(net.chains) == followed and len(followed) > 20
    # MobileNet's BatchNorm writes a new blob: its convolutions' outputs are left out (and
    # computed again below, when the loop reads them); ResNet's works in place.
    elided = sum(chain.elidable for chain in net.chains.values())
    assert elided == (len(followed) if name == "mobilenet_v2" else 0)
    x = np.random.default_rng(5).standard_normal(net.blobs["data"].shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    _one_by_one(net)
    expected = {k: b.data.copy() for k, b in net.blobs.items()}
    for blob in net.blobs.values():
        blob.data[...] = np.nan
    net.blobs["data"].data[...] = x
    net.forward_loss()
    for key, value in expected.items():
        np.testing.assert_array_equal(net.blobs[key].data, value, err_msg=key)


CHAIN = """
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 3 dim: 2 dim: 5 dim: 4 } shape { dim: 3 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.5 }
                            bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv"
        batch_norm_param { use_global_stats: true } }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv"
        scale_param { bias_term: true filler { type: "gaussian" std: 0.5 }
                      bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" relu_param { negative_slope: 0.1 } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def _chain_net(extra: str = "", input_dims: str = "dim: 3 dim: 2 dim: 5 dim: 4") -> Net:
    text = CHAIN.replace("dim: 3 dim: 2 dim: 5 dim: 4", input_dims)
    param = parse_text_proto(extra + text, caffe_pb2.NetParameter(), "chain.prototxt")
    net = Net(param, rng=np.random.default_rng(7), logger=QUIET)
    bn = net.layer_by_name("bn")
    bn.blobs[0].data[...] = [0.5, -1.0, 2.0, 0.0]
    bn.blobs[1].data[...] = [1.0, 4.0, 0.25, 2.0]
    bn.blobs[2].data[...] = 2.0
    rng = np.random.default_rng(8)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.blobs["label"].data[...] = [0, 2, 1]
    return net


@pytest.mark.parametrize("input_dims", ["dim: 3 dim: 2 dim: 5 dim: 4",
                                        "dim: 3 dim: 32 dim: 14 dim: 14"],
                         ids=["im2col", "shifted_taps"])
def test_a_training_net_fuses_and_backward_reads_what_scale_kept(input_dims):
    """In a net with a loss, Scale's backward needs its input: the fused pass keeps it, so
    the gradients equal those after the layers ran one by one (for both convolution
    forwards: im2col + GEMM, and the shifted taps of 32+ channels over 14x14)."""
    fused, plain = _chain_net(input_dims=input_dims), _chain_net(input_dims=input_dims)
    assert fused.layers[1].shifted == ("32" in input_dims)
    assert list(fused.chains) == [1] and fused.chains[1].members == (2, 3, 4)
    for net, forward in ((fused, fused.forward_loss), (plain, lambda: _one_by_one(plain))):
        forward()
        for layer in net.layers:
            for blob in layer.blobs:
                blob.diff[...] = 0
        net.backward_all()
    for key in plain.blobs:
        np.testing.assert_array_equal(fused.blobs[key].data, plain.blobs[key].data)
        np.testing.assert_array_equal(fused.blobs[key].diff, plain.blobs[key].diff)
    for mine, theirs in zip(fused.layers, plain.layers):
        for a, b in zip(mine.blobs, theirs.blobs):
            np.testing.assert_array_equal(a.diff, b.diff)


def test_no_fusion_where_the_chain_could_be_seen_or_is_not_in_place():
    net = _chain_net()
    calls = []
    conv = net.layers[1]
    original = type(conv).forward

    def spy(self, bottom, top, epilogue=None):
        calls.append(epilogue is not None)
        return original(self, bottom, top, epilogue)

    type(conv).forward = spy
    try:
        net.forward_from_to(0, 3)  # ends inside the chain: layer by layer
        net.forward_from_to(0, 4)  # the whole chain: fused
        net.debug_info = True  # every layer's output is printed: layer by layer
        net.forward_from_to(0, 4)
    finally:
        type(conv).forward = original
    assert calls == [False, True, False]
    # A chain that leaves the blob (ReLU writes a new top) stops before that layer.
    text = CHAIN.replace('name: "relu" type: "ReLU" bottom: "conv" top: "conv"',
                         'name: "relu" type: "ReLU" bottom: "conv" top: "relu"').replace(
        'bottom: "conv" top: "ip"', 'bottom: "relu" top: "ip"')
    param = parse_text_proto(text, caffe_pb2.NetParameter(), "chain.prototxt")
    net = Net(param, rng=np.random.default_rng(7), logger=QUIET)
    assert net.chains[1].members == (2, 3)
    # BatchNorm with batch statistics is not fused (its forward updates its statistics).
    param = parse_text_proto(CHAIN.replace("use_global_stats: true", "use_global_stats: false"),
                             caffe_pb2.NetParameter(), "chain.prototxt")
    assert not Net(param, rng=np.random.default_rng(7), logger=QUIET).chains


# --- elision: a convolution output nothing in the net reads --------------------------------------
DEPLOY = """
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 4 dim: 6 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.5 }
                            bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn"
        batch_norm_param { use_global_stats: true } }
layer { name: "scale" type: "Scale" bottom: "bn" top: "bn"
        scale_param { bias_term: true filler { type: "gaussian" std: 0.5 }
                      bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "bn" top: "bn" }
layer { name: "ip" type: "InnerProduct" bottom: "bn" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
"""

#: The convolution forwards that can leave their output unwritten.
KINDS = {
    "im2col": "",
    "pointwise": "kernel_size: 1 pad: 0",
    "depthwise": "group: 4",
    "depthwise_stride2": "group: 4 stride: 2",
    "shifted_taps": "",
    "images_side_by_side": "kernel_size: 1 pad: 0",
}


def _deploy_net(kind: str, extra: str = "", edit=lambda text: text) -> Net:
    text = DEPLOY.replace("kernel_size: 3 pad: 1", KINDS[kind] or "kernel_size: 3 pad: 1")
    if kind.startswith("depthwise"):
        text = text.replace("group: 4", "kernel_size: 3 pad: 1 group: 4")
    if kind == "shifted_taps":
        text = text.replace("dim: 2 dim: 4 dim: 6 dim: 5", "dim: 2 dim: 32 dim: 14 dim: 14")
    if kind == "images_side_by_side":  # 7 images of 7x7: conv_forward_batched
        text = text.replace("dim: 2 dim: 4 dim: 6 dim: 5", "dim: 7 dim: 4 dim: 7 dim: 7")
    param = parse_text_proto(edit(text) + extra, caffe_pb2.NetParameter(), "deploy.prototxt")
    param.state.phase = caffe_pb2.TEST
    net = Net(param, rng=np.random.default_rng(7), logger=QUIET)
    bn = net.layer_by_name("bn")
    bn.blobs[0].data[...] = [0.5, -1.0, 2.0, 0.0]
    bn.blobs[1].data[...] = [1.0, 4.0, 0.25, 2.0]
    bn.blobs[2].data[...] = 2.0
    return net


def _spy_elide(net: Net, calls: list):
    conv = net.layer_by_name("conv")
    original = conv.forward

    def spy(bottom, top, epilogue=None, params=None):
        calls.append(None if epilogue is None else epilogue.elide)
        return original(bottom, top, epilogue, params)

    conv.forward = spy


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_unread_convolution_output_is_left_out_and_computed_when_read(kind):
    """Nothing in a deploy net reads a convolution output whose BatchNorm writes a new blob:
    the fused pass leaves it unwritten. Reading it gives the bits the layer by layer run
    gives, and from then on every pass writes it, so an array taken from it stays current."""
    net, plain = _deploy_net(kind), _deploy_net(kind)
    assert net.layer_by_name("conv").shifted == (kind == "shifted_taps")
    assert (net.layer_by_name("conv").images_per_product > 1) == (kind == "images_side_by_side")
    assert net.chains[1].elidable
    calls: list = []
    _spy_elide(net, calls)
    rng = np.random.default_rng(11)
    for _ in range(2):
        x = rng.standard_normal(net.blobs["data"].shape).astype(np.float32)
        net.blobs["data"].data[...] = x
        plain.blobs["data"].data[...] = x
        net.forward_loss()
        _one_by_one(plain)
        assert not np.isnan(net.blobs["bn"].data).any()
        if not calls[1:]:
            assert calls == [True]
            kept = net.blobs["conv"].data  # the first read computes it
        for name in ("conv", "bn", "ip"):
            np.testing.assert_array_equal(net.blobs[name].data, plain.blobs[name].data)
        np.testing.assert_array_equal(kept, plain.blobs["conv"].data)
    # the first read ran the convolution alone; from then on every pass writes its output
    assert calls == [True, None, False]


def test_an_array_taken_before_the_first_pass_stays_current():
    net, plain = _deploy_net("pointwise"), _deploy_net("pointwise")
    early = net.blobs["conv"].data
    calls: list = []
    _spy_elide(net, calls)
    x = np.random.default_rng(12).standard_normal(net.blobs["data"].shape)
    net.blobs["data"].data[...] = x
    plain.blobs["data"].data[...] = x
    net.forward_loss()
    _one_by_one(plain)
    assert calls == [False]
    np.testing.assert_array_equal(early, plain.blobs["conv"].data)


@pytest.mark.parametrize("change", [
    pytest.param(lambda t: t + 'layer { name: "peek" type: "Power" bottom: "conv" top: "peek" }',
                 id="another_reader"),
    pytest.param(lambda t: t.replace('top: "bn"', 'top: "conv"').replace('bottom: "bn"',
                                                                          'bottom: "conv"'),
                 id="in_place_chain"),
    pytest.param(lambda t: t.replace('layer { name: "data" type: "Input" top: "data"',
                                     'force_backward: true\nlayer { name: "data" '
                                     'type: "Input" top: "data"'),
                 id="backward_runs"),
])
def test_a_convolution_output_stays_written_where_it_could_be_needed(change):
    """Another reader (through a Split, so BatchNorm no longer reads the convolution's own
    top), a chain in place on the output, or a backward pass: the output is written."""
    net = _deploy_net("im2col", edit=change)
    assert 1 not in net.chains or not net.chains[1].elidable
    calls: list = []
    _spy_elide(net, calls)
    net.forward_loss()
    assert calls in ([False], [None])  # fused and written, or not fused at all


@pytest.mark.parametrize("kind", ["pointwise", "depthwise", "shifted_taps"])
def test_a_late_read_gives_the_output_of_the_pass_not_of_changed_weights(kind):
    """Weights changed between the pass and the first read (a solver step, net surgery):
    the read gives what the pass computed, as Caffe's stored blob would."""
    net, plain = _deploy_net(kind), _deploy_net(kind)
    x = np.random.default_rng(13).standard_normal(net.blobs["data"].shape)
    net.blobs["data"].data[...] = x
    plain.blobs["data"].data[...] = x
    net.forward_loss()
    _one_by_one(plain)
    for blob in net.layer_by_name("conv").blobs:
        blob.data[...] *= -3.0
    np.testing.assert_array_equal(net.blobs["conv"].data, plain.blobs["conv"].data)


def test_a_pass_over_part_of_the_net_first_computes_what_the_last_pass_left_out():
    """pycaffe's forward(end=) over the layers before the chain changes the convolution's
    bottom: the output the full pass left out is computed before, from the bottom it had."""
    def text_edit(text: str) -> str:
        return (text.replace('bottom: "data" top: "conv"', 'bottom: "pre" top: "conv"')
                .replace('layer { name: "conv"', 'layer { name: "pre" type: "Power" '
                         'bottom: "data" top: "pre" power_param { shift: 1.0 } }\n'
                         'layer { name: "conv"', 1))

    net, plain = (_deploy_net("pointwise", edit=text_edit) for _ in range(2))
    x = np.random.default_rng(14).standard_normal(net.blobs["data"].shape)
    net.blobs["data"].data[...] = x
    plain.blobs["data"].data[...] = x
    net.forward_loss()
    _one_by_one(plain)
    assert net.chains[2].elidable and not net.blob_list[net.top_ids[2][0]].observed
    net.blobs["data"].data[...] = x + 5.0
    net.forward_from_to(0, 1)  # the input layer and "pre": a new bottom for the convolution
    np.testing.assert_array_equal(net.blobs["conv"].data, plain.blobs["conv"].data)


# --- a chain's result written straight into its part of a Concat's top -------------------------
BRANCHES = """
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 4 dim: 6 dim: 5 } } }
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "a"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.5 }
                            bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu_a" type: "ReLU" bottom: "a" top: "a" relu_param { negative_slope: 0.1 } }
layer { name: "conv_b" type: "Convolution" bottom: "data" top: "b"
        convolution_param { num_output: 3 kernel_size: 1
                            weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "b" top: "b_bn"
        batch_norm_param { use_global_stats: true } }
layer { name: "relu_b" type: "ReLU" bottom: "b_bn" top: "b_bn" }
layer { name: "pool" type: "Pooling" bottom: "data" top: "p"
        pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b_bn" bottom: "p" top: "cat" }
layer { name: "ip" type: "InnerProduct" bottom: "cat" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
"""


def _branches(kind: str = "im2col", edit=lambda text: text) -> Net:
    geometry = {"im2col": "kernel_size: 3 pad: 1", "pointwise": "kernel_size: 1",
                "depthwise": "kernel_size: 3 pad: 1 group: 4",
                "shifted_taps": "kernel_size: 3 pad: 1"}[kind]
    text = BRANCHES.replace("kernel_size: 3 pad: 1\n", geometry + "\n", 1)
    if kind == "shifted_taps":
        text = text.replace("dim: 2 dim: 4 dim: 6 dim: 5", "dim: 2 dim: 32 dim: 14 dim: 14")
    if kind == "depthwise":
        text = text.replace("num_output: 4", "num_output: 8")
    param = parse_text_proto(edit(text), caffe_pb2.NetParameter(), "branches.prototxt")
    param.state.phase = caffe_pb2.TEST
    net = Net(param, rng=np.random.default_rng(7), logger=QUIET)
    bn = net.layer_by_name("bn")
    channels = bn.blobs[0].count
    bn.blobs[0].data[...] = [0.5, -1.0, 2.0, 0.0][:channels]
    bn.blobs[1].data[...] = [1.0, 4.0, 0.25, 2.0][:channels]
    bn.blobs[2].data[...] = 2.0
    return net


def _pending(net: Net, name: str):
    return net.blob_list[net.blob_names.index(name)].pending


@pytest.mark.parametrize("kind", ["im2col", "pointwise", "depthwise", "shifted_taps"])
def test_a_concat_input_is_written_into_the_concat_top(kind):
    """Both chains write their result into the Concat's top, which copies only the pooling
    output; the results' own blobs are copied back when read, with the bits of the layers
    run one by one. Once read, a blob is written on every pass (and the Concat copies it)."""
    net, plain = _branches(kind), _branches(kind)
    assert net.layer_by_name("conv_a").shifted == (kind == "shifted_taps")
    cat = net.layer_names.index("cat")
    assert [chain.sink for chain in net.chains.values()] == [cat, cat]
    rng = np.random.default_rng(15)
    for step in range(3):
        x = rng.standard_normal(net.blobs["data"].shape).astype(np.float32)
        net.blobs["data"].data[...] = x
        plain.blobs["data"].data[...] = x
        net.forward_loss()
        _one_by_one(plain)
        assert isinstance(_pending(net, "a"), CopyBack) == (step < 2)
        assert isinstance(_pending(net, "b_bn"), CopyBack)
        assert _pending(net, "b") is not None  # the convolution's own output, left out
        names = ("cat", "ip", "p") + (("a",) if step else ())
        for name in names:
            np.testing.assert_array_equal(net.blobs[name].data, plain.blobs[name].data,
                                          err_msg=name)
    for name in ("a", "b", "b_bn"):
        np.testing.assert_array_equal(net.blobs[name].data, plain.blobs[name].data)


def test_a_new_batch_size_and_a_pass_that_stops_before_the_concat():
    """A new batch size: the Concat's top has the old shape when the chains run, so they
    write their own blobs this once. A pass that ends before the Concat leaves its top as
    Caffe would (the last full pass's values) and the chains' blobs hold this pass's."""
    net, plain = _branches(), _branches()
    rng = np.random.default_rng(16)
    for batch, into_concat in ((2, True), (3, False), (3, True)):
        for n in (net, plain):
            n.blobs["data"].reshape(batch, 4, 6, 5)
        x = rng.standard_normal((batch, 4, 6, 5)).astype(np.float32)
        net.blobs["data"].data[...] = x
        plain.blobs["data"].data[...] = x
        net.forward_loss()
        _one_by_one(plain)
        assert isinstance(_pending(net, "a"), CopyBack) == into_concat
        np.testing.assert_array_equal(net.blobs["ip"].data, plain.blobs["ip"].data)
    before = net.blobs["cat"].data.copy()
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.forward_from_to(0, net.layer_names.index("cat") - 1)
    np.testing.assert_array_equal(net.blobs["cat"].data, before)
    plain.blobs["data"].data[...] = net.blobs["data"].data
    _one_by_one(plain)
    for name in ("a", "b_bn"):
        np.testing.assert_array_equal(net.blobs[name].data, plain.blobs[name].data)


@pytest.mark.parametrize("change", [
    pytest.param(lambda t: t.replace('layer { name: "ip"', 'layer { name: "relu_cat" '
                                     'type: "ReLU" bottom: "cat" top: "cat" }\n'
                                     'layer { name: "ip"'), id="concat_top_written_in_place"),
    pytest.param(lambda t: t.replace('top: "cat" }', 'top: "cat" concat_param { axis: 2 } }')
                 .replace("num_output: 3 kernel_size: 1", "num_output: 4 kernel_size: 1"),
                 id="concat_along_height"),
    pytest.param(lambda t: t + 'layer { name: "peek" type: "Power" bottom: "a" top: "peek" }',
                 id="another_reader"),
    pytest.param(lambda t: "force_backward: true\n" + t, id="backward_runs"),
])
def test_no_concat_sink_where_the_result_or_the_top_could_be_needed(change):
    net, plain = _branches(edit=change), _branches(edit=change)
    assert all(chain.sink is None for chain in net.chains.values()
               if net.top_ids[chain.last][0] == net.blob_names.index("a"))
    x = np.random.default_rng(17).standard_normal(net.blobs["data"].shape)
    net.blobs["data"].data[...] = x
    plain.blobs["data"].data[...] = x
    net.forward_loss()
    _one_by_one(plain)
    assert not isinstance(_pending(net, "a"), CopyBack)
    for name in plain.blobs:
        np.testing.assert_array_equal(net.blobs[name].data, plain.blobs[name].data)


# SqueezeNet: 16 expand chains, less fire9's two, whose Concat's top Dropout works on in place.
@pytest.mark.parametrize(("name", "sunk"), [("squeezenet1_1", 14), ("googlenet", 36)])
def test_zoo_branches_go_straight_into_their_concats_with_the_same_bits(name, sunk):
    """SqueezeNet's fire expands and GoogLeNet's inception branches write into their Concats'
    tops; every blob, read after the pass, holds the bits of the layers run one by one."""
    net, plain = _zoo(name, 2), _zoo(name, 2)
    for blob in net.blob_list:
        blob.observed = False  # seed_weights read every blob; a user holds none of them here
    x = np.random.default_rng(18).standard_normal(net.blobs["data"].shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    plain.blobs["data"].data[...] = x
    net.forward_loss()
    _one_by_one(plain)
    assert sum(isinstance(blob.pending, CopyBack) for blob in net.blob_list) == sunk
    for key in plain.blobs:
        np.testing.assert_array_equal(net.blobs[key].data, plain.blobs[key].data, err_msg=key)
