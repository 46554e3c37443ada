"""pyforge.kernels.conv against the direct loop convolution of tests/reference/naive.py.

conv_forward / conv_backward are called with the per-thread buffers ConvolutionLayer passes:
output, weight and bias gradients (the per-thread parts summed in thread order, as the layer
does) and data gradient, over stride, pad, dilation, group, bias, one image and batches that the
thread count does not divide, with and without the pointwise (1x1, no im2col) path; and bitwise
equality of two runs with the same thread count. depthwise_forward / depthwise_backward (one
input channel per group, channel multiplier 1 and 2) likewise, summed over the images in order
as the layer sums them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pyforge.config import single_threaded_blas
from pyforge.kernels.conv import (
    conv_backward,
    conv_forward,
    conv_forward_batched,
    conv_forward_tiled,
)
from pyforge.kernels.depthwise import depthwise_backward, depthwise_forward
from pyforge.layers.blas import fortran_sgemm
from pyforge.layers.conv import Epilogue
from tests.reference import naive
from tests.reference.float32 import assert_close


@dataclass(frozen=True)
class Case:
    n: int
    c: int
    h: int
    w: int
    m: int  # num_output
    kernel: tuple[int, int]
    pad: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    group: int = 1
    bias: bool = True
    threads: int = 2

    @property
    def pointwise(self) -> bool:
        """The layer's pointwise path: the image is its own column matrix."""
        return self.kernel == (1, 1) and self.stride == (1, 1) and self.pad == (0, 0)

    @property
    def out_hw(self) -> tuple[int, int]:
        return tuple(naive.conv_out_size(s, k, p, st, d) for s, k, p, st, d in
                     zip((self.h, self.w), self.kernel, self.pad, self.stride, self.dilation))

    @property
    def kernel_args(self) -> tuple[int, ...]:
        return (*self.kernel, *self.pad, *self.stride, *self.dilation, *self.out_hw)


CASES = [
    pytest.param(Case(1, 1, 5, 5, 1, (3, 3), threads=1), id="one_image_one_thread"),
    pytest.param(Case(1, 3, 6, 5, 4, (3, 3), pad=(1, 1), threads=1), id="one_image_pad1"),
    pytest.param(Case(5, 2, 6, 6, 3, (3, 3), pad=(1, 1), threads=2), id="N5_T2_pad1"),
    pytest.param(Case(5, 3, 7, 6, 4, (3, 3), pad=(1, 1), stride=(2, 2), bias=False, threads=3),
                 id="N5_T3_stride2_no_bias"),
    pytest.param(Case(3, 4, 7, 7, 4, (3, 3), dilation=(2, 2), group=2, threads=2),
                 id="N3_T2_dilation2_group2"),
    pytest.param(Case(4, 3, 6, 7, 3, (3, 2), pad=(0, 1), stride=(2, 1), dilation=(1, 2),
                      group=3, threads=3), id="N4_T3_depthwise_mixed_hw"),
    pytest.param(Case(7, 4, 5, 4, 6, (2, 3), pad=(2, 1), stride=(1, 2), group=2, threads=4),
                 id="N7_T4_pad_ge_kernel_minus_1"),
    pytest.param(Case(2, 3, 4, 4, 5, (1, 1), threads=2), id="k1"),
    pytest.param(Case(3, 4, 3, 5, 6, (1, 1), group=2, threads=2), id="k1_group2"),
    pytest.param(Case(2, 3, 5, 5, 2, (1, 1), stride=(2, 2), threads=2), id="k1_stride2_im2col"),
    pytest.param(Case(3, 2, 4, 5, 3, (4, 5), threads=2), id="kernel_is_image"),
    pytest.param(Case(2, 2, 5, 5, 2, (3, 3), pad=(1, 1), stride=(3, 3), threads=3),
                 id="more_threads_than_images"),
]


def _data(case: Case, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case.n, case.c, case.h, case.w)).astype(np.float32)
    weight = rng.standard_normal((case.m, case.c // case.group, *case.kernel)).astype(np.float32)
    bias = rng.standard_normal(case.m).astype(np.float32)
    dy = rng.standard_normal((case.n, case.m, *case.out_hw)).astype(np.float32)
    return x, weight, bias, dy


def _forward(case: Case, x, weight, bias) -> np.ndarray:
    """The kernel called as ConvolutionLayer.forward calls it."""
    g = case.group
    oh, ow = case.out_hw
    rows = 0 if case.pointwise else case.c * case.kernel[0] * case.kernel[1]
    cols = np.full((case.threads, rows, oh * ow), np.nan, dtype=np.float32)
    out = np.full((case.n, g, case.m // g, oh * ow), np.nan, dtype=np.float32)  # overwritten
    conv_forward(x, weight.reshape(g, case.m // g, -1),
                 bias if case.bias else np.zeros(1, np.float32), case.bias, *case.kernel_args,
                 case.pointwise, fortran_sgemm(), cols, out, *_no_epilogue(case), out, 0)
    return out.reshape(case.n, case.m, oh, ow)


def _forward_tiled(case: Case, x, weight, bias, tile: int, post: tuple | None = None,
                   store: bool = True, final: np.ndarray | None = None,
                   final_c0: int = 0) -> np.ndarray:
    """conv_forward_tiled called as ConvolutionLayer.forward calls it for one group, with
    ``tile`` output columns per product; returns ``out`` (NaN where it was not written)."""
    oh, ow = case.out_hw
    rows = 0 if case.pointwise else case.c * case.kernel[0] * case.kernel[1]
    cols = np.full((case.threads, rows, oh * ow), np.nan, dtype=np.float32)
    tiles = np.full((case.threads, case.m * min(tile, oh * ow)), np.nan, dtype=np.float32)
    out = np.full((case.n, 1, case.m, oh * ow), np.nan, dtype=np.float32)
    post = _no_epilogue(case) if post is None else post
    final = out.reshape(case.n, case.m, oh, ow) if final is None else final
    with single_threaded_blas():
        conv_forward_tiled(x, weight.reshape(case.m, -1),
                           bias if case.bias else np.zeros(1, np.float32), case.bias,
                           *case.kernel_args, case.pointwise, fortran_sgemm(), cols, tiles,
                           store, out, *post, final, final_c0)
    return out.reshape(case.n, case.m, oh, ow)


def _no_epilogue(case: Case) -> tuple:
    """The epilogue arguments of a convolution with no followers run in its pass."""
    return Epilogue().arguments(case.n, case.m)


def _backward(case: Case, x, weight, dy, need=(True, True, True), per: int = 1):
    """The kernel called as ConvolutionLayer.backward calls it, the per-thread weight and bias
    parts then added in thread order into zeroed float32 diffs, as the layer does; ``per``
    images share each weight-gradient product (one group only)."""
    g = case.group
    oh, ow = case.out_hw
    threads = case.threads
    w3 = weight.reshape(g, case.m // g, -1)
    transposed = (g, w3.shape[2], w3.shape[1])
    rows = 0 if case.pointwise else case.c * case.kernel[0] * case.kernel[1]
    cols = np.full((threads, rows, oh * ow), np.nan, dtype=np.float32)
    dcols = np.full_like(cols, np.nan)
    dw_parts = np.full((threads, *transposed), np.nan, dtype=np.float32)  # zeroed by the kernel
    dw_tmp = np.full_like(dw_parts, np.nan)
    db_parts = np.full((threads, g, case.m // g), np.nan, dtype=np.float32)
    dx = np.full(x.shape, 7.0, dtype=np.float32)  # overwritten when the data gradient is asked
    k = case.c * case.kernel[0] * case.kernel[1]
    size = oh * ow * per if per > 1 else 0
    stacks = np.full((threads, k * size), np.nan, dtype=np.float32)
    dy_stacks = np.full((threads, case.m * size), np.nan, dtype=np.float32)
    conv_backward(x, w3, dy.reshape(case.n, g, case.m // g, -1), *case.kernel_args,
                  case.pointwise, fortran_sgemm(), *need, cols, dcols, dw_parts, dw_tmp,
                  db_parts, stacks, dy_stacks, dx)
    d_weight = np.zeros(w3.shape, dtype=np.float32)
    for part in dw_parts:
        d_weight += part.transpose(0, 2, 1)
    d_bias = np.zeros(case.m, dtype=np.float32)
    for part in db_parts:
        d_bias += part.reshape(-1)
    return d_weight.reshape(weight.shape), d_bias, dx, dw_parts, db_parts


def _geometry(case: Case) -> dict:
    return {"pad": case.pad, "stride": case.stride, "dilation": case.dilation,
            "group": case.group}


@pytest.mark.parametrize("case", CASES)
def test_conv_forward(case):
    x, weight, bias, _ = _data(case, 0)
    out = _forward(case, x, weight, bias)
    b = bias if case.bias else None
    expected = naive.conv_forward(x, weight, b, **_geometry(case))
    # A sum of K = C/group*kh*kw products (BLAS, any order, maybe FMA) plus the bias: at most
    # about K + 1 roundings of the sum of the absolute values of the terms.
    magnitude = naive.conv_forward(np.abs(x), np.abs(weight), None if b is None else np.abs(b),
                                   **_geometry(case))
    terms = case.c // case.group * case.kernel[0] * case.kernel[1]
    assert_close(out, expected, magnitude, roundings=terms + 2)


@pytest.mark.parametrize("case", [c for c in CASES if c.values[0].group == 1])
@pytest.mark.parametrize("per", [2, 3])
def test_conv_backward_batched(case, per):
    """The weight and data gradients of ``per`` images per product (ragged last groups): the
    direct loop's values; the bias gradient as image by image, bit for bit."""
    x, weight, bias, dy = _data(case, 3)
    d_weight, d_bias, dx, _, _ = _backward(case, x, weight, dy, per=per)
    exp_w, _, exp_x = naive.conv_backward(x, weight, dy, **_geometry(case))
    mag_w, _, mag_x = naive.conv_backward(np.abs(x), np.abs(weight), np.abs(dy),
                                          **_geometry(case))
    oh, ow = case.out_hw
    assert_close(d_weight, exp_w, mag_w, roundings=oh * ow * case.n + 2)
    assert_close(dx, exp_x, mag_x, roundings=case.m * 9 + 2)
    np.testing.assert_array_equal(d_bias, _backward(case, x, weight, dy)[1])


@pytest.mark.parametrize("case", [c for c in CASES if c.values[0].group == 1])
@pytest.mark.parametrize("tile", [5, 64, 4096], ids=["tile5", "tile64", "one_tile"])
def test_conv_forward_tiled(case, tile):
    """The one-group forward a tile of output columns at a time (ragged last tiles
    included): the direct loop's values, and the same bits for every tile size."""
    x, weight, bias, _ = _data(case, 1)
    out = _forward_tiled(case, x, weight, bias, tile)
    expected = naive.conv_forward(x, weight, bias if case.bias else None, **_geometry(case))
    magnitude = naive.conv_forward(np.abs(x), np.abs(weight), np.abs(bias) if case.bias
                                   else None, **_geometry(case))
    taps = case.c * case.kernel[0] * case.kernel[1]
    assert_close(out, expected, magnitude, roundings=taps + 2)
    np.testing.assert_array_equal(out, _forward_tiled(case, x, weight, bias, 7))


def _forward_batched(case: Case, x, weight, bias, per: int, store: bool = True,
                     post: tuple | None = None, final: np.ndarray | None = None) -> np.ndarray:
    """conv_forward_batched called as ConvolutionLayer.forward calls it: ``per`` images'
    columns side by side in each product."""
    oh, ow = case.out_hw
    k = case.c * case.kernel[0] * case.kernel[1]
    rows = 0 if case.pointwise else k
    cols = np.full((case.threads, rows, oh * ow), np.nan, dtype=np.float32)
    stacks = np.full((case.threads, k * per * oh * ow), np.nan, dtype=np.float32)
    tiles = np.full((case.threads, case.m * per * oh * ow), np.nan, dtype=np.float32)
    out = np.full((case.n, 1, case.m, oh * ow), np.nan, dtype=np.float32)
    post = _no_epilogue(case) if post is None else post
    final = out.reshape(case.n, case.m, oh, ow) if final is None else final
    with single_threaded_blas():
        conv_forward_batched(x, weight.reshape(case.m, -1),
                             bias if case.bias else np.zeros(1, np.float32), case.bias,
                             *case.kernel_args, case.pointwise, fortran_sgemm(), cols, stacks,
                             tiles, store, out, *post, final, 0)
    return out.reshape(case.n, case.m, oh, ow)


@pytest.mark.parametrize("case", [
    pytest.param(Case(7, 3, 5, 4, 4, (1, 1), threads=2), id="pointwise_N7_T2"),
    pytest.param(Case(5, 3, 6, 5, 4, (3, 3), pad=(1, 1), threads=2), id="im2col_N5_T2"),
    pytest.param(Case(6, 2, 7, 7, 3, (3, 3), stride=(2, 2), bias=False, threads=3),
                 id="stride2_no_bias_N6_T3"),
])
@pytest.mark.parametrize("per", [2, 3])
def test_conv_forward_batched(case, per):
    """Several images per product (ragged last groups): the direct loop's values; left
    unwritten with ``store`` false, the followers' result unchanged bit for bit."""
    x, weight, bias, _ = _data(case, 2)
    out = _forward_batched(case, x, weight, bias, per)
    expected = naive.conv_forward(x, weight, bias if case.bias else None, **_geometry(case))
    magnitude = naive.conv_forward(np.abs(x), np.abs(weight), np.abs(bias) if case.bias
                                   else None, **_geometry(case))
    assert_close(out, expected, magnitude, roundings=case.c * 9 + 2)
    post = Epilogue(slope=0.25).arguments(case.n, case.m)
    final = np.full(out.shape, np.nan, np.float32)
    untouched = _forward_batched(case, x, weight, bias, per, False, post, final)
    assert np.isnan(untouched).all()
    np.testing.assert_array_equal(final, np.where(out > 0, out, out * np.float32(0.25)))


@pytest.mark.parametrize("case", CASES)
def test_conv_backward(case):
    x, weight, _, dy = _data(case, 1)
    d_weight, d_bias, dx, _, _ = _backward(case, x, weight, dy)
    exp_w, exp_b, exp_x = naive.conv_backward(x, weight, dy, **_geometry(case))
    mag_w, mag_b, mag_x = naive.conv_backward(np.abs(x), np.abs(weight), np.abs(dy),
                                              **_geometry(case))
    oh, ow = case.out_hw
    # Weight and bias gradients: per image a sum over OH*OW, then over the thread's images, then
    # over the threads; data gradient: a GEMM over M/group, then up to kh*kw taps per pixel.
    sums = case.n * oh * ow + case.n + case.threads
    assert_close(d_weight, exp_w, mag_w, roundings=sums)
    assert_close(d_bias, exp_b, mag_b, roundings=sums)
    assert_close(dx, exp_x, mag_x, roundings=case.m // case.group + case.kernel[0] * case.kernel[1])


@pytest.mark.parametrize("case", [CASES[3], CASES[5]])
@pytest.mark.parametrize("need", [(True, False, False), (False, True, False),
                                  (False, False, True), (True, True, False)],
                         ids=["weight", "bias", "data", "weight_bias"])
def test_conv_backward_computes_only_what_is_asked(case, need):
    x, weight, _, dy = _data(case, 2)
    d_weight, d_bias, dx, dw_parts, db_parts = _backward(case, x, weight, dy, need)
    exp_w, exp_b, _ = naive.conv_backward(x, weight, dy, **_geometry(case))
    need_weight, need_bias, need_data = need
    # The parts of what is not asked are zeroed (the layer does not read them then).
    assert (dw_parts == 0).all() != need_weight
    assert (db_parts == 0).all() != need_bias
    if need_weight:
        np.testing.assert_allclose(d_weight, exp_w, rtol=1e-4, atol=1e-4)
    if need_bias:
        np.testing.assert_allclose(d_bias, exp_b, rtol=1e-4, atol=1e-4)
    # Without need_data the bottom diff is not touched.
    assert (dx == 7.0).all() != need_data


@pytest.mark.parametrize("case", [CASES[2], CASES[3], CASES[6]])
def test_conv_is_bitwise_deterministic_for_a_thread_count(case):
    x, weight, bias, dy = _data(case, 3)
    first = (_forward(case, x, weight, bias), *_backward(case, x, weight, dy)[:3])
    second = (_forward(case, x, weight, bias), *_backward(case, x, weight, dy)[:3])
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()


def test_conv_forward_reads_only_its_images():
    """Each image's output depends on that image only (threads share the column buffers)."""
    case = Case(5, 2, 5, 5, 3, (3, 3), pad=(1, 1), threads=2)
    x, weight, bias, _ = _data(case, 4)
    changed = x.copy()
    changed[3] += 1.0
    a = _forward(case, x, weight, bias)
    b = _forward(case, changed, weight, bias)
    np.testing.assert_array_equal(np.delete(a, 3, axis=0), np.delete(b, 3, axis=0))
    assert (a[3] != b[3]).any()


# --- depthwise -----------------------------------------------------------------------------------
DEPTHWISE = [
    pytest.param(Case(2, 3, 6, 5, 3, (3, 3), pad=(1, 1), group=3), id="k3_pad1"),
    pytest.param(Case(3, 2, 7, 6, 2, (3, 3), pad=(1, 1), stride=(2, 2), group=2,
                      bias=False), id="k3_stride2_no_bias"),
    pytest.param(Case(1, 2, 5, 4, 4, (3, 2), pad=(2, 1), stride=(2, 1), dilation=(2, 2),
                      group=2), id="multiplier2_dilated_rect"),
    pytest.param(Case(2, 2, 3, 2, 2, (5, 5), pad=(3, 3), group=2), id="kernel_wider_than_image"),
    pytest.param(Case(2, 2, 4, 4, 2, (3, 3), pad=(0, 0), stride=(3, 3), group=2),
                 id="stride_wider_than_kernel"),
    pytest.param(Case(3, 3, 7, 6, 3, (3, 3), pad=(2, 2), dilation=(2, 2), group=3, threads=2),
                 id="k3_dilated_stride1_flat"),
    pytest.param(Case(2, 2, 6, 5, 4, (5, 3), pad=(2, 1), group=2, threads=3),
                 id="k5x3_multiplier2_stride1_flat"),
]


def _pads(case: Case) -> np.ndarray:
    """The per-thread buffers ConvolutionLayer gives depthwise_forward: a padded plane and its
    flat result (or a stride-2 stencil's split columns), then an output plane (NaN: the
    kernel must write what it reads)."""
    hp, wp = case.h + 2 * case.pad[0], case.w + 2 * case.pad[1]
    oh, ow = case.out_hw
    work = max(hp * wp + (oh - 1) * wp + ow, (2 * case.h + 1) * (ow + 1))
    return np.full((case.threads, work + oh * ow), np.nan, np.float32)


def _depthwise(case: Case, x, weight, bias, dy, need=(True, True, True)):
    """The kernels called as ConvolutionLayer calls them for a depthwise convolution, the
    per-image gradients then summed over the images in order, as the layer sums them."""
    w3 = weight.reshape(case.m, *case.kernel)
    out = np.full((case.n, case.m, *case.out_hw), np.nan, dtype=np.float32)  # overwritten
    depthwise_forward(x, w3, bias if case.bias else np.zeros(1, np.float32), case.bias,
                      *case.pad, *case.stride, *case.dilation, _pads(case), True, out,
                      *_no_epilogue(case), out, 0)
    dw_planes = np.full((case.n, *w3.shape), np.nan, dtype=np.float32)
    db_planes = np.full((case.n, case.m), np.nan, dtype=np.float32)
    dx = np.full(x.shape, 7.0, dtype=np.float32)
    depthwise_backward(x, w3, dy, *case.pad, *case.stride, *case.dilation, *need, dw_planes,
                       db_planes, dx)
    return out, dw_planes.sum(axis=0).reshape(weight.shape), db_planes.sum(axis=0), dx


@pytest.mark.parametrize("case", DEPTHWISE)
def test_depthwise_forward_and_backward(case):
    x, weight, bias, dy = _data(case, 5)
    out, d_weight, d_bias, dx = _depthwise(case, x, weight, bias, dy)
    b = bias if case.bias else None
    expected = naive.conv_forward(x, weight, b, **_geometry(case))
    magnitude = naive.conv_forward(np.abs(x), np.abs(weight), None if b is None else np.abs(b),
                                   **_geometry(case))
    taps = case.kernel[0] * case.kernel[1]
    assert_close(out, expected, magnitude, roundings=taps + 2)
    exp_w, exp_b, exp_x = naive.conv_backward(x, weight, dy, **_geometry(case))
    mag_w, mag_b, mag_x = naive.conv_backward(np.abs(x), np.abs(weight), np.abs(dy),
                                              **_geometry(case))
    oh, ow = case.out_hw
    assert_close(d_weight, exp_w, mag_w, roundings=oh * ow + case.n + 2)
    assert_close(d_bias, exp_b, mag_b, roundings=oh * ow + case.n + 2)
    assert_close(dx, exp_x, mag_x, roundings=case.m // case.c * taps + 1)


@pytest.mark.parametrize("need", [(True, False, False), (False, True, False),
                                  (False, False, True)], ids=["weight", "bias", "data"])
def test_depthwise_backward_computes_only_what_is_asked(need):
    case = DEPTHWISE[0].values[0]
    x, weight, bias, dy = _data(case, 6)
    _, d_weight, d_bias, dx = _depthwise(case, x, weight, bias, dy, need)
    exp_w, exp_b, _ = naive.conv_backward(x, weight, dy, **_geometry(case))
    if need[0]:
        np.testing.assert_allclose(d_weight, exp_w, rtol=1e-4, atol=1e-4)
    else:
        assert np.isnan(d_weight).all()  # the planes are not written
    if need[1]:
        np.testing.assert_allclose(d_bias, exp_b, rtol=1e-4, atol=1e-4)
    else:
        assert np.isnan(d_bias).all()
    assert (dx == 7.0).all() != need[2]


# --- epilogue: the followers run in the convolution's pass ---------------------------------------
@pytest.mark.parametrize(("kind", "where"), [
    (kind, where) for kind in ("gemm", "tiled", "depthwise")
    for where in ("in_place", "new_top", "elided", "concat")
    if (kind, where) not in (("gemm", "elided"), ("gemm", "concat"))])
    # (the grouped kernel always stores its output)
def test_epilogue_is_bitwise_the_followers_after_the_convolution(kind, where):
    """BatchNorm ``(v - mean) / std``, the value Scale keeps, Scale ``v * g + b`` and ReLU
    ``v if v > 0 else v * slope``, each rounded as its own layer rounds: the same bits. With
    ``store`` false (``elided``) the convolution's own output is left as it was; ``concat``
    also writes the result into channels 3 onwards of a wider array (a Concat's top), and
    nothing else of it."""
    depthwise = kind == "depthwise"
    case = (Case(3, 4, 5, 6, 4, (3, 3), pad=(1, 1), group=4) if depthwise
            else Case(3, 3, 5, 6, 4, (3, 3), pad=(1, 1), stride=(1, 2)))
    x, weight, bias, _ = _data(case, 9)
    rng = np.random.default_rng(10)
    mean, g, b = (rng.standard_normal(case.m).astype(np.float32) for _ in range(3))
    std = (np.abs(rng.standard_normal(case.m)) + 0.5).astype(np.float32)
    slope = np.float32(0.2)
    plain = _forward(case, x, weight, bias) if not depthwise else _depthwise(
        case, x, weight, bias, np.zeros((case.n, case.m, *case.out_hw), np.float32))[0]
    if kind == "tiled":
        plain = _forward_tiled(case, x, weight, bias, 7)
    normalized = (plain - mean[:, None, None]) / std[:, None, None]
    scaled = normalized * g[:, None, None] + b[:, None, None]
    expected = np.where(scaled > 0, scaled, scaled * slope).astype(np.float32)
    out = np.full((case.n, case.m, *case.out_hw), np.nan, np.float32)
    final = out if where == "in_place" else np.full_like(out, np.nan)
    c0 = 0
    if where == "concat":
        c0, final = 3, np.full((case.n, case.m + 5, *case.out_hw), np.nan, np.float32)
    kept = np.full_like(out, np.nan)
    post = Epilogue(mean=mean, std=std, scale=g, shift=b, slope=float(slope),
                    kept=kept).arguments(case.n, case.m)
    store = where not in ("elided", "concat")
    if depthwise:
        depthwise_forward(x, weight.reshape(case.m, *case.kernel), bias, True, *case.pad,
                          *case.stride, *case.dilation, _pads(case), store, out, *post, final,
                          c0)
    elif kind == "tiled":
        out = _forward_tiled(case, x, weight, bias, 7, post, store, final, c0)
    else:
        oh, ow = case.out_hw
        cols = np.empty((case.threads, case.c * 9, oh * ow), np.float32)
        conv_forward(x, weight.reshape(1, case.m, -1), bias, True, *case.kernel_args, False,
                     fortran_sgemm(), cols, out.reshape(case.n, 1, case.m, -1), *post, final, 0)
    if where == "concat":
        assert np.isnan(final[:, :c0]).all() and np.isnan(final[:, c0 + case.m:]).all()
        final = final[:, c0:c0 + case.m]
    np.testing.assert_array_equal(final, expected)
    np.testing.assert_array_equal(kept, normalized)
    if where == "new_top":
        np.testing.assert_array_equal(out, plain)  # the convolution's own top keeps its value
    if where in ("elided", "concat"):
        assert np.isnan(out).all()  # not written


def _sequential_stencil(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """A 3x3 depthwise stencil with one pixel of zero padding in float32, the taps added one
    by one in (row, column) order over the padded image, as Caffe's im2col columns give
    them: the order the kernels must keep, bit for bit."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    total = np.zeros((n, c, oh, ow), np.float32)
    for ki in range(3):
        for kj in range(3):
            taps = padded[:, :, ki:ki + stride * (oh - 1) + 1:stride,
                          kj:kj + stride * (ow - 1) + 1:stride]
            with np.errstate(invalid="ignore"):  # inf * 0 is NaN, as it should be
                total = total + weight[None, :, ki, kj, None, None] * taps
    return total


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_3x3_planes_read_in_place_keep_the_order_of_the_taps(stride):
    """MobileNet's 3x3 stencils with one pixel of padding (stride 1 read in place, stride 2
    through split even and odd columns) over every small plane shape, odd and even, down to
    1x1: the bits of the taps added in order, padding taps included (an infinite weight times
    a padding zero gives NaN there, as in Caffe)."""
    rng = np.random.default_rng(12)
    for h in (1, 2, 3, 4, 5, 8):
        for w in (1, 2, 3, 4, 7, 8):
            case = Case(2, 3, h, w, 3, (3, 3), pad=(1, 1), stride=(stride, stride), group=3,
                        bias=False)
            x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
            weight = rng.standard_normal((3, 3, 3)).astype(np.float32)
            weight[2, 0, 0] = np.inf
            out = np.full((2, 3, *case.out_hw), np.nan, np.float32)
            depthwise_forward(x, weight, np.zeros(1, np.float32), False, 1, 1, stride, stride,
                              1, 1, _pads(case), True, out, *_no_epilogue(case), out, 0)
            expected = _sequential_stencil(x, weight, stride)
            np.testing.assert_array_equal(out, expected, err_msg=f"{h}x{w}")
            assert np.isnan(out[:, 2, 0, 0]).all()  # inf * padding
