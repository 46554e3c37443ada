"""Net construction (Caffe's Net::Init, InsertSplits, FilterNet): wiring, splits, loss weights,
NetState rules, outputs, backward-need analysis, shared parameters and wiring errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pyforge.errors import NetError, PyforgeError
from pyforge.net.graph import filter_net, insert_splits, state_meets_rule
from pyforge.net.net import Net
from pyforge.proto import caffe_pb2, parse_text_proto

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST
LOG = logging.getLogger("pyforge.tests.net")


def net_param(text: str, phase: int = TRAIN, level: int = 0,
              stages: tuple[str, ...] = ()) -> caffe_pb2.NetParameter:
    param = parse_text_proto(text, caffe_pb2.NetParameter(), "<test net>")
    param.state.phase = phase
    param.state.level = level
    param.state.stage.extend(stages)
    return param


def build(text: str, phase: int = TRAIN, level: int = 0, stages: tuple[str, ...] = (),
          seed: int = 1701) -> Net:
    return Net(net_param(text, phase, level, stages), rng=np.random.default_rng(seed), logger=LOG)


def summary(param: caffe_pb2.NetParameter) -> list[tuple]:
    return [(lp.name, lp.type, list(lp.bottom), list(lp.top), list(lp.loss_weight))
            for lp in param.layer]


def bottom_names(net: Net, layer: str) -> list[str]:
    i = net.layer_names.index(layer)
    return [net.blob_names[b] for b in net.bottom_ids[i]]


def need(net: Net) -> dict[str, bool]:
    return dict(zip(net.layer_names, net.layer_need_backward, strict=True))


def bottom_need(net: Net) -> dict[str, list[bool]]:
    return dict(zip(net.layer_names, net.bottom_need_backward, strict=True))


GAUSS = 'weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "gaussian" std: 0.1 }'

# Caffe's test_net.cpp InitTinyNet: DummyData -> InnerProduct -> EuclideanLoss / SoftmaxWithLoss.
TINY = f"""
name: "TinyTestNetwork"
layer {{ name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {{ num: 5 channels: 2 height: 3 width: 4 num: 5 channels: 1 height: 1
    width: 1 data_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "innerproduct" type: "InnerProduct" bottom: "data" top: "innerproduct"
  inner_product_param {{ num_output: 1 {GAUSS} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "innerproduct" bottom: "label" }}
"""


# --- InsertSplits ---------------------------------------------------------------------------------
def test_no_split_for_a_single_consumer():
    param = net_param(TINY)
    assert summary(insert_splits(param)) == summary(param)


def test_split_naming_and_consumer_renaming():
    param = net_param("""
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
            inner_product_param { num_output: 2 } }
    layer { name: "ip2" type: "InnerProduct" bottom: "data" top: "ip2"
            inner_product_param { num_output: 2 } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "ip1" bottom: "ip2" }
    """)
    assert summary(insert_splits(param)) == [
        ("data", "Input", [], ["data"], []),
        ("data_data_0_split", "Split", ["data"],
         ["data_data_0_split_0", "data_data_0_split_1"], []),
        ("ip1", "InnerProduct", ["data_data_0_split_0"], ["ip1"], []),
        ("ip2", "InnerProduct", ["data_data_0_split_1"], ["ip2"], []),
        ("loss", "EuclideanLoss", ["ip1", "ip2"], [], []),
    ]


def test_split_of_a_second_top_uses_its_index():
    param = net_param("""
    layer { name: "data" type: "Input" top: "data" top: "label"
            input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "s1" type: "Silence" bottom: "label" }
    layer { name: "s2" type: "Silence" bottom: "label" bottom: "data" }
    """)
    out = summary(insert_splits(param))
    assert out[1] == ("label_data_1_split", "Split", ["label"],
                      ["label_data_1_split_0", "label_data_1_split_1"], [])
    assert out[2][2] == ["label_data_1_split_0"]
    assert out[3][2] == ["label_data_1_split_1", "data"]


def test_split_of_the_same_blob_twice_in_one_layer():
    param = net_param("""
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 } } }
    layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "data" top: "sum" }
    """)
    out = summary(insert_splits(param))
    assert out[2][2] == ["data_data_0_split_0", "data_data_0_split_1"]


def test_split_with_in_place_layers_names_the_last_producer():
    """Caffe's test_split_layer TestWithInPlace."""
    param = net_param("""
    layer { name: "data" type: "Input" top: "data" top: "label"
            input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } } }
    layer { name: "innerprod1" type: "InnerProduct" bottom: "data" top: "innerprod1"
            inner_product_param { num_output: 3 } }
    layer { name: "relu1" type: "ReLU" bottom: "innerprod1" top: "innerprod1" }
    layer { name: "innerprod2" type: "InnerProduct" bottom: "innerprod1" top: "innerprod2"
            inner_product_param { num_output: 3 } }
    layer { name: "loss1" type: "EuclideanLoss" bottom: "innerprod1" bottom: "label" }
    layer { name: "loss2" type: "EuclideanLoss" bottom: "innerprod2" bottom: "data" }
    """)
    assert [row[:4] for row in summary(insert_splits(param))] == [
        ("data", "Input", [], ["data", "label"]),
        ("data_data_0_split", "Split", ["data"], ["data_data_0_split_0",
                                                  "data_data_0_split_1"]),
        ("innerprod1", "InnerProduct", ["data_data_0_split_0"], ["innerprod1"]),
        ("relu1", "ReLU", ["innerprod1"], ["innerprod1"]),
        ("innerprod1_relu1_0_split", "Split", ["innerprod1"],
         ["innerprod1_relu1_0_split_0", "innerprod1_relu1_0_split_1"]),
        ("innerprod2", "InnerProduct", ["innerprod1_relu1_0_split_0"], ["innerprod2"]),
        ("loss1", "EuclideanLoss", ["innerprod1_relu1_0_split_1", "label"], []),
        ("loss2", "EuclideanLoss", ["innerprod2", "data_data_0_split_1"], []),
    ]


LOSS_INSERTION = f"""
name: "UnsharedWeightsNetwork"
force_backward: true
layer {{ name: "data" type: "DummyData" top: "data"
  dummy_data_param {{ num: 10 channels: 10 height: 1 width: 1
    data_filler {{ type: "gaussian" std: 10 }} }} }}
layer {{ name: "innerproduct1" type: "InnerProduct" bottom: "data" top: "innerproduct1"
  inner_product_param {{ num_output: 10 bias_term: false {GAUSS} }}
  param {{ name: "unsharedweights1" }} loss_weight: 2.5 }}
layer {{ name: "innerproduct2" type: "InnerProduct" bottom: "data" top: "innerproduct2"
  inner_product_param {{ num_output: 10 bias_term: false {GAUSS} }}
  param {{ name: "unsharedweights2" }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "innerproduct1" bottom: "innerproduct2" }}
"""


def test_split_with_a_loss_weight_reserves_split_0_for_the_loss():
    """Caffe's test_split_layer TestLossInsertion."""
    out = summary(insert_splits(net_param(LOSS_INSERTION)))
    assert [row[0] for row in out] == [
        "data", "data_data_0_split", "innerproduct1", "innerproduct1_innerproduct1_0_split",
        "innerproduct2", "loss"]
    assert out[2] == ("innerproduct1", "InnerProduct", ["data_data_0_split_0"],
                      ["innerproduct1"], [])  # the producer's loss_weight is moved
    assert out[3] == ("innerproduct1_innerproduct1_0_split", "Split", ["innerproduct1"],
                      ["innerproduct1_innerproduct1_0_split_0",
                       "innerproduct1_innerproduct1_0_split_1"], [2.5, 0.0])
    assert out[4][2] == ["data_data_0_split_1"]
    assert out[5][2] == ["innerproduct1_innerproduct1_0_split_1", "innerproduct2"]


def test_loss_split_output_is_a_net_output_with_the_loss_weight():
    net = build(LOSS_INSERTION)
    assert net.outputs == ["innerproduct1_innerproduct1_0_split_0"]
    (name, blob, weight), = net.output_blobs()
    assert weight == 2.5
    loss = net.forward_loss()
    ip1 = net.blobs["innerproduct1"].data.astype(np.float64)
    ip2 = net.blobs["innerproduct2"].data.astype(np.float64)
    expected = 2.5 * ip1.sum() + ((ip1 - ip2) ** 2).sum() / 10 / 2
    assert loss == pytest.approx(expected, rel=1e-4)


def test_implicit_loss_weight_is_invisible_to_insert_splits():
    """A loss layer's top consumed later gets no split for its implicit weight 1 (Caffe adds
    that weight at SetUp, after InsertSplits)."""
    text = TINY.replace('bottom: "label" }', 'bottom: "label" top: "loss" }') + \
        'layer { name: "silence" type: "Silence" bottom: "loss" }'
    param = net_param(text)
    assert "Split" not in [lp.type for lp in insert_splits(param).layer]
    net = build(text)
    assert net.outputs == []
    assert net.forward_loss() > 0  # still counted in the loss


# --- in place, outputs, inputs --------------------------------------------------------------------
def test_in_place_layer_reuses_the_blob():
    net = build("""
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }
    """)
    assert list(net.blobs) == ["data"]
    i = net.layer_names.index("relu")
    assert net.bottom_ids[i] == net.top_ids[i]
    net.blobs["data"].data[...] = [[-1, 2, -3], [4, -5, 6]]
    net.forward_loss()
    np.testing.assert_array_equal(net.blobs["data"].data, [[0, 2, 0], [4, 0, 6]])
    assert net.outputs == ["data"]
    assert net.inputs == ["data"]


def test_outputs_are_sorted_by_name():
    net = build("""
    layer { name: "data" type: "Input" top: "zeta" top: "alpha" top: "mid"
            input_param { shape { dim: 1 } } }
    layer { name: "relu" type: "ReLU" bottom: "alpha" top: "beta" }
    """)
    assert net.outputs == ["beta", "mid", "zeta"]
    assert net.inputs == ["zeta", "alpha", "mid"]


def test_automatic_loss_top_is_not_an_output_but_counts():
    net = build(TINY)
    assert net.outputs == []
    assert "(automatic)" not in net.blobs
    loss = net.forward_loss()
    ip = net.blobs["innerproduct"].data.astype(np.float64)
    label = net.blobs["label"].data.astype(np.float64)
    assert loss == pytest.approx(((ip - label.reshape(ip.shape)) ** 2).sum() / 5 / 2,
                                 rel=1e-4)


# --- loss weights ---------------------------------------------------------------------------------
SCALED = """
layer {{ name: "data" type: "Input" top: "data" top: "label"
  input_param {{ shape {{ dim: 4 dim: 3 }} shape {{ dim: 4 dim: 2 }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 1 }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "label" top: "loss" {extra} }}
"""


def _scaled(extra: str, x, y):
    net = build(SCALED.format(extra=extra), seed=3)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = y
    loss = net.forward_loss()
    net.clear_param_diffs()
    net.backward_all()
    return net, loss


def test_implicit_loss_weight_is_one_and_explicit_weights_scale_loss_and_gradient():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    net1, loss1 = _scaled("", x, y)
    (_, blob, weight), = net1.output_blobs()
    assert weight == 1.0 and blob.diff.item() == 1.0
    assert loss1 == pytest.approx(float(blob.data))
    net3, loss3 = _scaled("loss_weight: 3", x, y)
    assert loss3 == pytest.approx(3 * loss1, rel=1e-5)
    # the reported top value is the unweighted loss; the weight lives in the diff
    assert net3.blobs["loss"].data.item() == pytest.approx(loss1, rel=1e-5)
    for p1, p3 in zip(net1.learnable, net3.learnable, strict=True):
        np.testing.assert_allclose(p3.blob.diff, 3 * p1.blob.diff, rtol=1e-5, atol=1e-7)


def test_zero_loss_weight_on_a_loss_layer_disables_backward():
    rng = np.random.default_rng(0)
    net, loss = _scaled("loss_weight: 0", rng.standard_normal((4, 3)),
                        rng.standard_normal((4, 2)))
    assert loss == 0
    assert need(net) == {"data": False, "ip": False, "loss": False}


def test_loss_weight_on_a_non_loss_layer():
    """Caffe's TestLossWeightMidNet idea: any top with a loss weight adds weight * sum(top)."""
    net = build("""
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" loss_weight: 2
      inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
    """)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net.blobs["data"].data[...] = x
    loss = net.forward_loss()
    assert loss == pytest.approx(2 * float(net.blobs["ip"].data.sum()), rel=1e-5)
    net.clear_param_diffs()
    net.backward_all()
    w_diff, b_diff = (p.blob.diff for p in net.learnable)
    np.testing.assert_allclose(w_diff, 2 * np.ones((2, 2)) @ x, rtol=1e-6)
    np.testing.assert_allclose(b_diff, [4, 4], rtol=1e-6)


def test_loss_weight_count_must_match_tops():
    with pytest.raises(PyforgeError, match="loss_weight"):
        build("""
        layer { name: "data" type: "Input" top: "a" top: "b" input_param { shape { dim: 1 } } }
        layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "c" loss_weight: 1
                loss_weight: 1 }
        """)


# --- NetState rules -------------------------------------------------------------------------------
def rule(text: str) -> caffe_pb2.NetStateRule:
    return parse_text_proto(text, caffe_pb2.NetStateRule(), "<rule>")


def state(phase=TRAIN, level=0, stages=()) -> caffe_pb2.NetState:
    s = caffe_pb2.NetState(phase=phase, level=level)
    s.stage.extend(stages)
    return s


@pytest.mark.parametrize(
    ("rule_text", "st", "met"),
    [
        ("phase: TRAIN", state(TRAIN), True),
        ("phase: TRAIN", state(TEST), False),
        ("", state(TEST), True),
        ("min_level: 2", state(level=2), True),
        ("min_level: 2", state(level=1), False),
        ("max_level: 2", state(level=2), True),
        ("max_level: 2", state(level=3), False),
        ("min_level: 1 max_level: 3", state(level=-1), False),
        ("min_level: -2", state(level=-1), True),
        ('stage: "a"', state(stages=("a", "b")), True),
        ('stage: "a" stage: "c"', state(stages=("a", "b")), False),
        ('stage: "a"', state(), False),
        ('not_stage: "a"', state(stages=("a",)), False),
        ('not_stage: "a"', state(stages=("b",)), True),
        ('stage: "b" not_stage: "a"', state(stages=("a", "b")), False),
        ('phase: TEST stage: "x" min_level: 1', state(TEST, 1, ("x",)), True),
        ('stage: ""', state(stages=("",)), True),  # caffe train's empty --stage
    ],
)
def test_state_meets_rule(rule_text, st, met):
    assert state_meets_rule(st, rule(rule_text), "layer") is met


RULES = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }
layer { name: "train_only" type: "ReLU" bottom: "data" top: "a" include { phase: TRAIN } }
layer { name: "not_test" type: "ReLU" bottom: "data" top: "b" exclude { phase: TEST } }
layer { name: "level2" type: "ReLU" bottom: "data" top: "c" include { min_level: 2 } }
layer { name: "staged" type: "ReLU" bottom: "data" top: "d" include { stage: "deploy" } }
layer { name: "either" type: "ReLU" bottom: "data" top: "e"
        include { phase: TEST } include { stage: "x" } }
layer { name: "not_deploy" type: "ReLU" bottom: "data" top: "f"
        exclude { stage: "deploy" } exclude { max_level: -1 } }
"""


@pytest.mark.parametrize(
    ("phase", "level", "stages", "present"),
    [
        (TRAIN, 0, (), ["data", "train_only", "not_test", "not_deploy"]),
        (TEST, 0, (), ["data", "either", "not_deploy"]),
        (TRAIN, 2, (), ["data", "train_only", "not_test", "level2", "not_deploy"]),
        (TEST, 0, ("deploy",), ["data", "staged", "either"]),
        (TRAIN, 0, ("x",), ["data", "train_only", "not_test", "either", "not_deploy"]),
        (TRAIN, -1, (), ["data", "train_only", "not_test"]),
    ],
)
def test_filter_net(phase, level, stages, present):
    filtered = filter_net(net_param(RULES, phase, level, stages))
    assert [lp.name for lp in filtered.layer] == present
    # and the built net has the same layers (no splits: one consumer is left at most)
    net = build(RULES, phase, level, stages)
    assert [n for n in net.layer_names if not n.endswith("_split")] == present


def test_include_and_exclude_together_is_an_error():
    with pytest.raises(NetError, match="(?i)include"):
        build("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } }
                include { phase: TRAIN } exclude { phase: TEST } }
        """)


def test_filtering_removes_a_layer_and_its_consumers_see_the_earlier_producer():
    net = build("""
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 } } }
    layer { name: "scale_train" type: "ReLU" bottom: "data" top: "data"
            include { phase: TRAIN } }
    layer { name: "out" type: "Sigmoid" bottom: "data" top: "out" }
    """, phase=TEST)
    assert net.layer_names == ["data", "out"]


# --- backward-need analysis -----------------------------------------------------------------------
def test_bottom_need_backward_tiny():
    net = build(TINY)
    assert bottom_need(net) == {"data": [], "innerproduct": [False], "loss": [True, False]}
    assert need(net) == {"data": False, "innerproduct": True, "loss": True}


def test_bottom_need_backward_force():
    net = build("force_backward: true\n" + TINY)
    assert bottom_need(net) == {"data": [], "innerproduct": [True], "loss": [True, True]}
    assert need(net) == {"data": True, "innerproduct": True, "loss": True}


def test_force_backward_respects_allow_force_backward_of_the_label():
    text = "force_backward: true\n" + TINY.replace("EuclideanLoss", "SoftmaxWithLoss")
    net = build(text)
    assert bottom_need(net)["loss"] == [True, False]
    assert bottom_need(net)["innerproduct"] == [True]


def test_bottom_need_backward_tricky():
    """Caffe's TestBottomNeedBackwardTricky: the label of a softmax loss "needs backward"
    because it has weights below it (Caffe would crash on Backward; the analysis says so)."""
    net = build(f"""
    layer {{ name: "data" type: "DummyData" top: "data" top: "label"
      dummy_data_param {{ num: 5 channels: 2 height: 3 width: 4 num: 5 channels: 1 height: 1
        width: 1 data_filler {{ type: "gaussian" std: 0.01 }} }} }}
    layer {{ name: "innerproduct" type: "InnerProduct" bottom: "data" top: "transformed_data"
      inner_product_param {{ num_output: 3 {GAUSS} }} }}
    layer {{ name: "innerproduct2" type: "InnerProduct" bottom: "label"
      top: "transformed_label" inner_product_param {{ num_output: 1 {GAUSS} }} }}
    layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "transformed_data"
      bottom: "transformed_label" }}
    """)
    assert list(bottom_need(net).values()) == [[], [False], [False], [True, True]]


def test_lr_mult_zero_everywhere_means_no_backward():
    text = TINY.replace("inner_product_param", "param { lr_mult: 0 } param { lr_mult: 0 } "
                        "inner_product_param")
    net = build(text)
    assert need(net) == {"data": False, "innerproduct": False, "loss": False}
    layer = net.layer_by_name("innerproduct")
    assert layer.param_propagate_down == [False, False]


def test_lr_mult_zero_on_one_param():
    text = TINY.replace("inner_product_param", "param { lr_mult: 1 } param { lr_mult: 0 } "
                        "inner_product_param")
    net = build(text)
    assert need(net)["innerproduct"]
    assert net.layer_by_name("innerproduct").param_propagate_down == [True, False]
    net.forward_loss()
    net.clear_param_diffs()
    net.backward_all()
    w, b = net.layer_by_name("innerproduct").blobs
    assert np.abs(w.diff).sum() > 0 and (b.diff == 0).all()


def test_force_backward_turns_on_every_param_propagate_down():
    text = "force_backward: true\n" + TINY.replace(
        "inner_product_param", "param { lr_mult: 0 } param { lr_mult: 0 } inner_product_param")
    net = build(text)
    assert net.layer_by_name("innerproduct").param_propagate_down == [True, True]


CHAIN = f"""
layer {{ name: "data" type: "Input" top: "data" top: "label"
  input_param {{ shape {{ dim: 2 dim: 3 }} shape {{ dim: 2 dim: 2 }} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 4 {GAUSS} }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" {{pd}}
  inner_product_param {{ num_output: 2 {GAUSS} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "label" }}
"""


def test_propagate_down_false_prunes_the_layers_below():
    net = build(CHAIN.replace("{pd}", "propagate_down: false"))
    assert bottom_need(net)["ip2"] == [False]
    # ip1's only top is skipped, so ip1 does not run backward although it has params.
    assert need(net) == {"data": False, "ip1": False, "ip2": True, "loss": True}
    net.forward_loss()
    net.clear_param_diffs()
    net.backward_all()
    assert (net.layer_by_name("ip1").blobs[0].diff == 0).all()
    assert np.abs(net.layer_by_name("ip2").blobs[0].diff).sum() > 0


def test_propagate_down_true_is_kept():
    net = build(CHAIN.replace("{pd}", "propagate_down: true"))
    assert need(net) == {"data": False, "ip1": True, "ip2": True, "loss": True}


def test_propagate_down_can_turn_a_bottom_on():
    net = build(TINY.replace('bottom: "data" top: "innerproduct"',
                             'bottom: "data" top: "innerproduct" propagate_down: true'))
    assert bottom_need(net)["innerproduct"] == [True]


def test_propagate_down_count_must_match_bottoms():
    with pytest.raises(NetError, match="propagate_down"):
        build(CHAIN.replace("{pd}", "propagate_down: false propagate_down: true"))


def test_layers_that_do_not_reach_a_loss_skip_backward():
    net = build(CHAIN.replace("{pd}", "") + f"""
    layer {{ name: "side" type: "InnerProduct" bottom: "ip1" top: "side"
      inner_product_param {{ num_output: 2 {GAUSS} }} }}
    """)
    assert need(net)["side"] is False
    assert need(net)["ip1"] is True
    assert net.outputs == ["side"]


def test_backward_runs_only_needed_layers_and_overwrites_bottom_diffs():
    net = build(CHAIN.replace("{pd}", ""))
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.standard_normal((2, 3))
    net.blobs["label"].data[...] = rng.standard_normal((2, 2))
    net.blobs["data"].diff[...] = 123  # no layer needs the data gradient
    net.forward_loss()
    net.clear_param_diffs()
    net.backward_all()
    assert (net.blobs["data"].diff == 123).all()
    first = net.blobs["ip1"].diff.copy()
    net.backward_all()
    np.testing.assert_array_equal(net.blobs["ip1"].diff, first)  # overwritten, not added


# --- shared parameters ----------------------------------------------------------------------------
SHARED = """
layer {{ name: "data" type: "Input" top: "x1" top: "x2"
  input_param {{ shape {{ dim: 4 dim: 3 }} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "x1" top: "y1" {p1}
  inner_product_param {{ num_output: 2 bias_term: false
    weight_filler {{ type: "gaussian" std: 1 }} }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "x2" top: "y2" {p2}
  inner_product_param {{ num_output: 2 bias_term: false
    weight_filler {{ type: "gaussian" std: 1 }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "y1" bottom: "y2" }}
"""


def _run_shared(p1: str, p2: str, weight=None):
    net = build(SHARED.format(p1=p1, p2=p2))
    rng = np.random.default_rng(7)
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    net.blobs["x1"].data[...] = x1
    net.blobs["x2"].data[...] = x2
    if weight is not None:
        for layer in ("ip1", "ip2"):
            net.layer_by_name(layer).blobs[0].data[...] = weight
    net.forward_loss()
    net.clear_param_diffs()
    net.backward_all()
    return net, x1.astype(np.float32), x2.astype(np.float32)


def test_shared_params_have_one_learnable_entry_and_share_memory():
    net, *_ = _run_shared('param { name: "w" }', 'param { name: "w" }')
    assert len(net.learnable) == 1
    w1 = net.layer_by_name("ip1").blobs[0]
    w2 = net.layer_by_name("ip2").blobs[0]
    assert w1.data is w2.data and w1.diff is w2.diff
    assert net.param_owner == [-1, 0]


def test_shared_param_diff_is_the_sum_of_both_sharers_gradients():
    shared, x1, x2 = _run_shared('param { name: "w" }', 'param { name: "w" }')
    w = shared.learnable[0].blob.data.copy()
    unshared, *_ = _run_shared("", "", weight=w)
    assert len(unshared.learnable) == 2
    g1, g2 = (p.blob.diff for p in unshared.learnable)
    np.testing.assert_allclose(shared.learnable[0].blob.diff, g1 + g2, rtol=1e-5, atol=1e-6)
    # NumPy: loss = ||W x1 - W x2||^2 / (2N) -> dW = d^T (x1 - x2) / N
    d = (x1 - x2) @ w.T
    np.testing.assert_allclose(shared.learnable[0].blob.diff, d.T @ (x1 - x2) / 4, rtol=1e-4,
                               atol=1e-5)


def test_update_applies_a_shared_param_once():
    net, *_ = _run_shared('param { name: "w" }', 'param { name: "w" }')
    blob = net.learnable[0].blob
    before, diff = blob.data.copy(), blob.diff.copy()
    net.update()
    np.testing.assert_allclose(blob.data, before - diff, rtol=1e-6)
    np.testing.assert_array_equal(net.layer_by_name("ip2").blobs[0].data, blob.data)


def test_shared_param_lr_mult_mismatch_is_an_error():
    with pytest.raises(NetError, match="lr_mult"):
        build(SHARED.format(p1='param { name: "w" lr_mult: 1 }',
                            p2='param { name: "w" lr_mult: 2 }'))


def test_shared_param_decay_mult_mismatch_is_an_error():
    with pytest.raises(NetError, match="decay_mult"):
        build(SHARED.format(p1='param { name: "w" decay_mult: 1 }',
                            p2='param { name: "w" decay_mult: 0 }'))


def test_sharer_lr_mult_is_adopted_when_the_owner_did_not_set_it():
    net = build(SHARED.format(p1='param { name: "w" }', p2='param { name: "w" lr_mult: 3 }'))
    assert net.learnable[0].lr_mult == 3


def test_shared_param_shape_mismatch_is_an_error():
    text = SHARED.format(p1='param { name: "w" }', p2='param { name: "w" }').replace(
        'bottom: "x2" top: "y2" param { name: "w" }\n  inner_product_param { num_output: 2',
        'bottom: "x2" top: "y2" param { name: "w" }\n  inner_product_param { num_output: 3')
    assert "num_output: 3" in text
    with pytest.raises(NetError, match="(?i)shape"):
        build(text)


def test_permissive_share_mode_needs_only_equal_counts():
    text = """
    layer { name: "data" type: "Input" top: "x" top: "z"
      input_param { shape { dim: 2 dim: 6 } shape { dim: 2 dim: 3 } } }
    layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "y1" param { name: "w" }
      inner_product_param { num_output: 3 bias_term: false } }
    layer { name: "ip2" type: "InnerProduct" bottom: "z" top: "y2"
      param { name: "w" share_mode: PERMISSIVE }
      inner_product_param { num_output: 6 bias_term: false } }
    """
    net = build(text)
    assert len(net.learnable) == 1
    with pytest.raises(NetError):
        build(text.replace("share_mode: PERMISSIVE", ""))


def test_too_many_param_specs():
    with pytest.raises(NetError, match="(?i)param"):
        build("""
        layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" param { } param { }
                param { } inner_product_param { num_output: 1 } }
        """)


# --- wiring errors --------------------------------------------------------------------------------
def test_unknown_bottom_blob():
    with pytest.raises(NetError, match="(?i)unknown bottom blob 'nothing'"):
        build("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }
        layer { name: "relu" type: "ReLU" bottom: "nothing" top: "y" }
        """)


def test_bottom_filtered_out_is_unknown():
    with pytest.raises(NetError, match="(?i)unknown bottom blob 'a'"):
        build("""
        layer { name: "data" type: "Input" top: "a" input_param { shape { dim: 1 } }
                include { phase: TRAIN } }
        layer { name: "relu" type: "ReLU" bottom: "a" top: "y" }
        """, phase=TEST)


def test_top_produced_by_multiple_sources():
    with pytest.raises(NetError, match="produced by multiple sources"):
        build("""
        layer { name: "data" type: "Input" top: "x" top: "y" input_param { shape { dim: 1 } } }
        layer { name: "relu" type: "ReLU" bottom: "y" top: "x" }
        """)


def test_in_place_must_use_the_same_index():
    """top j may reuse a name only if it is bottom j (Caffe's in-place test)."""
    with pytest.raises(NetError, match="produced by multiple sources"):
        build("""
        layer { name: "data" type: "Input" top: "a" top: "b" input_param { shape { dim: 1 } } }
        layer { name: "c" type: "Concat" bottom: "a" bottom: "b" top: "b" }
        """)


def test_unknown_layer_type_names_the_closest_known_types():
    with pytest.raises(NetError) as info:
        build("""
        layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1 } } }
        layer { name: "odd" type: "Convolutoin" bottom: "x" top: "y" }
        """)
    message = str(info.value)
    assert "Convolutoin" in message and "odd" in message
    # The closest names, not all 70-odd types (a line of a thousand characters).
    assert "did you mean 'Convolution'" in message and "layer types are known" in message
    assert "SoftmaxWithLoss" not in message and len(message) < 200


def test_layer_setup_errors_name_the_layer():
    with pytest.raises(PyforgeError, match="mypool"):
        build("""
        layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1
                dim: 4 dim: 4 } } }
        layer { name: "mypool" type: "Pooling" bottom: "x" top: "y"
                pooling_param { kernel_size: 2 pad: 2 } }
        """)


# --- phase ----------------------------------------------------------------------------------------
def test_layers_inherit_the_net_phase_unless_set():
    text = """
    layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 100 } } }
    layer { name: "drop" type: "Dropout" bottom: "x" top: "y" }
    layer { name: "drop_train" type: "Dropout" bottom: "x" top: "z" phase: TRAIN }
    """
    net = build(text, phase=TEST)
    assert net.layer_by_name("drop").phase == TEST
    assert net.layer_by_name("drop_train").phase == TRAIN
    net.blobs["x"].data[...] = 1
    net.forward_loss()
    assert (net.blobs["y"].data == 1).all()
    assert set(np.unique(net.blobs["z"].data)) == {0.0, 2.0}
