"""platform_assets.ml.canary: stepping, waiting, promotion and rollback of a challenger."""

from __future__ import annotations

from typing import Any

import pytest

from platform_assets.ml.canary import CanaryPolicy, canary_decision, next_weight

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


@pytest.mark.parametrize(
    ("challenger", "error_rate", "requests", "why"),
    [
        (q(roc_auc=0.70), None, 0, "ROC AUC 0.7000 is 0.0800 below the champion's"),
        (q(accuracy=0.75), None, 0, "accuracy 0.7500 is 0.0700 below the champion's"),
        (q(), 0.05, 400, "server error rate 0.0500 > 0.0100 over 400"),
        (q(labelled=3), 0.5, 100, "server error rate"),  # errors need no labelled sample
    ],
)
def test_canary_rolls_back_on_a_breach(challenger: dict[str, Any], error_rate: Any, requests: int, why: str) -> None:
    decision = canary_decision(50, q(), challenger, CanaryPolicy(), error_rate, requests)
    assert (decision.action, decision.to_weight) == ("rollback", 0.0)
    assert why in decision.reasons[0]


def test_canary_ignores_error_rate_of_too_few_requests() -> None:
    assert canary_decision(10, q(), q(), CanaryPolicy(), error_rate=1.0, requests=3).action == "step"


def test_canary_policy_validates_steps() -> None:
    for steps in ((), (50.0, 10.0), (10.0, 150.0), (0.0, 50.0)):
        with pytest.raises(ValueError, match="canary steps"):
            CanaryPolicy(steps=steps)


def test_a_slow_step_rolls_the_canary_back() -> None:
    quality = {"labelled": 500, "accuracy": 0.8, "roc_auc": 0.78, "brier": 0.15}
    policy = CanaryPolicy(max_p99_seconds=0.25, min_requests=20)
    slow = canary_decision(10.0, quality, quality, policy, error_rate=0.0, requests=100, p99_seconds=1.0)
    assert slow.action == "rollback" and "p99" in slow.reasons[0]
    fine = canary_decision(10.0, quality, quality, policy, error_rate=0.0, requests=100, p99_seconds=0.05)
    assert fine.action != "rollback"
