"""The statistics of a regulated promotion: is the challenger no worse than the champion, whom does it decide
differently, is its population stable, and may it go on (``promotion_gate``, thresholds ``core.slo.PROMOTION``).

The AUC comparison (DeLong, paired or unpaired) lives in ``auc_comparison``, the PSI/CSI in
``population_stability`` and the swap set in ``swap_set``; all are re-exported here, so callers import one
module. Decisions are booleans per application, ``True`` = declined (the inference log's
``decision == "decline"``). Rates are fractions in [0, 1]; AUC differences and margins are AUC points.

The gate never passes on noise: the AUC must be shown non-inferior by its confidence interval, not by its point
estimate, and every number it used is in the verdict's ``inputs``. Pure functions: no Dagster, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from platform_assets.core import slo
from platform_assets.core.inference_log.schema import PROTECTED_LOG_COLUMNS
from platform_assets.ml import fairness_metrics, live_quality
from platform_assets.ml.auc_comparison import AucComparison, AucMethod, compare_auc_paired, compare_auc_unpaired
from platform_assets.ml.population_stability import PSI_EPSILON, csi, psi, psi_alarm_threshold
from platform_assets.ml.swap_set import SwapCell, SwapSet, decision_vector, swap_set

__all__ = [
    "PSI_EPSILON",
    "PROTECTED_COLUMNS",
    "AucComparison",
    "AucMethod",
    "GateVerdict",
    "NonInferiority",
    "SwapCell",
    "SwapSet",
    "compare_auc_paired",
    "compare_auc_unpaired",
    "csi",
    "decision_vector",
    "disparate_impact_ratios",
    "non_inferiority",
    "promotion_gate",
    "psi",
    "psi_alarm_threshold",
    "swap_set",
]

Stage = Literal["shadow_to_canary", "canary_to_champion"]
Verdict = Literal["pass", "hold", "fail"]
STAGES: Final = ("shadow_to_canary", "canary_to_champion")
#: The inference log's protected columns, as the service stores them.
PROTECTED_COLUMNS: Final = tuple(PROTECTED_LOG_COLUMNS.values())


# -- fairness of a decision vector -------------------------------------------------------------------------------
def disparate_impact_ratios(
    protected: pd.DataFrame,
    declined: Any,
    min_group_size: int = fairness_metrics.DEFAULT_MIN_GROUP_SIZE,
    age_edges: Sequence[int] = fairness_metrics.DEFAULT_AGE_EDGES,
) -> dict[str, float | None]:
    """Per protected inference-log column (``sex``, ``education``, ``marriage``, ``age``), the lowest group
    approval rate / the highest (the fairness report's ``disparate_impact_ratio``, Fairlearn's
    ``demographic_parity_ratio`` of the approvals) of one decision vector.

    ``protected`` holds those nullable columns, one row per decision; groups are labelled as in the fairness
    report (age in years, banded by ``age_edges``). Each attribute is measured on the rows that carry it, over
    groups of at least ``min_group_size`` rows; ``None`` with fewer than two such groups or no approval at all.
    """
    from fairlearn.metrics import demographic_parity_ratio

    decisions = decision_vector(declined, "declined")
    missing = [c for c in PROTECTED_COLUMNS if c not in protected.columns]
    if missing:
        raise ValueError(f"protected lacks the inference-log column(s) {missing}")
    if len(protected) != len(decisions):
        raise ValueError(f"protected has {len(protected)} rows but declined has {len(decisions)}")
    approved = (~decisions).astype("int64")
    ratios: dict[str, float | None] = {}
    for column in PROTECTED_COLUMNS:
        labels = live_quality.group_labels(protected, column, age_edges).to_numpy()
        names, counts = np.unique(labels[pd.notna(labels)].astype(str), return_counts=True)
        measured = np.isin(labels.astype(str), names[counts >= min_group_size]) & pd.notna(labels)
        if int((counts >= min_group_size).sum()) < 2 or not approved[measured].any():
            ratios[column] = None
            continue
        ratio = demographic_parity_ratio(approved[measured], approved[measured], sensitive_features=labels[measured])
        ratios[column] = float(ratio)
    return ratios


# -- the gate ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NonInferiority:
    """Whether the interval of the AUC difference (challenger - champion, AUC points) excludes a loss beyond
    ``margin``: ``non_inferior`` when ``ci_low > -margin``, ``inferior`` when ``ci_high < -margin``."""

    margin: float
    ci_low: float
    ci_high: float
    confidence: float
    conclusion: Literal["non_inferior", "inferior", "inconclusive"]


def non_inferiority(auc: AucComparison, margin: float) -> NonInferiority:
    """The non-inferiority reading of ``auc``'s interval for a ``margin`` in AUC points (>= 0)."""
    if not margin >= 0.0:
        raise ValueError(f"the AUC margin must be >= 0 AUC points, got {margin}")
    if auc.ci_low > -margin:
        conclusion: Literal["non_inferior", "inferior", "inconclusive"] = "non_inferior"
    elif auc.ci_high < -margin:
        conclusion = "inferior"
    else:
        conclusion = "inconclusive"
    return NonInferiority(margin, auc.ci_low, auc.ci_high, auc.confidence, conclusion)


@dataclass(frozen=True)
class GateVerdict:
    """``pass``, ``hold`` (wait for more evidence) or ``fail``; ``reasons`` are the sentences behind the verdict
    (the failures of a fail, the open points of a hold, every check of a pass); ``inputs`` every number used."""

    stage: Stage
    verdict: Verdict
    reasons: tuple[str, ...]
    inputs: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")
    return float(value)


def _auc_finding(auc: AucComparison | None, labelled: int, policy: slo.PromotionGate) -> tuple[Verdict, str]:
    if labelled < policy.min_labelled:
        return "hold", f"insufficient sample ({labelled} of {policy.min_labelled})"
    if auc is None:
        return "hold", f"ROC AUC not comparable on {labelled} labels (one outcome class only)"
    reading = non_inferiority(auc, policy.auc_margin)
    interval = (
        f"{auc.confidence:.0%} interval of the AUC difference [{auc.ci_low:+.4f}, {auc.ci_high:+.4f}] "
        f"(challenger {auc.auc_challenger:.4f} - champion {auc.auc_champion:.4f} = {auc.difference:+.4f})"
    )
    if reading.conclusion == "non_inferior":
        return "pass", f"challenger ROC AUC non-inferior: {interval} lies above -{policy.auc_margin}"
    if reading.conclusion == "inferior":
        return "fail", f"challenger ROC AUC worse beyond the {policy.auc_margin} margin: {interval}"
    if labelled >= policy.max_labelled_inconclusive:
        return (
            "fail",
            f"no evidence of non-inferiority after {labelled} labels: {interval} contains -{policy.auc_margin}",
        )
    return "hold", f"ROC AUC comparison inconclusive on {labelled} labels: {interval} contains -{policy.auc_margin}"


def _fairness_findings(
    fairness: Mapping[str, tuple[float | None, float | None]], policy: slo.PromotionGate
) -> list[tuple[Verdict, str]]:
    if not fairness:
        return [("hold", "no disparate-impact ratios given: fairness not assessed")]
    findings: list[tuple[Verdict, str]] = []
    for attribute, (champion, challenger) in fairness.items():
        if champion is None or challenger is None:
            findings.append(("hold", f"disparate impact by {attribute} not measurable for both versions"))
            continue
        pair = f"{attribute}: challenger {challenger:.3f}, champion {champion:.3f}"
        if challenger < policy.min_disparate_impact <= champion:
            findings.append(
                ("fail", f"disparate impact by {pair}: the challenger alone is below {policy.min_disparate_impact}")
            )
        elif challenger < champion - policy.max_disparate_impact_drop:
            findings.append(
                ("fail", f"disparate impact by {pair}: a fall of more than {policy.max_disparate_impact_drop}")
            )
        else:
            findings.append(("pass", f"disparate impact by {pair}"))
    return findings


def promotion_gate(
    stage: Stage,
    auc: AucComparison | None,
    labelled: int,
    approval_rate_champion: float,
    approval_rate_challenger: float,
    fairness: Mapping[str, tuple[float | None, float | None]],
    policy: slo.PromotionGate = slo.PROMOTION,
    predictions: int | None = None,
) -> GateVerdict:
    """May the challenger move on from ``stage``? A fail anywhere fails; otherwise an open point holds.

    ``auc``: the comparison on the ``labelled`` outcomes (None when it could not be computed); approval rates are
    fractions measured on the same applications; ``fairness`` maps a protected attribute to (champion,
    challenger) disparate-impact ratios (``disparate_impact_ratios``); ``predictions``: in shadow, the
    applications both versions scored (held below ``policy.shadow_min_predictions``).
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if labelled < 0:
        raise ValueError(f"labelled must be a count of applicants >= 0, got {labelled}")
    if auc is not None and not math.isclose(auc.confidence, policy.confidence):
        raise ValueError(
            f"the AUC interval is at {auc.confidence:.0%} confidence but the policy requires {policy.confidence:.0%}"
        )
    champion_rate = _rate(approval_rate_champion, "approval_rate_champion")
    challenger_rate = _rate(approval_rate_challenger, "approval_rate_challenger")
    findings = [_auc_finding(auc, labelled, policy)]
    if stage == "shadow_to_canary" and predictions is not None and predictions < policy.shadow_min_predictions:
        findings.append(("hold", f"insufficient shadow predictions ({predictions} of {policy.shadow_min_predictions})"))
    change = challenger_rate - champion_rate
    rates = f"champion {champion_rate:.1%} -> challenger {challenger_rate:.1%}, {100 * change:+.1f} points"
    if abs(change) > policy.max_approval_rate_change:
        findings.append(
            ("fail", f"approval rate changes too much ({rates}; limit {100 * policy.max_approval_rate_change:.1f})")
        )
    else:
        findings.append(("pass", f"approval rate {rates}"))
    findings += _fairness_findings(fairness, policy)
    verdict: Verdict = next((v for v in ("fail", "hold") if any(level == v for level, _ in findings)), "pass")
    inputs: dict[str, Any] = {
        "stage": stage,
        "labelled": labelled,
        "predictions": predictions,
        "auc": None if auc is None else auc.as_dict(),
        "approval_rate_champion": champion_rate,
        "approval_rate_challenger": challenger_rate,
        "approval_rate_change": change,
        "fairness": {a: {"champion": c, "challenger": d} for a, (c, d) in fairness.items()},
        "policy": asdict(policy),
        "checks": [{"level": level, "reason": reason} for level, reason in findings],
    }
    return GateVerdict(stage, verdict, tuple(r for level, r in findings if level == verdict), inputs)
