"""The evidence a promotion gate judges, from scored applications: shadow pairs, past portfolios, canary traffic.

Two shapes of evidence, one report each:
- ``paired_evidence``: the same applications scored by champion and candidate (a shadow phase's pairs from the
  inference log, or two versions' ``portfolio_scores`` of past days). Swap set, approval-rate delta, the
  candidate's score PSI against the champion's scores of the same applicants with its window-size threshold,
  paired DeLong AUC difference on the labelled ones, disparate-impact ratios of both decision vectors.
- ``unpaired_evidence``: a canary, where each application went to one version. Unpaired DeLong on each
  version's labelled applications, each version's approval rate and ratios on its own traffic.
Either ends in ``promotion_stats.promotion_gate``'s verdict. Pure: frames in, a report out.

Frame columns (``PAIRED_COLUMNS`` of ``dataplane.portfolio_compare``; the inference log's pairs are renamed to
them): ``champion_probability``, ``champion_decision``, ``candidate_probability``, ``candidate_decision``,
``defaulted`` (nullable 0/1) and the protected columns ``sex``, ``education``, ``marriage``, ``age``.
Canary frames are inference-log rows: ``probability``, ``decision``, ``defaulted`` and the protected columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from platform_assets.core import slo
from platform_assets.ml import promotion_stats as stats

PAIRED_NEEDS = ("champion_probability", "champion_decision", "candidate_probability", "candidate_decision", "defaulted")
CANARY_NEEDS = ("probability", "decision", "defaulted")


@dataclass(frozen=True)
class PromotionEvidence:
    """What was measured and the gate's verdict on it; ``document`` is JSON-ready (no NaN: None instead)."""

    verdict: stats.GateVerdict
    document: dict[str, Any] = field(default_factory=dict)
    swap_table: str = ""


def from_shadow_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The inference log's shadow pairs (``read_shadow_pairs``) in the paired evidence's columns: the champion is
    the version that answered, the candidate the shadow."""
    return pairs.rename(
        columns={
            "served_probability": "champion_probability",
            "served_decision": "champion_decision",
            "shadow_probability": "candidate_probability",
            "shadow_decision": "candidate_decision",
        }
    )


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in (*columns, *stats.PROTECTED_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}")


def _declined(decisions: pd.Series, name: str) -> np.ndarray:
    """The inference log's ``approve``/``decline`` strings as booleans (True = declined); other values refused."""
    unknown = sorted(set(decisions.dropna().unique()) - {"approve", "decline"})
    if unknown or decisions.isna().any():
        raise ValueError(f"{name} must be 'approve' or 'decline', got {unknown or 'missing values'}")
    return stats.decision_vector((decisions == "decline").to_numpy(), name)


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["defaulted"].notna()]


def _both_classes(labels: pd.Series) -> bool:
    return bool(labels.nunique() == 2)


def _json(value: Any) -> Any:
    """NaN and inf as None, numpy scalars as Python ones, recursively: the document is strict JSON."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def paired_evidence(
    frame: pd.DataFrame,
    stage: stats.Stage,
    policy: slo.PromotionGate = slo.PROMOTION,
    *,
    bins: int = 10,
) -> PromotionEvidence:
    """Champion and candidate on the same applications (one row each): the swap set, score PSI, paired AUC
    comparison on the labelled rows and disparate impact of both, judged for ``stage``."""
    _require(frame, PAIRED_NEEDS, "the paired frame")
    if frame.empty:
        raise ValueError("no application was scored by both versions: nothing to compare")
    declined_a = _declined(frame["champion_decision"], "champion_decision")
    declined_b = _declined(frame["candidate_decision"], "candidate_decision")
    defaulted = frame["defaulted"].astype("float64").to_numpy()
    swaps = stats.swap_set(declined_a, declined_b, defaulted)
    labelled = _labelled(frame)
    auc = None
    if len(labelled) and _both_classes(labelled["defaulted"]):
        auc = stats.compare_auc_paired(
            labelled["defaulted"].astype("int64").to_numpy(),
            labelled["champion_probability"].to_numpy(dtype="float64"),
            labelled["candidate_probability"].to_numpy(dtype="float64"),
            confidence=policy.confidence,
        )
    champion_scores = frame["champion_probability"].to_numpy(dtype="float64")
    candidate_scores = frame["candidate_probability"].to_numpy(dtype="float64")
    score_psi = stats.psi(champion_scores, candidate_scores, bins)
    psi_threshold = stats.psi_alarm_threshold(len(frame), len(frame), bins)
    protected = frame[list(stats.PROTECTED_COLUMNS)]
    ratios_a = stats.disparate_impact_ratios(protected, declined_a)
    ratios_b = stats.disparate_impact_ratios(protected, declined_b)
    fairness = {a: (ratios_a[a], ratios_b[a]) for a in stats.PROTECTED_COLUMNS}
    verdict = stats.promotion_gate(
        stage,
        auc,
        len(labelled),
        swaps.approval_rate_champion,
        swaps.approval_rate_challenger,
        fairness,
        policy,
        predictions=len(frame),
    )
    document = {
        "kind": "paired",
        "applications": len(frame),
        "labelled": len(labelled),
        "label_coverage": len(labelled) / len(frame),
        "swap_set": swaps.as_dict(),
        "approval_rate_champion": swaps.approval_rate_champion,
        "approval_rate_candidate": swaps.approval_rate_challenger,
        "approval_rate_delta": swaps.approval_rate_delta,
        "score_psi": score_psi,
        "score_psi_threshold": psi_threshold,
        "score_psi_alarm": score_psi > psi_threshold,
        "auc": None if auc is None else auc.as_dict(),
        "fairness": {a: {"champion": c, "candidate": d} for a, (c, d) in fairness.items()},
        "gate": verdict.as_dict(),
    }
    return PromotionEvidence(verdict, _json(document), swaps.to_markdown())


def unpaired_evidence(
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    stage: stats.Stage = "canary_to_champion",
    policy: slo.PromotionGate = slo.PROMOTION,
) -> PromotionEvidence:
    """A canary's two populations (each application answered by one version): unpaired AUC comparison on each
    one's labelled rows, approval rates and disparate impact on each one's own traffic, judged for ``stage``.

    ``labelled`` for the gate is the smaller of the two labelled counts: each AUC needs its own sample."""
    _require(champion, CANARY_NEEDS, "the champion's rows")
    _require(challenger, CANARY_NEEDS, "the challenger's rows")
    if champion.empty or challenger.empty:
        raise ValueError(
            f"a canary needs rows of both versions (champion {len(champion)}, challenger {len(challenger)})"
        )
    declined = {
        role: _declined(rows["decision"], f"the {role}'s decision")
        for role, rows in (("champion", champion), ("challenger", challenger))
    }
    rates = {role: float(1.0 - d.mean()) for role, d in declined.items()}
    labelled_a, labelled_b = _labelled(champion), _labelled(challenger)
    auc = None
    if _both_classes(labelled_a["defaulted"]) and _both_classes(labelled_b["defaulted"]):
        auc = stats.compare_auc_unpaired(
            labelled_a["defaulted"].astype("int64").to_numpy(),
            labelled_a["probability"].to_numpy(dtype="float64"),
            labelled_b["defaulted"].astype("int64").to_numpy(),
            labelled_b["probability"].to_numpy(dtype="float64"),
            confidence=policy.confidence,
        )
    ratios = {
        role: stats.disparate_impact_ratios(rows[list(stats.PROTECTED_COLUMNS)], declined[role])
        for role, rows in (("champion", champion), ("challenger", challenger))
    }
    fairness = {a: (ratios["champion"][a], ratios["challenger"][a]) for a in stats.PROTECTED_COLUMNS}
    labelled = min(len(labelled_a), len(labelled_b))
    verdict = stats.promotion_gate(stage, auc, labelled, rates["champion"], rates["challenger"], fairness, policy)
    document = {
        "kind": "unpaired",
        "applications": {"champion": len(champion), "challenger": len(challenger)},
        "labelled": {"champion": len(labelled_a), "challenger": len(labelled_b)},
        "approval_rate_champion": rates["champion"],
        "approval_rate_candidate": rates["challenger"],
        "approval_rate_delta": rates["challenger"] - rates["champion"],
        "auc": None if auc is None else auc.as_dict(),
        "fairness": {a: {"champion": c, "candidate": d} for a, (c, d) in fairness.items()},
        "gate": verdict.as_dict(),
    }
    return PromotionEvidence(verdict, _json(document))
