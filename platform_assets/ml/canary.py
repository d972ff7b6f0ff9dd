"""The canary's policy and decision: wait, step, promote or roll back a challenger model version.

Pure functions (no Dagster, no I/O): the canary asset measures both versions' live quality since the current
step began (``live_quality.frame_quality``) and what each answered on ``/predict`` (``service_metrics``: the
request metrics carry the model version and role), and hands them here. The gates compare the challenger
with the champion: a challenger is blamed for 5xx or latency only when it is worse than the objective and
worse than the champion; when both are, the service has an incident and the canary waits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from platform_assets.core import slo
from platform_assets.ml.auc_comparison import z_score
from platform_assets.ml.service_metrics import ServedHealth

CanaryAction = Literal["wait", "step", "promote", "rollback"]


@dataclass(frozen=True)
class CanaryPolicy:
    """How a challenger's traffic grows; defaults: ``core.slo.CANARY``.

    Weights are percent and the step to 100 is the promotion; AUC and accuracy drops are differences of
    fractions, ``max_error_rate`` a ratio (``max_error_rate_excess`` ratio points over the champion's),
    ``max_p99_seconds`` seconds, ``min_labelled`` rows and ``min_requests`` requests.
    """

    steps: tuple[float, ...] = slo.CANARY.steps
    min_labelled: int = slo.CANARY.min_labelled
    max_auc_drop: float = slo.CANARY.max_auc_drop
    max_accuracy_drop: float = slo.CANARY.max_accuracy_drop
    max_error_rate: float = slo.CANARY.max_error_rate
    max_error_rate_excess: float = slo.CANARY.max_error_rate_excess
    max_p99_seconds: float = slo.CANARY.max_p99_seconds
    min_requests: int = slo.CANARY.min_requests
    #: Two-sided confidence of the interval of a quality gap (the promotion gate's): a rollback on quality needs
    #: the whole interval beyond the allowed drop.
    confidence: float = slo.PROMOTION.confidence

    def __post_init__(self) -> None:
        steps = list(self.steps)
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise ValueError(f"canary steps must be increasing percentages in (0, 100], got {steps}")
        if self.min_labelled < 1:
            raise ValueError(f"min_labelled must be at least 1, got {self.min_labelled}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be within (0, 1), got {self.confidence}")


@dataclass(frozen=True)
class CanaryDecision:
    action: CanaryAction
    from_weight: float
    to_weight: float
    reasons: list[str]
    measured: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def next_weight(weight: float, steps: Sequence[float]) -> float:
    """The first configured step above ``weight``; 100 (the promotion) after the last."""
    return next((float(s) for s in steps if s > weight + 1e-9), 100.0)


def _judge(
    metric: str, champion: float, challenger: float, se: float | None, z: float, allowed: float, confidence: float
) -> tuple[bool, str | None]:
    """Whether the challenger's ``metric`` is below the champion's by more than ``allowed`` beyond noise (the lower
    end of the gap's interval, ``gap - z * se``, over ``allowed``; without a standard error, the gap itself), and
    what to say: why it breaches, or why a gap over ``allowed`` is not one. None when the gap is within it."""
    gap = champion - challenger
    if gap <= allowed:
        return False, None
    said = (
        f"challenger {metric} {challenger:.4f} is {gap:.4f} below the champion's {champion:.4f} (allowed {allowed:.4f})"
    )
    if se is None or se == 0.0:
        return True, said
    low, high = gap - z * se, gap + z * se
    interval = f"the {confidence:.0%} interval of the gap [{low:.4f}, {high:.4f}]"
    if low > allowed:
        return True, f"{said}, beyond it with {interval}"
    return False, f"{said} but within noise: {interval} reaches the allowed drop"


def canary_decision(
    weight: float,
    champion: Mapping[str, Any],
    challenger: Mapping[str, Any],
    policy: CanaryPolicy,
    challenger_served: ServedHealth | None = None,
    champion_served: ServedHealth | None = None,
) -> CanaryDecision:
    """What to do with a challenger serving ``weight`` percent, given both versions' live ``quality`` over
    the same window (since the current step began) and what each answered on ``/predict`` (None: not
    measured, e.g. no service URL).

    Once the challenger answered ``policy.min_requests`` requests: rollback when its 5xx share is over
    ``max_error_rate`` and more than ``max_error_rate_excess`` over the champion's, or its p99 is over
    ``max_p99_seconds`` and over the champion's; wait when the champion breaches the same objective (a
    service-wide incident). Wait until both have ``policy.min_labelled`` outcomes (the champion only below 100 %,
    since at 100 % it gets no traffic). Then rollback when the challenger's ROC AUC or accuracy is below the
    champion's by more than the allowed drop beyond noise: the whole interval of the gap at ``policy.confidence``
    (independent samples: DeLong's standard errors of the two AUCs, ``roc_auc_se`` from ``live_quality.quality``,
    and the binomial ones of the accuracies) lies above the drop; a quality without a standard error is judged on
    its gap alone. Otherwise step to the next weight, where reaching 100 % is the promotion (which the promotion
    gate decides on paired evidence).
    """

    def served(health: ServedHealth | None, prefix: str) -> dict[str, Any]:
        if health is None:
            return {f"{prefix}_requests": 0, f"{prefix}_error_rate": None, f"{prefix}_p99_seconds": None}
        return {
            f"{prefix}_requests": health.requests,
            f"{prefix}_error_rate": health.error_rate,
            f"{prefix}_p99_seconds": health.p99_seconds,
        }

    measured = {
        "weight": weight,
        **served(challenger_served, "challenger"),
        **served(champion_served, "champion"),
        **{f"champion_{k}": champion.get(k) for k in ("labelled", "accuracy", "roc_auc", "brier")},
        **{f"challenger_{k}": challenger.get(k) for k in ("labelled", "accuracy", "roc_auc", "brier")},
    }

    def decide(action: CanaryAction, to: float, reasons: list[str]) -> CanaryDecision:
        return CanaryDecision(action, float(weight), float(to), reasons, measured)

    incident = []
    if challenger_served is not None and challenger_served.requests >= policy.min_requests:
        rate, p99 = challenger_served.error_rate or 0.0, challenger_served.p99_seconds
        reference = champion_served if champion_served is not None and champion_served.requests else None
        champion_rate = (reference.error_rate or 0.0) if reference else 0.0
        n = challenger_served.requests
        if rate > policy.max_error_rate:
            if rate > champion_rate + policy.max_error_rate_excess:
                return decide(
                    "rollback",
                    0.0,
                    [
                        f"challenger server error rate {rate:.4f} > {policy.max_error_rate:.4f} over {n} requests, "
                        f"and {rate - champion_rate:.4f} above the champion's {champion_rate:.4f}"
                    ],
                )
            incident.append(f"champion fails too ({champion_rate:.4f} server errors): a service-wide incident")
        if p99 is not None and p99 > policy.max_p99_seconds:
            champion_p99 = reference.p99_seconds if reference else None
            if champion_p99 is None or p99 > champion_p99:
                return decide(
                    "rollback",
                    0.0,
                    [
                        f"challenger /predict latency p99 {p99:.3f} s > {policy.max_p99_seconds:.3f} s over {n} "
                        f"requests (champion {'-' if champion_p99 is None else f'{champion_p99:.3f} s'})"
                    ],
                )
            incident.append(f"champion is as slow (p99 {champion_p99:.3f} s): a service-wide incident")
    if incident:
        return decide("wait", weight, incident)
    waiting = []
    if challenger["labelled"] < policy.min_labelled:
        waiting.append(f"challenger has {challenger['labelled']} of {policy.min_labelled} labelled outcomes")
    if weight < 100 and champion["labelled"] < policy.min_labelled:
        waiting.append(f"champion has {champion['labelled']} of {policy.min_labelled} labelled outcomes")
    if waiting:
        return decide("wait", weight, waiting)
    breaches: list[str] = []
    within_noise: list[str] = []
    if weight < 100:
        z = z_score(policy.confidence)
        judged = []
        if champion.get("roc_auc") is not None and challenger.get("roc_auc") is not None:
            errors = [e for e in (champion.get("roc_auc_se"), challenger.get("roc_auc_se")) if e is not None]
            # Each version answered other applicants: independent samples, the gap's variance is the sum.
            se = math.sqrt(sum(e**2 for e in errors)) if len(errors) == 2 else None
            judged.append(
                _judge(
                    "ROC AUC", champion["roc_auc"], challenger["roc_auc"], se, z, policy.max_auc_drop, policy.confidence
                )
            )
        pc, pn = champion["accuracy"], challenger["accuracy"]
        se = math.sqrt(pc * (1 - pc) / champion["labelled"] + pn * (1 - pn) / challenger["labelled"])
        judged.append(_judge("accuracy", pc, pn, se, z, policy.max_accuracy_drop, policy.confidence))
        for breach, reason in judged:
            if reason is not None:
                (breaches if breach else within_noise).append(reason)
    if breaches:
        return decide("rollback", 0.0, breaches)
    to = next_weight(weight, policy.steps)
    held = f"challenger held against the champion over {challenger['labelled']} labelled outcomes" + "".join(
        f"; {note}" for note in within_noise
    )
    if to >= 100.0:
        return decide("promote", 100.0, [held, "next step is 100 %: promote to champion"])
    return decide("step", to, [held])
