"""Comparing float32 kernel results with float64 references, with tolerances from rounding
error bounds rather than guessed ``rtol``s.

A float32 kernel rounds every operation to 24 bits: each IEEE operation has a relative error of
at most ``U = 2**-24``, and a sum of ``k`` products, in any order (BLAS, threads, FMA), differs
from the exact sum by at most about ``k * U * sum(|products|)``. So a kernel result is compared
with its float64 reference as ``|kernel - reference| <= roundings * U * magnitude``, where
``magnitude`` is what the error scales with (``|reference|`` for one correctly rounded
operation, the sum of the absolute values of the terms for a reduction) and ``roundings``
counts the roundings the test's comment explains (a libm function that is faithful to within
one ulp counts as two: an ulp is ``2 * U`` relative).
"""

from __future__ import annotations

import numpy as np

#: Unit roundoff of float32: half the distance from 1 to the next float32.
U = 2.0**-24
#: Smallest positive (subnormal) float32; below the normal range errors are absolute.
TINY = 2.0**-149
#: Magnitudes from which float64 values round to an infinity in float32 (FLT_MAX + half an ulp).
OVERFLOW = 2.0**128 - 2.0**103


def assert_close(actual: np.ndarray, expected: np.ndarray, magnitude: np.ndarray | float,
                 roundings: float) -> None:
    """``|actual - expected| <= roundings * (U * magnitude + TINY)`` elementwise, and the same NaNs
    and infinities in both (a NaN or infinite reference, or one beyond the float32 range, must
    be matched exactly)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    # A reference beyond the float32 range rounds to an infinity, as the kernel's result must.
    expected = np.where(np.abs(expected) >= OVERFLOW, np.copysign(np.inf, expected), expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    special = ~np.isfinite(expected)
    np.testing.assert_array_equal(actual[special], expected[special],
                                  err_msg="NaN/inf positions differ")
    assert np.isfinite(actual[~special]).all(), "the kernel gave NaN/inf where the reference is "\
        f"finite: at {np.argwhere(~np.isfinite(actual) & ~special)[:5].tolist()}"
    bound = roundings * (U * np.broadcast_to(np.abs(magnitude), expected.shape) + TINY)
    assert np.isfinite(bound[~special]).all(), "the tolerance is NaN or infinite: fix the " \
        "test's magnitude"
    error = np.abs(np.where(special, 0.0, actual) - np.where(special, 0.0, expected))
    bad = (error > bound) & ~special
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements exceed {roundings} roundings of their "
            f"magnitude; first at {first}: kernel {actual[first]!r}, reference "
            f"{expected[first]!r}, "
            f"error {error[first]:.3g} > bound {bound[first]:.3g}; largest error/bound "
            f"{np.max(error / bound):.3g}")


def rounded(x: np.ndarray) -> np.ndarray:
    """A float64 reference rounded once to float32: what a kernel that performs one correctly
    rounded float32 operation (or a pure selection) must give bit for bit."""
    with np.errstate(over="ignore"):  # beyond the float32 range: an infinity, as in a kernel
        return np.asarray(x, dtype=np.float64).astype(np.float32)
