"""What ``pyforge diagnose`` measured (:class:`Report`) and what it flags in it
(:func:`find_problems`, with the :class:`Thresholds` described in :mod:`pyforge.insight.diagnose`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..log import get_logger

SATURATING = ("Sigmoid", "TanH")


@dataclass(frozen=True)
class Thresholds:
    """When a statistic becomes a finding (see the module docstring)."""

    dead_relu_zero_fraction: float = 0.90
    dead_relu_unit_fraction: float = 0.50
    saturation_fraction: float = 0.50
    saturation_margin: float = 0.01
    vanishing_gradient_ratio: float = 1e-4
    exploding_gradient_growth: float = 1e3
    exploding_update_ratio: float = 0.1
    exploding_activation_ratio: float = 1e3
    diverging_loss_factor: float = 10.0


@dataclass
class BlobStats:
    iteration: int
    layer: str
    type: str
    blob: str
    kind: str  # "activation" or "gradient"
    count: int
    mean: float
    std: float
    rms: float
    min: float
    max: float
    zero_frac: float
    saturated_frac: float  # Sigmoid/TanH outputs only, else NaN
    dead_unit_frac: float  # ReLU outputs only, else NaN
    nonfinite: int


@dataclass
class ParamStats:
    iteration: int
    layer: str
    param: int
    shape: str
    lr_mult: float
    weight_norm: float
    grad_norm: float
    grad_rms: float
    update_norm: float
    update_ratio: float  # update_norm / weight_norm before the update; NaN when that is 0
    nonfinite: int


@dataclass
class Finding:
    kind: str
    #: The layer(s) concerned, as text ("conv1, conv2"); empty for the whole net.
    layer: str
    message: str
    layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.layers and self.layer:
            self.layers = (self.layer,)


@dataclass
class Report:
    model: str
    iterations: int
    losses: list[float] = field(default_factory=list)
    blobs: list[BlobStats] = field(default_factory=list)
    params: list[ParamStats] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: (layer, blob, kind) -> values sampled at the last iteration, for the histograms.
    samples: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    #: ReLU (layer, blob) -> units that fired at least once in any diagnosed batch.
    ever_active: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)
    files: list[str] = field(default_factory=list)
    #: (layer, blob) of the net's input data: the first top of each layer without bottoms.
    inputs: list[tuple[str, str]] = field(default_factory=list)


# --- findings ---------------------------------------------------------------------------------
def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def find_problems(report: Report) -> list[Finding]:
    """The findings of a report (see :class:`Thresholds` and the module docstring)."""
    t = report.thresholds
    findings: list[Finding] = []
    findings += _non_finite(report)
    by_blob: dict[tuple[str, str, str], list[BlobStats]] = {}
    for s in report.blobs:
        by_blob.setdefault((s.layer, s.blob, s.kind), []).append(s)
    findings += _dead_and_saturated(report, by_blob)
    findings += _vanishing_and_exploding(report, by_blob)
    losses = report.losses
    if (len(losses) > 1 and all(math.isfinite(v) for v in losses) and losses[0] > 0
            and losses[-1] > t.diverging_loss_factor * losses[0]):
        findings.append(Finding("diverging loss", "", (
            f"the loss grew from {losses[0]:.4g} to {losses[-1]:.4g} in {len(losses)} "
            f"iterations (more than {t.diverging_loss_factor:g}x): lower base_lr")))
    return findings


def _non_finite(report: Report) -> list[Finding]:
    bad_loss = next((i for i, v in enumerate(report.losses) if not math.isfinite(v)), None)
    first_blob = next((s for s in report.blobs if s.nonfinite), None)
    first_param = next((p for p in report.params if p.nonfinite), None)
    candidates = []
    if first_blob is not None:
        candidates.append((first_blob.iteration, 0, (
            f"the {first_blob.kind} of layer '{first_blob.layer}' (blob '{first_blob.blob}') "
            f"holds {first_blob.nonfinite} NaN/inf values at iteration {first_blob.iteration}"),
            first_blob.layer))
    if first_param is not None:
        candidates.append((first_param.iteration, 1, (
            f"the gradient or update of layer '{first_param.layer}' param "
            f"{first_param.param} holds NaN/inf values at iteration {first_param.iteration}"),
            first_param.layer))
    if bad_loss is not None and not candidates:
        candidates.append((bad_loss, 2, f"the loss is {report.losses[bad_loss]} at iteration "
                           f"{bad_loss}", ""))
    if not candidates:
        return []
    _, _, where, layer = min(candidates, key=lambda c: (c[0], c[1]))
    return [Finding("non-finite", layer, f"{where}: training has diverged (exploding "
                    "values); lower base_lr, clip gradients or shrink the initial weights")]


def _dead_and_saturated(report: Report, by_blob) -> list[Finding]:
    t = report.thresholds
    findings = []
    for (layer, blob, kind), rows in by_blob.items():
        if kind != "activation":
            continue
        kind_of_layer = rows[0].type
        if kind_of_layer == "ReLU":
            zero = _mean([r.zero_frac for r in rows])
            active = report.ever_active.get((layer, blob))
            never = float(1 - active.mean()) if active is not None and active.size else 0.0
            units = active.size if active is not None else 0
            if zero > t.dead_relu_zero_fraction or never > t.dead_relu_unit_fraction:
                findings.append(Finding("dead ReLU", layer, (
                    f"layer '{layer}' (ReLU on '{blob}'): {zero:.1%} of its outputs are 0 (not "
                    f"positive) and "
                    f"{never:.0%} of its {units} units never fired in {len(rows)} iteration(s) "
                    f"(thresholds {t.dead_relu_zero_fraction:.0%} of outputs, "
                    f"{t.dead_relu_unit_fraction:.0%} of units); its input is almost always "
                    "negative: check the bias filler of the layer below and base_lr")))
        elif kind_of_layer in SATURATING:
            saturated = _mean([r.saturated_frac for r in rows])
            if saturated > t.saturation_fraction:
                m = t.saturation_margin
                band = (f"below {m:g} or above {1 - m:g}" if kind_of_layer == "Sigmoid"
                        else f"beyond +-{1 - m:g}")
                findings.append(Finding("saturated", layer, (
                    f"layer '{layer}' ({kind_of_layer} on '{blob}'): {saturated:.1%} of its "
                    f"outputs are {band} (threshold {t.saturation_fraction:.0%}), where its "
                    "gradient nearly vanishes; scale down the initial weights of the layer "
                    "below (xavier) or its input")))
    return findings


def _vanishing_and_exploding(report: Report, by_blob) -> list[Finding]:
    t = report.thresholds
    findings: list[Finding] = []
    weights = [p for p in report.params if p.param == 0 and p.lr_mult]
    layers = list(dict.fromkeys(p.layer for p in weights))
    # Weight blobs that never got any gradient.
    zero = [layer for layer in layers
            if all(p.grad_norm == 0 for p in weights if p.layer == layer)]
    if zero:
        one = len(zero) == 1
        findings.append(Finding("vanishing gradient", ", ".join(zero), (
            f"{_names(zero)} got an all-zero weight gradient in every iteration, so "
            f"{'it does' if one else 'they do'} not learn: no gradient reaches "
            f"{'it' if one else 'them'} from the loss, or {'its' if one else 'their'} input is "
            "all zeros (a dead ReLU or a saturated unit, or a blocked backward path)"),
            tuple(zero)))
    # Relative gradient |grad| / |w| of each weight blob, averaged over the iterations.
    relative = {}
    for layer in layers:
        values = [p.grad_norm / p.weight_norm for p in weights
                  if p.layer == layer and p.weight_norm > 0 and math.isfinite(p.grad_norm)]
        if values and layer not in zero:
            relative[layer] = sum(values) / len(values)
    top = max(relative.values(), default=0.0)
    slow = [(layer, v) for layer, v in relative.items() if v < t.vanishing_gradient_ratio * top]
    if slow:
        listed = ", ".join(f"'{layer}' ({v:.2g})" for layer, v in slow)
        findings.append(Finding("vanishing gradient", ", ".join(n for n, _ in slow), (
            f"|grad| / |w| of {listed} is under {t.vanishing_gradient_ratio:g} x the largest "
            f"in the net ({top:.2g}), so {'it learns' if len(slow) == 1 else 'they learn'} "
            "far more slowly than the layers above; use ReLU, or xavier/msra fillers"),
            tuple(n for n, _ in slow)))
    # Gradient growth on the way back, per iteration: the rms of the gradient reaching the
    # first layer that gets one over that reaching the last (the one feeding the loss).
    # by_blob keeps backward order, so the first gradient listed is the one nearest the loss.
    grad_keys = [key for key in by_blob if key[2] == "gradient"]
    if len(grad_keys) >= 2:
        last, first = grad_keys[0], grad_keys[-1]
        top_rms = {r.iteration: r.rms for r in by_blob[last]}
        for r in by_blob[first]:
            base = top_rms.get(r.iteration, math.nan)
            if base > 0 and math.isfinite(r.rms) and r.rms > t.exploding_gradient_growth * base:
                findings.append(Finding("exploding gradient", first[0], (
                    f"at iteration {r.iteration} the gradient grows {r.rms / base:.3g}-fold on "
                    f"its way back, from rms {base:.3g} at '{last[0]}' to {r.rms:.3g} at "
                    f"'{first[0]}' (threshold {t.exploding_gradient_growth:g}x): "
                    + _cause(r.iteration)), (first[0],)))
                break
    big = []
    for layer in layers:
        steps = [(p.update_ratio, p.iteration) for p in weights
                 if p.layer == layer and math.isfinite(p.update_ratio)]
        if steps and max(steps)[0] > t.exploding_update_ratio:
            big.append((layer, *max(steps)))
    if big:
        listed = ", ".join(f"'{layer}' ({ratio:.3g} at iteration {it})"
                           for layer, ratio, it in big)
        findings.append(Finding("exploding gradient", ", ".join(n for n, _, _ in big), (
            f"single updates moved the weights by more than {t.exploding_update_ratio:g} of "
            f"their norm: {listed} (about 1e-3 is typical): lower base_lr, or shrink the "
            "gradient (see the other findings)"), tuple(n for n, _, _ in big)))
    # Activations far above the input's scale: the first layer where it happens.
    inputs = [_mean([r.rms for r in by_blob.get((layer, blob, "activation"), [])])
              for layer, blob in report.inputs]
    scale = next((v for v in inputs if math.isfinite(v) and v > 0), None)
    if scale is not None:
        worst = None
        for (_, _, kind), rows in by_blob.items():
            if kind != "activation":
                continue
            hit = next((r for r in rows if math.isfinite(r.rms)
                        and r.rms > t.exploding_activation_ratio * scale), None)
            if hit is not None and (worst is None or hit.iteration < worst.iteration):
                worst = hit
        if worst is not None:
            findings.append(Finding("exploding activations", worst.layer, (
                f"at iteration {worst.iteration} the output '{worst.blob}' of layer "
                f"'{worst.layer}' has rms {worst.rms:.3g}, more than "
                f"{t.exploding_activation_ratio:g} x the input data's ({scale:.3g}): "
                + _cause(worst.iteration)), (worst.layer,)))
    return findings


def _names(layers: list[str]) -> str:
    quoted = [f"'{layer}'" for layer in layers]
    return ("layer " if len(quoted) == 1 else "layers ") + ", ".join(quoted)


def _cause(iteration: int) -> str:
    if iteration == 0:
        return "the initial weights are too large (use xavier or msra fillers)"
    return (f"the weights grew too large during training (from iteration {iteration}): lower "
            "base_lr")


def findings_text(report: Report) -> str:
    t = report.thresholds
    lines = [f"pyforge diagnose {report.model}: {report.iterations} training iteration(s)",
             "loss by iteration: " + ", ".join(f"{v:.4g}" for v in report.losses), ""]
    if report.findings:
        lines.append(f"{len(report.findings)} finding(s):")
        lines += [f"- {f.kind}: {f.message}" for f in report.findings]
    else:
        lines.append("No problems found.")
    lines += ["", "Thresholds:"]
    lines += [f"  {name} = {value:g}" for name, value in asdict(t).items()]
    return "\n".join(lines) + "\n"


def log_findings(report: Report) -> None:
    logger = get_logger()
    for finding in report.findings:
        logger.warning("diagnose: %s: %s", finding.kind, finding.message)
    if not report.findings:
        logger.info("diagnose: no problems found in %d iteration(s)", report.iterations)
    for path in report.files:
        logger.info("diagnose: wrote %s", path)
