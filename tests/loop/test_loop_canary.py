"""platform_assets.ml.canary: stepping, waiting, promotion and rollback of a challenger."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from platform_assets.ml import live_quality
from platform_assets.ml.auc_comparison import compare_auc_unpaired
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
        (q(accuracy=0.60), None, "accuracy 0.6000 is 0.2200 below the champion's 0.8200 (allowed 0.0300), beyond it"),
        (q(), served(400, 20), "challenger server error rate 0.0500 > 0.0100 over 400 requests, and 0.0500 above"),
        (q(labelled=3), served(100, 50), "server error rate"),  # errors need no labelled sample
    ],
)
def test_canary_rolls_back_on_a_breach(challenger: dict[str, Any], health: Any, why: str) -> None:
    decision = canary_decision(50, q(), challenger, CanaryPolicy(), health, HEALTHY)
    assert (decision.action, decision.to_weight) == ("rollback", 0.0)
    assert why in decision.reasons[0]
    assert decision.measured["champion_requests"] == 5000


def test_a_quality_gap_within_noise_is_no_rollback_and_one_beyond_it_is() -> None:
    """Over 300 outcomes per version a gap of 0.07 in accuracy or in ROC AUC is within noise (the canary rolled
    identical models back on such gaps): it steps and says so. The same AUC gap with standard errors a tenth as
    large is beyond the allowed drop at 95 %: rollback."""
    noisy = canary_decision(10, q(roc_auc_se=0.03), q(accuracy=0.75, roc_auc=0.71, roc_auc_se=0.03), CanaryPolicy())
    assert (noisy.action, noisy.to_weight) == ("step", 50.0)
    assert "ROC AUC 0.7100 is 0.0700 below the champion's 0.7800 (allowed 0.0300) but within noise" in noisy.reasons[0]
    assert "the 95% interval of the gap [-0.0132, 0.1532] reaches the allowed drop" in noisy.reasons[0]
    assert "accuracy 0.7500 is 0.0700 below the champion's 0.8200 (allowed 0.0300) but within noise" in noisy.reasons[0]
    sure = canary_decision(10, q(roc_auc_se=0.003), q(roc_auc=0.71, roc_auc_se=0.003), CanaryPolicy())
    assert (sure.action, sure.to_weight) == ("rollback", 0.0)
    assert sure.reasons == [
        "challenger ROC AUC 0.7100 is 0.0700 below the champion's 0.7800 (allowed 0.0300), beyond it with the 95% "
        "interval of the gap [0.0617, 0.0783]"
    ]
    # The interval's confidence is the policy's: the same gap breaches at 95 % and not at 99.9999 %.
    champion, challenger = q(roc_auc_se=0.008), q(roc_auc=0.71, roc_auc_se=0.008)
    assert canary_decision(10, champion, challenger, CanaryPolicy()).action == "rollback"
    assert canary_decision(10, champion, challenger, CanaryPolicy(confidence=0.999999)).action == "step"


def test_the_auc_standard_errors_add_up_to_the_unpaired_delong_comparison() -> None:
    """``roc_auc_se`` of each version's sample is DeLong's; the canary's gap error is the unpaired comparison's."""
    rng = np.random.default_rng(5)
    samples = []
    for strength in (2.0, 1.0):
        labels = (rng.random(400) < 0.22).astype("int64")
        p = 1 / (1 + np.exp(-(strength * labels + rng.normal(size=400) - 1.3)))
        samples.append((labels, p))
    quality = [live_quality.quality(labels, p, p >= 0.5) for labels, p in samples]
    compared = compare_auc_unpaired(samples[0][0], samples[0][1], samples[1][0], samples[1][1])
    assert [round(m["roc_auc"], 10) for m in quality] == [
        round(compared.auc_champion, 10),
        round(compared.auc_challenger, 10),
    ]
    assert math.hypot(quality[0]["roc_auc_se"], quality[1]["roc_auc_se"]) == pytest.approx(compared.standard_error)
    assert live_quality.quality(np.array([0, 0, 1]), np.array([0.1, 0.2, 0.9]), np.zeros(3, bool))["roc_auc_se"] is None


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
    for confidence in (0.0, 1.0, 95.0):
        with pytest.raises(ValueError, match=rf"confidence must be within \(0, 1\), got {confidence}"):
            CanaryPolicy(confidence=confidence)


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
