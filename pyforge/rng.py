"""The one random generator of a run, seeded from ``random_seed``.

Caffe seeds one global generator from ``SolverParameter.random_seed`` before the nets are built.
pyforge does the same with a NumPy ``Generator`` that is passed explicitly: fillers draw from it
in layer order, and layers that need randomness during training (Dropout, random crop/mirror)
get their own generator seeded from it at construction, so that one layer's draws never shift
another's stream.
"""

from __future__ import annotations

import numpy as np


def make_rng(seed: int | None) -> np.random.Generator:
    """A generator seeded with ``seed``; ``None`` or a negative seed draws from the OS."""
    if seed is None or seed < 0:
        return np.random.default_rng()
    return np.random.default_rng(int(seed))


def child_rng(parent: np.random.Generator) -> np.random.Generator:
    """A generator for one layer, seeded by one draw from ``parent``."""
    return np.random.default_rng(int(parent.integers(0, 2**63 - 1)))
