"""Write the model-zoo deploy nets that Caffe users run but BVLC did not publish.

    python prototxt_examples/zoo/make_zoo.py

writes, next to this script:

- ``resnet50_deploy.prototxt``: ResNet-50 in the layout of Kaiming He's Caffe deploy file
  (``input``/``input_dim`` 1x3x224x224; conv1 + bn_conv1 + scale_conv1 + conv1_relu; pool1;
  bottleneck blocks res2a..res5c whose first block of each stage has a ``branch1`` projection;
  the stride-2 sits on the 1x1 ``branch2a`` convolution as in his file; pool5 7x7 AVE; fc1000;
  prob).
- ``squeezenet1_1_deploy.prototxt``: SqueezeNet v1.1 as DeepScale published it (fire modules of
  squeeze1x1 / expand1x1 / expand3x3 with a Concat, Caffe's ceil-rounded 3x3/2 pooling after
  conv1, fire3 and fire5, conv10, global AVE pooling, prob).
- ``mobilenet_v2_deploy.prototxt``: MobileNet v2 in the layout of shicai/MobileNet-Caffe
  (Convolution without bias + BatchNorm + Scale + ReLU, depthwise 3x3 convolutions as ``group``
  = channels with ``engine: CAFFE``, inverted residual blocks joined by Eltwise SUM named
  block_<stage>_<index>, conv6_4 to 1280 channels, global AVE pool6, fc7 as a 1x1 convolution,
  prob).

The nets are generated from the published architecture tables (layer counts, widths, strides),
so weights for them come from elsewhere (or from seeded fillers in tests).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


class NetWriter:
    """Collects prototxt text for one net, one ``layer { ... }`` block per call."""

    def __init__(self, name: str) -> None:
        self.lines = [f'name: "{name}"']

    def legacy_input(self, top: str, shape: tuple[int, ...]) -> None:
        self.lines.append(f'input: "{top}"')
        self.lines.extend(f"input_dim: {d}" for d in shape)

    def input_layer(self, top: str, shape: tuple[int, ...]) -> None:
        dims = " ".join(f"dim: {d}" for d in shape)
        self.layer(top, "Input", [], [top], f"input_param {{ shape: {{ {dims} }} }}")

    def layer(self, name: str, type_: str, bottoms: list[str], tops: list[str],
              *params: str) -> None:
        self.lines.append("layer {")
        self.lines.append(f'  name: "{name}"')
        self.lines.append(f'  type: "{type_}"')
        self.lines.extend(f'  bottom: "{b}"' for b in bottoms)
        self.lines.extend(f'  top: "{t}"' for t in tops)
        for block in params:
            self.lines.extend("  " + line for line in block.splitlines())
        self.lines.append("}")

    def conv(self, name: str, bottom: str, top: str, num_output: int, kernel: int,
             stride: int = 1, pad: int = 0, bias: bool = True, group: int = 1,
             engine: str = "") -> None:
        fields = [f"num_output: {num_output}"]
        if not bias:
            fields.append("bias_term: false")
        if pad:
            fields.append(f"pad: {pad}")
        fields.append(f"kernel_size: {kernel}")
        if stride != 1:
            fields.append(f"stride: {stride}")
        if group != 1:
            fields.append(f"group: {group}")
        fields.append('weight_filler { type: "msra" }')
        if bias:
            fields.append('bias_filler { type: "constant" value: 0 }')
        if engine:
            fields.append(f"engine: {engine}")
        body = "\n".join("  " + f for f in fields)
        self.layer(name, "Convolution", [bottom], [top], f"convolution_param {{\n{body}\n}}")

    def batch_norm_scale(self, bn_name: str, scale_name: str, bottom: str, top: str,
                         eps: float | None = None) -> None:
        """Caffe's BatchNorm (stored statistics) followed by Scale with a bias, the pair that
        stands for one batch-normalization layer in Caffe nets."""
        eps_field = f" eps: {eps:g}" if eps is not None else ""
        self.layer(bn_name, "BatchNorm", [bottom], [top],
                   f"batch_norm_param {{ use_global_stats: true{eps_field} }}")
        self.layer(scale_name, "Scale", [top], [top], "scale_param { bias_term: true }")

    def relu(self, name: str, blob: str) -> None:
        self.layer(name, "ReLU", [blob], [blob])

    def pool(self, name: str, bottom: str, top: str, method: str, kernel: int = 0,
             stride: int = 1, global_pooling: bool = False) -> None:
        if global_pooling:
            body = f"pool: {method}\n  global_pooling: true"
        else:
            body = f"pool: {method}\n  kernel_size: {kernel}\n  stride: {stride}"
        self.layer(name, "Pooling", [bottom], [top], f"pooling_param {{\n  {body}\n}}")

    def softmax(self, name: str, bottom: str, top: str) -> None:
        self.layer(name, "Softmax", [bottom], [top])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# ResNet-50: (stage number, blocks, bottleneck width); the output width is 4x the bottleneck.
RESNET50_STAGES = ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512))


def _resnet_conv_bn(net: NetWriter, suffix: str, bottom: str, num_output: int, kernel: int,
                    stride: int, pad: int, relu: bool) -> str:
    """One ``res<suffix>`` convolution (no bias) with its ``bn<suffix>``/``scale<suffix>``."""
    top = f"res{suffix}"
    net.conv(top, bottom, top, num_output, kernel, stride, pad, bias=False)
    net.batch_norm_scale(f"bn{suffix}", f"scale{suffix}", top, top)
    if relu:
        net.relu(f"{top}_relu", top)
    return top


def resnet50() -> str:
    net = NetWriter("ResNet-50")
    net.legacy_input("data", (1, 3, 224, 224))
    net.conv("conv1", "data", "conv1", 64, 7, stride=2, pad=3)
    net.batch_norm_scale("bn_conv1", "scale_conv1", "conv1", "conv1")
    net.relu("conv1_relu", "conv1")
    net.pool("pool1", "conv1", "pool1", "MAX", 3, 2)
    bottom = "pool1"
    for stage, blocks, width in RESNET50_STAGES:
        for index in range(blocks):
            block = f"{stage}{chr(ord('a') + index)}"
            stride = 2 if index == 0 and stage > 2 else 1
            if index == 0:
                shortcut = _resnet_conv_bn(net, f"{block}_branch1", bottom, 4 * width, 1,
                                           stride, 0, relu=False)
            else:
                shortcut = bottom
            x = _resnet_conv_bn(net, f"{block}_branch2a", bottom, width, 1, stride, 0, True)
            x = _resnet_conv_bn(net, f"{block}_branch2b", x, width, 3, 1, 1, True)
            x = _resnet_conv_bn(net, f"{block}_branch2c", x, 4 * width, 1, 1, 0, False)
            top = f"res{block}"
            net.layer(top, "Eltwise", [shortcut, x], [top])
            net.relu(f"{top}_relu", top)
            bottom = top
    net.pool("pool5", bottom, "pool5", "AVE", 7, 1)
    net.layer("fc1000", "InnerProduct", ["pool5"], ["fc1000"],
              'inner_product_param {\n  num_output: 1000\n  weight_filler { type: "msra" }\n'
              '  bias_filler { type: "constant" value: 0 }\n}')
    net.softmax("prob", "fc1000", "prob")
    return net.text()


# SqueezeNet v1.1: fire modules (name, squeeze width, expand width per branch); pooling after
# conv1, fire3 and fire5.
SQUEEZENET11_FIRES = (("fire2", 16, 64), ("fire3", 16, 64), ("fire4", 32, 128),
                      ("fire5", 32, 128), ("fire6", 48, 192), ("fire7", 48, 192),
                      ("fire8", 64, 256), ("fire9", 64, 256))
SQUEEZENET11_POOL_AFTER = {"conv1": "pool1", "fire3": "pool3", "fire5": "pool5"}


def squeezenet1_1() -> str:
    net = NetWriter("SqueezeNet_v1.1")
    net.input_layer("data", (10, 3, 227, 227))
    net.conv("conv1", "data", "conv1", 64, 3, stride=2)
    net.relu("relu_conv1", "conv1")
    # Caffe's default ceil rounding: 113 -> 56 here (floor would give 56 too, but 55 -> 27 at
    # pool3 and 27 -> 13 at pool5 need the ceil).
    net.pool("pool1", "conv1", "pool1", "MAX", 3, 2)
    bottom = "pool1"
    for fire, squeeze, expand in SQUEEZENET11_FIRES:
        s = f"{fire}/squeeze1x1"
        net.conv(s, bottom, s, squeeze, 1)
        net.relu(f"{fire}/relu_squeeze1x1", s)
        e1 = f"{fire}/expand1x1"
        net.conv(e1, s, e1, expand, 1)
        net.relu(f"{fire}/relu_expand1x1", e1)
        e3 = f"{fire}/expand3x3"
        net.conv(e3, s, e3, expand, 3, pad=1)
        net.relu(f"{fire}/relu_expand3x3", e3)
        bottom = f"{fire}/concat"
        net.layer(bottom, "Concat", [e1, e3], [bottom])
        if fire in SQUEEZENET11_POOL_AFTER:
            pool = SQUEEZENET11_POOL_AFTER[fire]
            net.pool(pool, bottom, pool, "MAX", 3, 2)
            bottom = pool
    net.layer("drop9", "Dropout", [bottom], [bottom], "dropout_param { dropout_ratio: 0.5 }")
    net.conv("conv10", bottom, "conv10", 1000, 1)
    net.relu("relu_conv10", "conv10")
    net.pool("pool10", "conv10", "pool10", "AVE", global_pooling=True)
    net.softmax("prob", "pool10", "prob")
    return net.text()


# MobileNet v2's table: (expansion t, output channels c, repeats n, first stride s), with
# shicai's block names: stage-major numbering conv<stage>_<index> continuing across rows.
MOBILENET_V2_ROWS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                     (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
MOBILENET_V2_NAMES = ("2_1", "2_2", "3_1", "3_2", "4_1", "4_2", "4_3", "4_4", "4_5", "4_6",
                      "4_7", "5_1", "5_2", "5_3", "6_1", "6_2", "6_3")


def _mobilenet_conv_bn(net: NetWriter, conv: str, relu: str, bottom: str, num_output: int,
                       kernel: int, stride: int = 1, pad: int = 0, group: int = 1) -> str:
    """``conv`` (no bias) -> ``conv/bn`` (BatchNorm, then Scale in place) [-> ReLU in place]."""
    net.conv(conv, bottom, conv, num_output, kernel, stride, pad, bias=False, group=group,
             engine="CAFFE" if group > 1 else "")
    top = f"{conv}/bn"
    net.batch_norm_scale(top, f"{conv}/scale", conv, top, eps=1e-5)
    if relu:
        net.relu(relu, top)
    return top


def mobilenet_v2() -> str:
    net = NetWriter("MOBILENET_V2")
    net.legacy_input("data", (1, 3, 224, 224))
    bottom = _mobilenet_conv_bn(net, "conv1", "relu1", "data", 32, 3, stride=2, pad=1)
    channels = 32
    names = iter(MOBILENET_V2_NAMES)
    for t, c, n, s in MOBILENET_V2_ROWS:
        for i in range(n):
            name = next(names)
            stride = s if i == 0 else 1
            hidden = channels * t
            x = _mobilenet_conv_bn(net, f"conv{name}/expand", f"relu{name}/expand", bottom,
                                   hidden, 1)
            x = _mobilenet_conv_bn(net, f"conv{name}/dwise", f"relu{name}/dwise", x, hidden, 3,
                                   stride=stride, pad=1, group=hidden)
            x = _mobilenet_conv_bn(net, f"conv{name}/linear", "", x, c, 1)
            if stride == 1 and channels == c:
                block = f"block_{name}"
                net.layer(block, "Eltwise", [bottom, x], [block])
                x = block
            bottom, channels = x, c
    bottom = _mobilenet_conv_bn(net, "conv6_4", "relu6_4", bottom, 1280, 1)
    net.pool("pool6", bottom, "pool6", "AVE", global_pooling=True)
    net.conv("fc7", "pool6", "fc7", 1000, 1)
    net.softmax("prob", "fc7", "prob")
    return net.text()


NETS = {
    "resnet50_deploy.prototxt": resnet50,
    "squeezenet1_1_deploy.prototxt": squeezenet1_1,
    "mobilenet_v2_deploy.prototxt": mobilenet_v2,
}


def main() -> None:
    for filename, build in NETS.items():
        (HERE / filename).write_text(build())
        print(f"wrote {HERE / filename}")


if __name__ == "__main__":
    main()
