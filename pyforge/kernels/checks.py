"""Scans used by divergence detection."""

from __future__ import annotations

import numpy as np

from ._jit import jit


@jit
def all_finite(x):
    """True when no element of the flat array ``x`` is NaN or infinite (stops at the first)."""
    for i in range(x.size):
        if not np.isfinite(x[i]):
            return False
    return True
