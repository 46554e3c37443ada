"""Shared definitions of gradient-check cases.

Each layer family ``pyforge/layers/<family>.py`` has its cases in
``tests/layers/grad_cases_<family>.py``, which defines ``CASES: dict[str, list[Case] |
NoGradient]``; ``tests/layers/test_gradients.py`` merges every such module into ``GRAD_CASES``
and runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyforge.layers import LAYERS
from tests.gradient_check import TRAIN


@dataclass(frozen=True)
class Case:
    """One gradient check of one layer configuration."""

    id: str
    #: Text-format LayerParameter; its bottom/top names give the wiring (top j == bottom j is
    #: in place). Loss layers without a top get their automatic one.
    prototxt: str
    #: Shape of each bottom, in the prototxt's bottom order.
    bottoms: tuple[tuple[int, ...], ...]
    #: -1 = every bottom; a tuple = those bottoms (label bottoms are never perturbed).
    check_bottom: int | tuple[int, ...] = -1
    #: "exhaustive" (CheckGradientExhaustive), "total" (CheckGradient, 0.5*sum top^2) or
    #: "eltwise" (CheckGradientEltwise).
    mode: str = "exhaustive"
    stepsize: float = 1e-2
    threshold: float = 1e-3
    kink: float = 0.0
    kink_range: float = -1.0
    #: "gaussian"; "distinct" (all bottom values distinct, at least 0.05 apart, so a max never
    #: switches under a +-stepsize perturbation); "away" (|x| in [0.5, 1.5], for PROD).
    data: str = "gaussian"
    #: Bottom index -> number of classes: that bottom holds integer-valued float labels.
    labels: dict[int, int] = field(default_factory=dict)
    phase: int = TRAIN
    #: Exhaustive mode: only these tops are differentiated (None = all).
    top_ids: tuple[int, ...] | None = None
    #: Bottom index -> its values (row-major, the bottom's shape): inputs such as ROI boxes or
    #: pooling masks that must hold particular values. Not perturbed: leave them out of
    #: check_bottom.
    fixed: dict[int, tuple[float, ...]] = field(default_factory=dict)
    #: False: only the bottoms are checked (parameters with lr_mult forced to 0 by the layer
    #: itself, e.g. frozen statistics, get no gradient by design).
    check_params: bool = True


@dataclass(frozen=True)
class NoGradient:
    """A registered type with nothing to differentiate; ``verify`` checks the reason."""

    reason: str
    verify: Callable[[], None]


def no_bottoms(type_name: str) -> Callable[[], None]:
    """The claim of a data layer's NoGradient: it takes no bottoms and defines no backward."""

    def verify() -> None:
        cls = LAYERS.get(type_name)
        assert cls.exact_num_bottom_blobs == 0, f"{type_name} takes bottoms"
        assert "backward" not in vars(cls), (
            f"{type_name} defines a backward; give it a gradient case"
        )

    return verify
