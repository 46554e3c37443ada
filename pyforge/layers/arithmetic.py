"""Layers that add, multiply or take maxima of values: Eltwise (across blobs) and
Reduction (across axes).
"""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels import arithmetic as KA
from ..kernels.channel_ops import axpy_backward, axpy_forward
from ..proto import caffe_pb2
from .base import Layer, register_layer

E = caffe_pb2.EltwiseParameter


@register_layer("Eltwise", "ELTWISE")
class EltwiseLayer(Layer):
    """Caffe type ``Eltwise``: elementwise PROD, SUM (with one ``coeff`` per bottom) or MAX of
    two or more bottoms of one shape. MAX routes the gradient to the first maximal bottom."""

    min_bottom_blobs = 2
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.eltwise_param
        if len(p.coeff) and p.operation != E.SUM:
            raise self.error("coeff is only used by the SUM operation")
        if len(p.coeff) and len(p.coeff) != len(bottom):
            raise self.error(f"give one coeff per bottom: {len(p.coeff)} coeff(s) for "
                             f"{len(bottom)} bottoms")
        self.coeffs = [np.float32(c) for c in p.coeff] or [np.float32(1)] * len(bottom)
        self.op = p.operation
        self.stable_prod_grad = p.stable_prod_grad

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for i, b in enumerate(bottom[1:], start=1):
            if b.shape != bottom[0].shape:
                raise self.error(f"bottom {i} has shape {b.shape}, bottom 0 has "
                                 f"{bottom[0].shape}; all must match")
        top[0].reshape_like(bottom[0])
        if self.op == E.MAX:
            self.argmax = np.zeros(bottom[0].shape, dtype=np.int32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        out = top[0].data
        if self.op == E.PROD:
            np.multiply(bottom[0].data, bottom[1].data, out=out)
            for b in bottom[2:]:
                out *= b.data
        elif self.op == E.SUM:
            flat = out.reshape(-1)
            c = self.coeffs
            KA.weighted_sum2(bottom[0].data.reshape(-1), c[0], bottom[1].data.reshape(-1), c[1],
                             flat)
            for b, coeff in zip(bottom[2:], c[2:]):
                KA.add_scaled(flat, b.data.reshape(-1), coeff)
        else:
            # Caffe's quirk: bottom 0 wins over bottom 1 only when strictly greater (a tie or a
            # NaN goes to bottom 1); from bottom 2 on, a later bottom must be strictly greater.
            first = bottom[0].data > bottom[1].data
            np.copyto(out, np.where(first, bottom[0].data, bottom[1].data))
            self.argmax[...] = np.where(first, 0, 1)
            for i, b in enumerate(bottom[2:], start=2):
                better = b.data > out
                out[better] = b.data[better]
                self.argmax[better] = i

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff
        for i, b in enumerate(bottom):
            if not propagate_down[i]:
                continue
            if self.op == E.PROD:
                if self.stable_prod_grad:
                    prod = np.ones_like(dy)
                    for j, other in enumerate(bottom):
                        if j != i:
                            prod *= other.data
                else:
                    with np.errstate(divide="ignore", invalid="ignore"):  # Caffe: inf/NaN
                        prod = top[0].data / b.data
                np.multiply(prod, dy, out=b.diff)
            elif self.op == E.SUM:
                KA.scaled_copy(dy.reshape(-1), self.coeffs[i], b.diff.reshape(-1))
            else:
                np.multiply(dy, self.argmax == i, out=b.diff)


Op = caffe_pb2.ReductionParameter


@register_layer("Reduction")
class ReductionLayer(Layer):
    """Caffe type ``Reduction``: bottom -> top of shape ``bottom.shape[:axis]`` (a scalar for
    axis 0), each element ``coeff`` times the SUM, ASUM (sum of |x|), SUMSQ or MEAN of the
    bottom's axes from ``axis`` on.

    Reads reduction_param: operation (SUM), axis (0), coeff (1).
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.reduction_param
        self.op = p.operation
        if self.op not in (Op.SUM, Op.ASUM, Op.SUMSQ, Op.MEAN):
            raise self.error(f"unknown reduction op {self.op}")
        self.axis = self.canonical_axis(bottom[0], p.axis)
        top[0].reshape(bottom[0].shape[: self.axis])
        self.num = bottom[0].count_range(0, self.axis)
        self.dim = bottom[0].count_range(self.axis)
        self.coeff = np.float32(p.coeff)
        if self.op == Op.MEAN:
            # Caffe folds the 1/dim into the float coefficient.
            self.coeff = np.float32(self.coeff / np.float32(self.dim))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.num, self.dim)
        out = top[0].data.reshape(self.num)
        if self.op in (Op.SUM, Op.MEAN):
            x.sum(axis=1, dtype=np.float32, out=out)
        elif self.op == Op.ASUM:
            np.abs(x).sum(axis=1, dtype=np.float32, out=out)
        else:
            np.einsum("ij,ij->i", x, x, out=out)
        if self.coeff != 1:
            out *= self.coeff

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        scale = top[0].diff.reshape(self.num, 1) * self.coeff
        dx = bottom[0].diff.reshape(self.num, self.dim)
        x = bottom[0].data.reshape(self.num, self.dim)
        if self.op in (Op.SUM, Op.MEAN):
            dx[...] = scale
        elif self.op == Op.ASUM:
            # caffe_cpu_sign: (0 < x) - (x < 0), so sign(0) = 0.
            sign = (x > 0).astype(np.float32) - (x < 0).astype(np.float32)
            np.multiply(sign, scale, out=dx)
        else:
            np.multiply(x, scale * np.float32(2), out=dx)


@register_layer("Axpy")
class AxpyLayer(Layer):
    """Caffe type ``Axpy`` (hujie-frank/SENet): bottoms scale (N, C) or (N, C, 1, 1), x and
    y (N, C, ...) of one shape -> top ``scale[n, c] * x + y`` (the SE block's rescale and
    residual sum in one layer). Backward: ``d scale = sum over the spatial axes of
    dtop * x``, ``dx = scale * dtop``, ``dy = dtop``. May run in place on y, not on x (the
    gradient of scale needs x).
    """

    exact_num_bottom_blobs = 3
    exact_num_top_blobs = 1

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        scale, x, y = bottom
        if x.num_axes < 2 or scale.num_axes < 2 or scale.shape[:2] != x.shape[:2]:
            raise self.error(f"bottom 0 (the scale) must be (N, C) or (N, C, 1, 1) for x of "
                             f"shape {x.shape}, found {scale.shape}")
        if scale.num_axes == 4 and scale.shape[2:] != (1, 1):
            raise self.error(f"bottom 0 (the scale) must be (N, C, 1, 1), found {scale.shape}")
        if x.shape != y.shape:
            raise self.error(f"bottoms 1 and 2 (x and y) must have one shape, found {x.shape} "
                             f"and {y.shape}")
        if top[0] is x:
            raise self.error("cannot run in place on bottom 1 (x): its gradient of the scale "
                             "needs x")
        top[0].reshape(x.shape)

    @staticmethod
    def _views(scale: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        n, c = x.shape[:2]
        return scale.reshape(n, c), (n, c, x.size // (n * c) if n * c else 0)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        scale, dims = self._views(bottom[0].data, bottom[1].data)
        axpy_forward(scale, bottom[1].data.reshape(dims), bottom[2].data.reshape(dims),
                     top[0].data.reshape(dims))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        scale, dims = self._views(bottom[0].data, bottom[1].data)
        dtop = top[0].diff.reshape(dims)
        if propagate_down[0] or propagate_down[1]:
            axpy_backward(scale, bottom[1].data.reshape(dims), dtop, bool(propagate_down[0]),
                          bool(propagate_down[1]), bottom[0].diff.reshape(scale.shape),
                          bottom[1].diff.reshape(dims))
        if propagate_down[2] and bottom[2].diff is not top[0].diff:
            bottom[2].diff[...] = top[0].diff
