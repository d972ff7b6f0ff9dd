"""Group fairness of the model's decisions, computed with Fairlearn's ``MetricFrame``.

Decisions follow the model: ``score >= threshold`` flags an applicant as a likely defaulter (the
application is declined). Fairlearn's *selection rate* is therefore the share of a group that is
flagged (declined), and its ``demographic_parity_ratio`` compares those decline rates. The
*disparate impact ratio* of the four-fifths rule compares the favourable outcome, approval
(``1 - decision``), as US fair-lending practice does: it is ``demographic_parity_ratio`` on the
approvals (``min / max`` approval rate over groups) and passes the rule at ``>= 0.8``. Equal
opportunity and equalized odds use Fairlearn's definitions on the decisions (TPR = flagged share of
the actual defaulters, FPR = flagged share of those who repaid).

Groups smaller than ``min_group_size`` are listed with their count and ``status: "too_small"``
and every rate ``None``; they take no part in the summary gaps. Within a measured group, a rate
that is undefined (TPR/AUC without defaulters, FPR/AUC without repayers, precision with nothing
flagged) is ``None`` with a note, never a division by zero. A gap needs two measured groups; the
TPR/FPR gaps (equal opportunity, equalized odds) only use groups with at least ``min_outcome_count``
defaulters and as many repayers, since a rate over a dozen people is noise; otherwise ``None`` with
a note.

No Dagster here: the asset in ``defs/governance`` feeds this module the test split and scores;
``fairness_rendering`` turns the report into tables, a chart and a page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

ATTRIBUTES: Final = ("sex", "age_band", "marriage", "education")
DEFAULT_AGE_EDGES: Final = (25, 35, 45, 60)
DEFAULT_MIN_GROUP_SIZE: Final = 30
#: Defaulters and repayers a group needs before its TPR/FPR enter the equal-opportunity/odds gaps.
DEFAULT_MIN_OUTCOME_COUNT: Final = 30
#: The four-fifths rule: the lowest group approval rate must be at least 80 % of the highest.
FOUR_FIFTHS: Final = 0.8

SEX_LABELS: Final = {1: "male", 2: "female"}
EDUCATION_LABELS: Final = {
    0: "undocumented (0)",
    1: "graduate school",
    2: "university",
    3: "high school",
    4: "others",
    5: "unknown (5)",
    6: "unknown (6)",
}
MARRIAGE_LABELS: Final = {0: "undocumented (0)", 1: "married", 2: "single", 3: "others"}
GROUP_METRICS: Final = ("selection_rate", "approval_rate", "tpr", "fpr", "precision", "auc", "default_rate")
SUMMARY_METRICS: Final = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "disparate_impact_ratio",
    "equalized_odds_difference",
    "equal_opportunity_difference",
)


def age_band_labels(edges: Sequence[int]) -> list[str]:
    """``(25, 35, 45, 60)`` -> ``['<25', '25-34', '35-44', '45-59', '60+']``."""
    edges = [int(e) for e in edges]
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)) or edges[0] <= 0:
        raise ValueError(f"age band edges must be positive and strictly increasing, got {list(edges)}")
    labels = [f"<{edges[0]}"]
    labels += [f"{low}-{high - 1}" for low, high in zip(edges, edges[1:], strict=False)]
    return labels + [f"{edges[-1]}+"]


def age_bands(ages: np.ndarray, edges: Sequence[int] = DEFAULT_AGE_EDGES) -> np.ndarray:
    """Each age's band label; an age equal to an edge starts the next band (25 is in ``25-34``)."""
    labels = np.asarray(age_band_labels(edges), dtype=object)
    which = np.digitize(np.asarray(ages, dtype="float64"), np.asarray(edges, dtype="float64"), right=False)
    return np.asarray(labels[which], dtype=object)


def _coded(values: pd.Series, labels: Mapping[int, str]) -> np.ndarray:
    return np.asarray([labels.get(int(v), f"code {int(v)}") for v in values], dtype=object)


def protected_groups(frame: pd.DataFrame, age_edges: Sequence[int] = DEFAULT_AGE_EDGES) -> dict[str, np.ndarray]:
    """Readable group labels per protected attribute, from the raw SEX/AGE/MARRIAGE/EDUCATION columns."""
    missing = [c for c in ("SEX", "AGE", "MARRIAGE", "EDUCATION") if c not in frame.columns]
    if missing:
        raise ValueError(f"the rows lack the protected column(s) {missing} needed for the fairness report")
    return {
        "sex": _coded(frame["SEX"], SEX_LABELS),
        "age_band": age_bands(frame["AGE"].to_numpy(), age_edges),
        "marriage": _coded(frame["MARRIAGE"], MARRIAGE_LABELS),
        "education": _coded(frame["EDUCATION"], EDUCATION_LABELS),
    }


# -- per-group metrics: Fairlearn/sklearn functions, guarded so an undefined rate is NaN, not 0 -------
def _has_both(y_true: np.ndarray) -> bool:
    return bool(np.any(y_true == 1) and np.any(y_true == 0))


def _tpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from fairlearn.metrics import true_positive_rate

    return float(true_positive_rate(y_true, y_pred, pos_label=1)) if np.any(y_true == 1) else math.nan


def _fpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from fairlearn.metrics import false_positive_rate

    return float(false_positive_rate(y_true, y_pred, pos_label=1)) if np.any(y_true == 0) else math.nan


def _precision(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import precision_score

    return float(precision_score(y_true, y_pred, zero_division=0)) if np.any(y_pred == 1) else math.nan


def _auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y_true, y_score)) if _has_both(y_true) else math.nan


def _default_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true))


def _approval_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from fairlearn.metrics import selection_rate

    return 1.0 - float(selection_rate(y_true, y_pred, pos_label=1))


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _group_notes(count: int, y_true: np.ndarray, y_pred: np.ndarray, min_group_size: int) -> list[str]:
    if count < min_group_size:
        return [f"too small to measure: {count} rows < {min_group_size}"]
    notes = []
    if not np.any(y_true == 1):
        notes.append("no defaulters: TPR and AUC undefined")
    if not np.any(y_true == 0):
        notes.append("no repayers: FPR and AUC undefined")
    if not np.any(y_pred == 1):
        notes.append("nobody flagged: precision undefined")
    return notes


def _group_order(group: Any) -> tuple[float, str]:
    """Age bands in age order (``<25`` first, ``60+`` last); any other labels alphabetically."""
    label = str(group)
    if label.startswith("<"):
        return (-1.0, label)
    digits = label.split("-")[0].rstrip("+")
    return (float(digits), label) if digits.isdigit() else (math.inf, label)


def _guarded_gap(name: str, compute: Callable[[], float], notes: list[str]) -> float | None:
    value = _finite(compute())
    if value is None:
        notes.append(f"{name} undefined (a rate it divides by is 0)")
    return value


def rate_gap_interval(
    successes: np.ndarray, trials: np.ndarray, kind: str, draws: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """90 % interval of a between-group statistic of rates, by parametric bootstrap of each group's rate.

    ``kind`` is ``"difference"`` (max - min, e.g. the TPR gap) or ``"ratio"`` (min / max, e.g. disparate
    impact). Seeded, so the same report always gives the same interval; ``None`` when undefined.
    """
    rng = np.random.default_rng(seed)
    rates = rng.binomial(trials[None, :], successes[None, :] / trials[None, :], size=(draws, len(trials))) / trials
    high, low = rates.max(axis=1), rates.min(axis=1)
    if kind == "difference":
        statistic = high - low
    else:
        if np.any(high == 0):
            return None
        statistic = low / high
    lower, upper = np.quantile(statistic, [0.05, 0.95])
    return float(lower), float(upper)


def attribute_report(
    labels: np.ndarray,
    scores: np.ndarray,
    decisions: np.ndarray,
    groups: np.ndarray,
    attribute: str,
    min_group_size: int,
    min_outcome_count: int = 1,
) -> dict[str, Any]:
    """Per-group rates and the summary gaps for one protected attribute."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        demographic_parity_ratio,
        equal_opportunity_difference,
        equalized_odds_difference,
        selection_rate,
    )

    sensitive = pd.Series(groups, name=attribute)
    by_decision = MetricFrame(
        metrics={
            "count": count,
            "selection_rate": selection_rate,
            "approval_rate": _approval_rate,
            "tpr": _tpr,
            "fpr": _fpr,
            "precision": _precision,
            "default_rate": _default_rate,
        },
        y_true=labels,
        y_pred=decisions,
        sensitive_features=sensitive,
    ).by_group
    by_score = MetricFrame(metrics={"auc": _auc}, y_true=labels, y_pred=scores, sensitive_features=sensitive).by_group

    rows, measured, outcome_measured = [], [], []
    for group in sorted(by_decision.index, key=_group_order):
        member = groups == group
        n = int(by_decision.loc[group, "count"])
        notes = _group_notes(n, labels[member], decisions[member], min_group_size)
        row: dict[str, Any] = {"group": str(group), "count": n, "status": "ok", "notes": notes}
        if n < min_group_size:
            row["status"] = "too_small"
            row.update({metric: None for metric in GROUP_METRICS})
        else:
            measured.append(group)
            positives = int(labels[member].sum())
            negatives = n - positives
            # A TPR over a dozen defaulters is noise, not a measurement: such groups stay in the table
            # but do not enter the outcome-conditioned gaps.
            if min(positives, negatives) >= min_outcome_count:
                outcome_measured.append(group)
            elif positives and negatives:
                notes.append(
                    f"too few defaulters ({positives}) or repayers ({negatives}) for TPR/FPR gaps "
                    f"(each needs >= {min_outcome_count})"
                )
            values = {**by_decision.loc[group].to_dict(), "auc": by_score.loc[group, "auc"]}
            row.update({metric: _finite(values[metric]) for metric in GROUP_METRICS})
        rows.append(row)

    summary_notes: list[str] = []
    summary: dict[str, Any] = {metric: None for metric in SUMMARY_METRICS}
    if len(measured) >= 2:
        mask = np.isin(groups, measured)
        y, d, s = labels[mask], decisions[mask], groups[mask]
        summary["demographic_parity_difference"] = _finite(demographic_parity_difference(y, d, sensitive_features=s))
        # A ratio of rates divides by the largest rate: when every measured group has rate 0 it is undefined.
        summary["demographic_parity_ratio"] = _guarded_gap(
            "demographic_parity_ratio",
            lambda: demographic_parity_ratio(y, d, sensitive_features=s) if d.any() else math.nan,
            summary_notes,
        )
        approved = 1 - d
        summary["disparate_impact_ratio"] = _guarded_gap(
            "disparate_impact_ratio",
            lambda: demographic_parity_ratio(y, approved, sensitive_features=s) if approved.any() else math.nan,
            summary_notes,
        )
    else:
        summary_notes.append(
            f"demographic parity not measurable: {len(measured)} group(s) with >= {min_group_size} rows"
        )
    if len(outcome_measured) >= 2:
        mask = np.isin(groups, outcome_measured)
        y, d, s = labels[mask], decisions[mask], groups[mask]
        summary["equalized_odds_difference"] = _finite(equalized_odds_difference(y, d, sensitive_features=s))
        summary["equal_opportunity_difference"] = _finite(equal_opportunity_difference(y, d, sensitive_features=s))
    else:
        summary_notes.append(
            f"equalized odds / equal opportunity not measurable: {len(outcome_measured)} group(s) with "
            f">= {min_outcome_count} defaulters and >= {min_outcome_count} repayers"
        )
    # Sampling uncertainty of the gaps, so a gate can tell a real disparity from a small test set's noise.
    summary["disparate_impact_ratio_interval"] = None
    summary["equal_opportunity_difference_interval"] = None
    if len(measured) >= 2 and summary["disparate_impact_ratio"] is not None:
        counts = np.array([int((groups == g).sum()) for g in measured])
        approved = np.array([int(((groups == g) & (decisions == 0)).sum()) for g in measured])
        summary["disparate_impact_ratio_interval"] = rate_gap_interval(approved, counts, "ratio")
    if len(outcome_measured) >= 2 and summary["equal_opportunity_difference"] is not None:
        defaulters = np.array([int(((groups == g) & (labels == 1)).sum()) for g in outcome_measured])
        caught = np.array([int(((groups == g) & (labels == 1) & (decisions == 1)).sum()) for g in outcome_measured])
        summary["equal_opportunity_difference_interval"] = rate_gap_interval(caught, defaulters, "difference")
    ratio = summary["disparate_impact_ratio"]
    summary["four_fifths_rule_passed"] = None if ratio is None else bool(ratio >= FOUR_FIFTHS)
    summary["groups_measured"] = [str(g) for g in measured]
    summary["groups_too_small"] = [r["group"] for r in rows if r["status"] == "too_small"]
    summary["notes"] = summary_notes
    return {"groups": rows, "summary": summary}


def fairness_report(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    groups: Mapping[str, np.ndarray],
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    min_outcome_count: int = DEFAULT_MIN_OUTCOME_COUNT,
) -> dict[str, Any]:
    """The JSON-able report: per attribute, per-group rates and summary gaps (see the module docstring)."""
    labels = np.asarray(labels, dtype="int64")
    scores = np.asarray(scores, dtype="float64")
    if len(labels) == 0:
        raise ValueError("no rows to assess: the test split is empty")
    if len(scores) != len(labels) or any(len(g) != len(labels) for g in groups.values()):
        raise ValueError(
            f"labels ({len(labels)}), scores ({len(scores)}) and every group column must have the same length"
        )
    if min_group_size < 1:
        raise ValueError(f"min_group_size must be at least 1, got {min_group_size}")
    decisions = (scores >= threshold).astype("int64")
    return {
        "threshold": float(threshold),
        "min_group_size": int(min_group_size),
        "min_outcome_count": int(min_outcome_count),
        "rows": len(labels),
        "flagged_share": float(decisions.mean()),
        "decision": "flagged (declined) when score >= threshold; selection_rate is the flagged share",
        "attributes": {
            name: attribute_report(
                labels, scores, decisions, np.asarray(values, dtype=object), name, min_group_size, min_outcome_count
            )
            for name, values in groups.items()
        },
    }


def flat_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """``fairness_<attribute>_<gap>`` for every measured gap (for MLflow and numeric metadata)."""
    return {
        f"fairness_{name}_{metric}": float(value)
        for name, attribute in report["attributes"].items()
        for metric, value in attribute["summary"].items()
        if metric in SUMMARY_METRICS and value is not None
    }
