"""Live model quality from the inference log joined with outcomes, and the accuracy-drop test on it.

Pure functions (no Dagster, no I/O): the monitoring assets and sensors read the inference log with
``platform_assets.core.inference_log.reader.read_predictions`` and hand the frame here.

* ``live_performance``: per model version (and role) labelled count, accuracy, ROC AUC, Brier score,
  expected calibration error and per-group metrics by protected attribute; per decision (approve / decline)
  predictions, labelled outcomes and their coverage, and which decisions the labels cover.
* ``quality_breach``: whether the champion's live quality fell below an absolute floor and/or more than
  a margin below its validation metrics (the accuracy-drop sensor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from platform_assets.core import slo
from platform_assets.core.decisions import APPROVE, DECLINE
from platform_assets.core.observability import SHADOW_ROLE
from platform_assets.core.slo import DropMode
from platform_assets.ml import evaluate, fairness_metrics
from platform_assets.ml.auc_comparison import MIN_CLASS_COUNT, delong_covariance

#: Inference-log columns of the protected attributes and how their groups are labelled.
_GROUPS: dict[str, Any] = {
    "sex": fairness_metrics.SEX_LABELS,
    "education": fairness_metrics.EDUCATION_LABELS,
    "marriage": fairness_metrics.MARRIAGE_LABELS,
    "age": None,  # banded with fairness_metrics.DEFAULT_AGE_EDGES
}
ROLES = ("champion", "challenger")


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def quality(labels: np.ndarray, probabilities: np.ndarray, declined: np.ndarray) -> dict[str, Any]:
    """Metrics of labelled predictions; ``roc_auc`` is ``None`` unless both outcomes occur.

    ``accuracy`` counts a decline of a defaulter and an approval of a repayer as correct (the service's
    decision at the model's own threshold). ``roc_auc_se`` is the AUC's DeLong standard error on this sample (AUC
    points; ``None`` below ``MIN_CLASS_COUNT`` of either outcome): what comparing two samples' AUCs needs.
    """
    labels = np.asarray(labels, dtype="int64")
    probabilities = np.asarray(probabilities, dtype="float64")
    declined = np.asarray(declined, dtype=bool)
    n = len(labels)
    if n == 0:
        return {"labelled": 0, "accuracy": None, "roc_auc": None, "brier": None, "ece": None, "default_rate": None}
    both = bool(labels.min() == 0 and labels.max() == 1)
    auc = evaluate.classification_metrics(labels, probabilities, 0.5)["roc_auc"] if both else None
    standard_error = None
    if min(int(labels.sum()), n - int(labels.sum())) >= MIN_CLASS_COUNT:
        variance = float(delong_covariance(labels, probabilities.reshape(1, -1))[1][0, 0])
        standard_error = _finite(math.sqrt(max(variance, 0.0)))
    return {
        "labelled": n,
        "accuracy": float((declined == (labels == 1)).mean()),
        "roc_auc": _finite(auc) if auc is not None else None,
        "roc_auc_se": standard_error,
        "brier": float(np.mean((probabilities - labels) ** 2)),
        "ece": evaluate.expected_calibration_error(labels, probabilities),
        "default_rate": float(labels.mean()),
        "decline_rate": float(declined.mean()),
    }


def labelled_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of an inference-log frame that have an outcome (``defaulted``)."""
    return frame[frame["defaulted"].notna()] if "defaulted" in frame else frame.iloc[0:0]


def frame_quality(frame: pd.DataFrame) -> dict[str, Any]:
    """``quality`` of the labelled rows of an inference-log frame (``read_predictions`` columns)."""
    labelled = labelled_rows(frame)
    return quality(
        labelled["defaulted"].to_numpy(dtype="int64"),
        labelled["probability"].to_numpy(dtype="float64"),
        (labelled["decision"] == "decline").to_numpy(),
    )


def group_labels(
    frame: pd.DataFrame, column: str, age_edges: Sequence[int] = fairness_metrics.DEFAULT_AGE_EDGES
) -> pd.Series:
    """Readable group labels of a protected log column (ages banded by ``age_edges``); missing values stay
    missing."""
    values = frame[column]
    present = values.notna()
    out = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if not present.any():
        return out
    codes = values[present].astype("int64")
    if column == "age":
        out[present] = fairness_metrics.age_bands(codes.to_numpy(), age_edges)
    else:
        labels = _GROUPS[column]
        out[present] = [labels.get(int(c), f"code {int(c)}") for c in codes]
    return out


def group_metrics(frame: pd.DataFrame, min_group_size: int = 30) -> dict[str, dict[str, dict[str, Any]]]:
    """Per protected attribute present in the log: per group with at least ``min_group_size`` labelled
    rows, its ``quality``. Attributes that were never sent are left out."""
    labelled = labelled_rows(frame)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for column in _GROUPS:
        if column not in labelled or not labelled[column].notna().any():
            continue
        labels = group_labels(labelled, column)
        groups = {}
        for group in sorted(labels.dropna().unique(), key=str):
            rows = labelled[labels == group]
            if len(rows) >= min_group_size:
                groups[str(group)] = frame_quality(rows)
        out[column] = groups
    return out


#: What ``labels_cover`` says when outcomes exist for approved applications only (a lender's usual case).
APPROVED_ONLY = "approved_only"
#: Why realized metrics on approved-only outcomes are not those of every applicant.
APPROVED_ONLY_BIAS = (
    "outcomes cover approved applications only (a declined applicant gets no loan, so no outcome): accuracy and "
    "ROC AUC are those of the approved population, which the model itself selected, not of all applicants"
)


def coverage(predictions: int, labelled: int) -> float | None:
    """Share of ``predictions`` that have an outcome; ``None`` without predictions."""
    return labelled / predictions if predictions else None


def decision_coverage(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per decision in an inference-log frame: predictions, labelled outcomes and their coverage (a fraction)."""
    out: dict[str, dict[str, Any]] = {}
    for decision, rows in frame.groupby("decision", sort=True):
        n, labelled = len(rows), int(rows["defaulted"].notna().sum()) if "defaulted" in rows else 0
        out[str(decision)] = {"predictions": n, "labelled": labelled, "coverage": coverage(n, labelled)}
    return out


def labels_cover(decisions: Mapping[str, Mapping[str, Any]]) -> str:
    """Which decisions' outcomes the labels cover: ``none``, ``approved_only``, ``declined_only`` or
    ``all_decisions`` (from ``decision_coverage``)."""
    covered = {decision for decision, counts in decisions.items() if counts["labelled"]}
    if not covered:
        return "none"
    if covered == {APPROVE}:
        return APPROVED_ONLY
    if covered == {DECLINE}:
        return "declined_only"
    return "all_decisions"


def label_coverage(frame: pd.DataFrame) -> dict[str, Any]:
    """Coverage of an inference-log frame's rows: overall, per decision, what the labels cover, and the
    selection-bias note when they cover approved applications only."""
    decisions = decision_coverage(frame)
    cover = labels_cover(decisions)
    labelled = sum(counts["labelled"] for counts in decisions.values())
    return {
        "coverage": coverage(len(frame), labelled),
        "decisions": decisions,
        "labels_cover": cover,
        **({"bias": APPROVED_ONLY_BIAS} if cover == APPROVED_ONLY else {}),
    }


def live_performance(frame: pd.DataFrame, min_group_size: int = 30) -> dict[str, Any]:
    """Per model version: predictions, labelled outcomes and quality overall, per role and per group, and the
    labels' coverage per decision."""
    versions: dict[str, Any] = {}
    for version, rows in frame.groupby("model_version", sort=True):
        versions[str(version)] = {
            "predictions": len(rows),
            **frame_quality(rows),
            **label_coverage(rows),
            "roles": {
                str(role): {"predictions": len(part), **frame_quality(part)}
                for role, part in rows.groupby("role", sort=True)
            },
            "groups": group_metrics(rows, min_group_size),
        }
    # The totals count applications once: a shadow's rows score applications another version answered.
    answered = frame[frame["role"] != SHADOW_ROLE]
    labelled = labelled_rows(answered)
    return {
        "predictions": len(answered),
        "labelled": len(labelled),
        "coverage": coverage(len(answered), len(labelled)),
        "shadow_predictions": len(frame) - len(answered),
        "versions": versions,
    }


def cell(value: Any) -> str:
    """A Markdown table cell: ``-`` for a missing value, floats to 4 decimals."""
    return "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def versions_table(document: Mapping[str, Any]) -> str:
    """A Markdown table of ``live_performance``'s versions, then one of their labels' coverage per decision,
    for the UI."""
    lines = [
        "| version | roles | predictions | labelled | coverage | labels cover | accuracy | ROC AUC | Brier | ECE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for version, m in document["versions"].items():
        roles = ", ".join(m["roles"])
        lines.append(
            f"| {version} | {roles} | {m['predictions']} | {m['labelled']} | {cell(m['coverage'])} | "
            f"{m['labels_cover']} | {cell(m['accuracy'])} | {cell(m['roc_auc'])} | {cell(m['brier'])} | "
            f"{cell(m['ece'])} |"
        )
    lines += ["", "| version | decision | predictions | labelled | coverage |", "|---|---|---|---|---|"]
    for version, m in document["versions"].items():
        for decision, counts in m["decisions"].items():
            lines.append(
                f"| {version} | {decision} | {counts['predictions']} | {counts['labelled']} | "
                f"{cell(counts['coverage'])} |"
            )
    return "\n".join(lines)


# -- the accuracy-drop sensor's test ------------------------------------------------------------------
@dataclass(frozen=True)
class DropPolicy:
    """When the champion's live quality counts as dropped; defaults: ``core.slo.ACCURACY_DROP``.

    ``relative``: live ROC AUC more than ``max_auc_drop`` below the validation ROC AUC (or live accuracy
    more than ``max_accuracy_drop`` below validation accuracy); ``absolute``: live accuracy below
    ``accuracy_floor``; ``either``: both tests, one breach is enough. Accuracies and AUCs are fractions,
    ``min_labelled`` is rows. With ``use_estimate``, fewer than ``min_labelled`` outcomes and at least
    ``min_predictions_for_estimate`` predictions, the same tests run on the estimated metrics with the
    ``max_estimated_*`` margins (``estimate_breach``).
    """

    mode: DropMode = slo.ACCURACY_DROP.mode
    accuracy_floor: float = slo.ACCURACY_DROP.accuracy_floor
    max_auc_drop: float = slo.ACCURACY_DROP.max_auc_drop
    max_accuracy_drop: float = slo.ACCURACY_DROP.max_accuracy_drop
    min_labelled: int = slo.ACCURACY_DROP.min_labelled
    use_estimate: bool = slo.ACCURACY_DROP.use_estimate
    min_predictions_for_estimate: int = slo.ACCURACY_DROP.min_predictions_for_estimate
    max_estimated_auc_drop: float = slo.ACCURACY_DROP.max_estimated_auc_drop
    max_estimated_accuracy_drop: float = slo.ACCURACY_DROP.max_estimated_accuracy_drop

    def __post_init__(self) -> None:
        if self.mode not in ("relative", "absolute", "either"):
            raise ValueError(f"drop mode must be relative, absolute or either, got {self.mode!r}")
        if self.min_labelled < 1:
            raise ValueError(f"min_labelled must be at least 1, got {self.min_labelled}")
        if self.min_predictions_for_estimate < 1:
            raise ValueError(
                f"min_predictions_for_estimate must be at least 1, got {self.min_predictions_for_estimate}"
            )


def quality_breach(live: Mapping[str, Any], validation: Mapping[str, Any] | None, policy: DropPolicy) -> list[str]:
    """Why ``live`` quality (a ``quality`` dict) counts as dropped; empty when it holds.

    Raises ``ValueError`` when there are fewer than ``policy.min_labelled`` outcomes, or when a relative
    test needs validation metrics that are missing.
    """
    if live["labelled"] < policy.min_labelled:
        raise ValueError(f"only {live['labelled']} of the {policy.min_labelled} labelled outcomes needed")
    return _breaches("live", live, validation, policy, policy.max_auc_drop, policy.max_accuracy_drop)


def estimate_breach(
    estimated: Mapping[str, Any], validation: Mapping[str, Any] | None, policy: DropPolicy
) -> list[str]:
    """Why the ``estimated`` quality (``EstimatedPerformance.as_dict()``: ``roc_auc``, ``accuracy``, ``n``
    predictions) counts as dropped, by ``quality_breach``'s tests with the estimate's margins.

    Raises ``ValueError`` when it rests on fewer than ``policy.min_predictions_for_estimate`` predictions, or
    when a relative test needs validation metrics that are missing.
    """
    if estimated["n"] < policy.min_predictions_for_estimate:
        raise ValueError(
            f"only {estimated['n']} of the {policy.min_predictions_for_estimate} predictions an estimate needs"
        )
    return _breaches(
        "estimated",
        estimated,
        validation,
        policy,
        policy.max_estimated_auc_drop,
        policy.max_estimated_accuracy_drop,
    )


def _breaches(
    basis: str,
    measured: Mapping[str, Any],
    validation: Mapping[str, Any] | None,
    policy: DropPolicy,
    max_auc_drop: float,
    max_accuracy_drop: float,
) -> list[str]:
    reasons = []
    if policy.mode in ("absolute", "either") and measured["accuracy"] < policy.accuracy_floor:
        reasons.append(f"{basis} accuracy {measured['accuracy']:.4f} < floor {policy.accuracy_floor:.4f}")
    if policy.mode in ("relative", "either"):
        if not validation or "roc_auc" not in validation:
            raise ValueError("the model's validation metrics are missing from its record")
        auc = measured["roc_auc"]
        if auc is not None and auc < validation["roc_auc"] - max_auc_drop:
            reasons.append(
                f"{basis} ROC AUC {auc:.4f} is {validation['roc_auc'] - auc:.4f} below "
                f"validation {validation['roc_auc']:.4f} (allowed {max_auc_drop:.4f})"
            )
        accuracy = measured["accuracy"]
        if "accuracy" in validation and accuracy < validation["accuracy"] - max_accuracy_drop:
            reasons.append(
                f"{basis} accuracy {accuracy:.4f} is {validation['accuracy'] - accuracy:.4f} below "
                f"validation {validation['accuracy']:.4f} (allowed {max_accuracy_drop:.4f})"
            )
    return reasons
