"""InnerProduct (fully connected): one BLAS GEMM (split over the threads when large, with
MKL: :func:`pyforge.layers.blas.matmul`)."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels.scatter import scatter_add_rows
from .base import Layer, register_layer
from .blas import matmul


@register_layer("InnerProduct", "INNER_PRODUCT")
class InnerProductLayer(Layer):
    """Caffe type ``InnerProduct``: bottom (M, K...) -> top (M..., num_output).

    Axes from ``axis`` on are flattened to K. Params: weight (num_output, K), or (K, num_output)
    with ``transpose``; bias (num_output) when ``bias_term``.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.inner_product_param
        if p.num_output <= 0:
            raise self.error("num_output must be given and positive")
        self.num_output = int(p.num_output)
        self.axis = self.canonical_axis(bottom[0], p.axis)
        self.k = bottom[0].count_range(self.axis)
        self.transpose = p.transpose
        self.bias_term = p.bias_term
        if self.blobs:
            return
        shape = (self.k, self.num_output) if self.transpose else (self.num_output, self.k)
        self.blobs = [self.make_param(shape, p.weight_filler, "weight_filler")]
        if self.bias_term:
            self.blobs.append(self.make_param((self.num_output,), p.bias_filler, "bias_filler"))
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        axis = self.canonical_axis(bottom[0], self.param.inner_product_param.axis)
        k = bottom[0].count_range(axis)
        if k != self.k:
            raise self.error(
                f"input size incompatible with inner product parameters: bottom {bottom[0].shape} "
                f"gives {k} inputs per item from axis {axis}, the weights expect {self.k}"
            )
        top[0].reshape(bottom[0].shape[:axis] + (self.num_output,))
        self.m = bottom[0].count_range(0, axis)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.m, self.k)
        y = top[0].data.reshape(self.m, self.num_output)
        w = self.blobs[0].data
        matmul(x, w if self.transpose else w.T, y)
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff.reshape(self.m, self.num_output)
        x = bottom[0].data.reshape(self.m, self.k)
        if self.param_propagate_down[0]:
            if self.transpose:
                matmul(x.T, dy, self.blobs[0].diff, accumulate=True)
            else:
                matmul(dy.T, x, self.blobs[0].diff, accumulate=True)
        if self.bias_term and self.param_propagate_down[1]:
            self.blobs[1].diff += dy.sum(axis=0, dtype=np.float32)
        if propagate_down[0]:
            w = self.blobs[0].data
            matmul(dy, w.T if self.transpose else w, bottom[0].diff.reshape(self.m, self.k))


@register_layer("Embed")
class EmbedLayer(Layer):
    """Caffe type ``Embed``: bottom of integer indices (any shape) -> top of shape
    ``bottom.shape + (num_output,)``, row ``weight[index]`` (+ bias) per index.

    Params: weight (input_dim, num_output), bias (num_output) when ``bias_term``. Reads
    embed_param: num_output, input_dim, bias_term (true), weight_filler, bias_filler. The
    gradient goes to the parameters only (indices have none).
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.embed_param
        self.num_output = int(p.num_output)
        self.input_dim = int(p.input_dim)
        if self.num_output <= 0:
            raise self.error("num_output must be given and positive")
        if self.input_dim <= 0:
            raise self.error("input_dim must be given and positive")
        self.bias_term = p.bias_term
        if self.blobs:
            return
        # The weight is the transpose of an InnerProduct's: one row per index.
        self.blobs = [self.make_param((self.input_dim, self.num_output), p.weight_filler,
                                      "weight_filler")]
        if self.bias_term:
            self.blobs.append(self.make_param((self.num_output,), p.bias_filler, "bias_filler"))
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, bottom: Blob) -> np.ndarray:
        return self.integer_indices(bottom.data.reshape(-1), self.input_dim, "Embed inputs")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        index = self._indices(bottom[0])
        out = top[0].data.reshape(-1, self.num_output)
        np.take(self.blobs[0].data, index, axis=0, out=out)
        if self.bias_term:
            out += self.blobs[1].data

    def allow_force_backward(self, bottom_index: int) -> bool:
        return False  # the bottom holds indices

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            raise self.error("cannot backpropagate to the Embed input (it holds indices)")
        dy = top[0].diff.reshape(-1, self.num_output)
        if self.param_propagate_down[0]:
            scatter_add_rows(dy, self._indices(bottom[0]), self.blobs[0].diff)
        if self.bias_term and self.param_propagate_down[1]:
            self.blobs[1].diff += dy.sum(axis=0, dtype=np.float32)
