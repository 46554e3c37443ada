"""Kernels of the Scale layer (and BatchNorm with stored statistics): a per-channel factor and
offset over (outer, dim, inner) views, forward next to backward.

One pass over memory each: the forward also keeps the input when the layer runs in place (its
backward needs it), and the backward takes both sums of a plane before overwriting the top
diff with the bottom diff, which in place is the same array. Sums run in float64 per plane;
the caller adds the planes over ``outer`` in order, so the result is the same for any number of
threads.
"""

from __future__ import annotations

import numpy as np

from ._jit import pjit, prange


@pjit
def scale_forward(x, scale, bias, use_bias, keep, saved, y):
    """``y = x * scale[d] (+ bias[d])`` over (outer, dim, inner); with ``keep`` also
    ``saved = x`` first (``y`` may be ``x``). The product is rounded before the bias is added,
    as Caffe multiplies, then adds."""
    outer, dim, inner = x.shape
    in_place = x.ctypes.data == y.ctypes.data
    for p in prange(outer * dim):
        o = p // dim
        d = p % dim
        dst = y[o, d]
        s = scale[d]
        if keep:
            saved[o, d, :] = x[o, d]
        if not in_place:
            dst[:] = x[o, d]
        # One array in the loops: with two that may alias, LLVM's runtime overlap check
        # fails in place and the loop runs unvectorised.
        if use_bias:
            b = bias[d]
            for i in range(inner):
                dst[i] = dst[i] * s + b
        else:
            for i in range(inner):
                dst[i] = dst[i] * s


@pjit
def scale_backward(x, dy, scale, need_scale, need_bias, need_data, scale_parts, bias_parts,
                   dx):
    """Per (outer, dim) plane: ``scale_parts = sum(dy * x)`` and ``bias_parts = sum(dy)``
    (float64), then ``dx = dy * scale[d]``; ``dx`` may be ``dy`` (in place)."""
    outer, dim, inner = dy.shape
    for p in prange(outer * dim):
        o = p // dim
        d = p % dim
        grad = dy[o, d]
        if need_scale:
            src = x[o, d]
            total = 0.0
            for i in range(inner):
                total += np.float64(grad[i] * src[i])
            scale_parts[o, d] = total
        if need_bias:
            total = 0.0
            for i in range(inner):
                total += np.float64(grad[i])
            bias_parts[o, d] = total
        if need_data:
            out = dx[o, d]
            s = scale[d]
            for i in range(inner):
                out[i] = grad[i] * s
