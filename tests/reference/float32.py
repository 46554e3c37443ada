"""Comparing float32 kernel results with float64 references, with tolerances from rounding
error bounds rather than guessed ``rtol``s.

A float32 kernel rounds every operation to 24 bits: each IEEE operation has a relative error of
at most ``U = 2**-24``, and a sum of ``k`` products, in any order (BLAS, threads, FMA), differs
from the exact sum by at most about ``k * U * sum(|products|)``. So a kernel result is compared
with its float64 reference as ``|kernel - reference| <= ulps * U * magnitude``, where
``magnitude`` is what the error scales with (``|reference|`` for one correctly rounded
operation, the sum of the absolute values of the terms for a reduction) and ``ulps`` counts the
roundings (or the condition number of the function) the test's comment explains.
"""

from __future__ import annotations

import numpy as np

#: Unit roundoff of float32: half the distance from 1 to the next float32.
U = 2.0**-24
#: Smallest positive (subnormal) float32; below the normal range errors are absolute.
TINY = 2.0**-149


def assert_close(actual: np.ndarray, expected: np.ndarray, magnitude: np.ndarray | float,
                 ulps: float) -> None:
    """``|actual - expected| <= ulps * (U * magnitude + TINY)`` elementwise, and the same NaNs
    and infinities in both (a NaN or infinite reference must be matched exactly)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    special = ~np.isfinite(expected)
    np.testing.assert_array_equal(actual[special], expected[special],
                                  err_msg="NaN/inf positions differ")
    assert np.isfinite(actual[~special]).all(), "the kernel gave NaN/inf where the reference is "\
        f"finite: at {np.argwhere(~np.isfinite(actual) & ~special)[:5].tolist()}"
    bound = ulps * (U * np.broadcast_to(np.abs(magnitude), expected.shape) + TINY)
    error = np.abs(actual - expected)
    bad = (error > bound) & ~special
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements exceed {ulps} ulps of their magnitude; "
            f"first at {first}: kernel {actual[first]!r}, reference {expected[first]!r}, "
            f"error {error[first]:.3g} > bound {bound[first]:.3g}; largest error/bound "
            f"{np.max(error[~special] / bound[~special]):.3g}")


def rounded(x: np.ndarray) -> np.ndarray:
    """A float64 reference rounded once to float32: what a kernel that performs one correctly
    rounded float32 operation (or a pure selection) must give bit for bit."""
    return np.asarray(x, dtype=np.float64).astype(np.float32)
