"""The canary's policy and decision: wait, step, promote or roll back a challenger at a traffic weight.

Pure functions (no Dagster, no I/O): the canary asset measures both versions' live quality
(``live_quality.frame_quality``) and the service's 5xx share and latency (``service_metrics``) since the
current step began, and hands them here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from platform_assets.core import slo

CanaryAction = Literal["wait", "step", "promote", "rollback"]


@dataclass(frozen=True)
class CanaryPolicy:
    """How a challenger's traffic grows; defaults: ``core.slo.CANARY``.

    Weights are percent and the step to 100 is the promotion; AUC and accuracy drops are differences of
    fractions, ``max_error_rate`` a ratio, ``max_p99_seconds`` seconds, ``min_labelled`` rows and
    ``min_requests`` requests.
    """

    steps: tuple[float, ...] = slo.CANARY.steps
    min_labelled: int = slo.CANARY.min_labelled
    max_auc_drop: float = slo.CANARY.max_auc_drop
    max_accuracy_drop: float = slo.CANARY.max_accuracy_drop
    max_error_rate: float = slo.CANARY.max_error_rate
    max_p99_seconds: float = slo.CANARY.max_p99_seconds
    min_requests: int = slo.CANARY.min_requests

    def __post_init__(self) -> None:
        steps = list(self.steps)
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise ValueError(f"canary steps must be increasing percentages in (0, 100], got {steps}")
        if self.min_labelled < 1:
            raise ValueError(f"min_labelled must be at least 1, got {self.min_labelled}")


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


def canary_decision(
    weight: float,
    champion: Mapping[str, Any],
    challenger: Mapping[str, Any],
    policy: CanaryPolicy,
    error_rate: float | None = None,
    requests: int = 0,
    p99_seconds: float | None = None,
) -> CanaryDecision:
    """What to do with a challenger serving ``weight`` percent, given both versions' live ``quality`` over
    the same window (since the current step began) and the service's 5xx share over ``requests``.

    Rollback on an error-rate breach (once ``policy.min_requests`` requests were seen) or on quality more
    than the allowed margin below the champion's; wait until both have ``policy.min_labelled`` outcomes
    (the champion only below 100 %, since at 100 % it gets no traffic); otherwise step to the next weight,
    where reaching 100 % is the promotion.
    """
    measured = {
        "weight": weight,
        "error_rate": error_rate,
        "p99_seconds": p99_seconds,
        "requests": requests,
        **{f"champion_{k}": champion.get(k) for k in ("labelled", "accuracy", "roc_auc", "brier")},
        **{f"challenger_{k}": challenger.get(k) for k in ("labelled", "accuracy", "roc_auc", "brier")},
    }

    def decide(action: CanaryAction, to: float, reasons: list[str]) -> CanaryDecision:
        return CanaryDecision(action, float(weight), float(to), reasons, measured)

    if error_rate is not None and requests >= policy.min_requests and error_rate > policy.max_error_rate:
        return decide(
            "rollback", 0.0, [f"server error rate {error_rate:.4f} > {policy.max_error_rate:.4f} over {requests}"]
        )
    if p99_seconds is not None and requests >= policy.min_requests and p99_seconds > policy.max_p99_seconds:
        return decide(
            "rollback",
            0.0,
            [f"/predict latency p99 {p99_seconds:.3f} s > {policy.max_p99_seconds:.3f} s over {requests} requests"],
        )
    waiting = []
    if challenger["labelled"] < policy.min_labelled:
        waiting.append(f"challenger has {challenger['labelled']} of {policy.min_labelled} labelled outcomes")
    if weight < 100 and champion["labelled"] < policy.min_labelled:
        waiting.append(f"champion has {champion['labelled']} of {policy.min_labelled} labelled outcomes")
    if waiting:
        return decide("wait", weight, waiting)
    breaches = []
    if weight < 100:
        if champion.get("roc_auc") is not None and challenger.get("roc_auc") is not None:
            gap = champion["roc_auc"] - challenger["roc_auc"]
            if gap > policy.max_auc_drop:
                breaches.append(
                    f"challenger ROC AUC {challenger['roc_auc']:.4f} is {gap:.4f} below the champion's "
                    f"{champion['roc_auc']:.4f} (allowed {policy.max_auc_drop:.4f})"
                )
        gap = champion["accuracy"] - challenger["accuracy"]
        if gap > policy.max_accuracy_drop:
            breaches.append(
                f"challenger accuracy {challenger['accuracy']:.4f} is {gap:.4f} below the champion's "
                f"{champion['accuracy']:.4f} (allowed {policy.max_accuracy_drop:.4f})"
            )
    if breaches:
        return decide("rollback", 0.0, breaches)
    to = next_weight(weight, policy.steps)
    held = f"challenger held against the champion over {challenger['labelled']} labelled outcomes"
    if to >= 100.0:
        return decide("promote", 100.0, [held, "next step is 100 %: promote to champion"])
    return decide("step", to, [held])
