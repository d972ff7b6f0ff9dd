"""platform_assets.ml.canary: stepping, waiting, promotion and rollback of a challenger."""

from __future__ import annotations

from typing import Any

import pytest

from platform_assets.ml.canary import CanaryPolicy, canary_decision, next_weight
from platform_assets.ml.service_metrics import ServedHealth

GOOD = {"labelled": 300, "accuracy": 0.82, "roc_auc": 0.78, "brier": 0.14}


def q(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def test_canary_steps_10_50_then_promotes() -> None:
    policy = CanaryPolicy()
    at_10 = canary_decision(10, q(), q(roc_auc=0.77), policy)
    assert (at_10.action, at_10.from_weight, at_10.to_weight) == ("step", 10.0, 50.0)
    at_50 = canary_decision(50, q(), q(), policy)
    assert (at_50.action, at_50.to_weight) == ("promote", 100.0)
    assert at_50.measured["challenger_labelled"] == 300
    # A weight already at 100 % (set by hand): the champion gets no traffic, so only the challenger counts.
    assert canary_decision(100, q(labelled=0), q(), policy).action == "promote"
    custom = CanaryPolicy(steps=(5.0, 25.0, 75.0))
    assert [next_weight(w, custom.steps) for w in (0, 5, 25, 75)] == [5.0, 25.0, 75.0, 100.0]


def test_canary_waits_for_both_samples() -> None:
    wait = canary_decision(10, q(labelled=150), q(labelled=20), CanaryPolicy())
    assert wait.action == "wait" and wait.to_weight == 10
    assert wait.reasons == [
        "challenger has 20 of 200 labelled outcomes",
        "champion has 150 of 200 labelled outcomes",
    ]


HEALTHY = ServedHealth(requests=5000, server_errors=0, p99_seconds=0.005)


def served(requests: int, errors: int, p99: float | None = 0.005) -> ServedHealth:
    return ServedHealth(requests, errors, p99)


@pytest.mark.parametrize(
    ("challenger", "health", "why"),
    [
        (q(roc_auc=0.70), None, "ROC AUC 0.7000 is 0.0800 below the champion's"),
        (q(accuracy=0.75), None, "accuracy 0.7500 is 0.0700 below the champion's"),
        (q(), served(400, 20), "challenger server error rate 0.0500 > 0.0100 over 400 requests, and 0.0500 above"),
        (q(labelled=3), served(100, 50), "server error rate"),  # errors need no labelled sample
    ],
)
def test_canary_rolls_back_on_a_breach(challenger: dict[str, Any], health: Any, why: str) -> None:
    decision = canary_decision(50, q(), challenger, CanaryPolicy(), health, HEALTHY)
    assert (decision.action, decision.to_weight) == ("rollback", 0.0)
    assert why in decision.reasons[0]
    assert decision.measured["champion_requests"] == 5000


def test_canary_ignores_error_rate_of_too_few_requests() -> None:
    assert canary_decision(10, q(), q(), CanaryPolicy(), served(3, 3), HEALTHY).action == "step"


def test_the_error_gate_compares_the_challenger_with_the_champion() -> None:
    policy = CanaryPolicy()
    # A service-wide incident (both roles fail alike) pauses the canary; it does not blame the challenger.
    incident = canary_decision(10, q(), q(), policy, served(400, 20), served(4000, 200))
    assert incident.action == "wait" and "service-wide incident" in incident.reasons[0]
    # Worse than the objective and more than the allowed excess over the champion: rolled back.
    worse = canary_decision(10, q(), q(), policy, served(400, 40), served(4000, 200))
    assert worse.action == "rollback" and "0.0500 above the champion's 0.0500" in worse.reasons[0]
    # Without a champion reference (no requests), the objective alone decides.
    alone = canary_decision(100, q(labelled=0), q(), policy, served(400, 20), None)
    assert alone.action == "rollback"


def test_canary_policy_validates_steps() -> None:
    for steps in ((), (50.0, 10.0), (10.0, 150.0), (0.0, 50.0)):
        with pytest.raises(ValueError, match="canary steps"):
            CanaryPolicy(steps=steps)


def test_a_slow_challenger_rolls_the_canary_back() -> None:
    quality = {"labelled": 500, "accuracy": 0.8, "roc_auc": 0.78, "brier": 0.15}
    policy = CanaryPolicy(max_p99_seconds=0.25, min_requests=20)
    slow = canary_decision(10.0, quality, quality, policy, served(100, 0, 1.0), served(1000, 0, 0.01))
    assert slow.action == "rollback" and "p99 1.000 s > 0.250 s" in slow.reasons[0]
    fine = canary_decision(10.0, quality, quality, policy, served(100, 0, 0.05), served(1000, 0, 0.01))
    assert fine.action != "rollback"
    # Both roles slow: the service is, not the challenger.
    both = canary_decision(10.0, quality, quality, policy, served(100, 0, 1.0), served(1000, 0, 2.5))
    assert both.action == "wait" and "as slow" in both.reasons[0]
