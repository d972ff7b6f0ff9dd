"""Quality estimated before outcomes arrive, beside the realized quality, and the stability of the score and of the
inputs against the model's reference: the pure part of the ``estimated_performance`` asset (no Dagster, no I/O).

* **Estimate**: ``performance_estimation.estimate_performance`` on the logged probabilities at each row's
  threshold. The served output is the calibrated probability of default (the calibration is built into the
  model, ``core.model_version.Calibration``), so each row's probability is its expected outcome. That holds
  while the calibration holds: the estimate follows covariate shift (another mix of applicants), not concept
  drift (the same applicant defaulting more often); only outcomes show that.
* **Realized**: ``live_quality``'s metrics on whatever outcomes exist, with their coverage per decision, and
  the estimate on exactly those labelled rows beside them (the like-for-like check of the estimate: outcomes
  of approved applications only describe the approved population).
* **Stability**: PSI of the score and CSI of each input against the version's reference, the drift report's
  (a seeded sample of its training split, scored by its model). Each alarm threshold depends on both sample
  sizes (``promotion_stats.psi_alarm_threshold``): what sampling noise alone stays under.

The log keeps an application's raw fields (``inputs``) only for explained rows: every decline, approvals only
when the caller asked for reasons. So the CSI compares the **declined** rows' inputs with the reference rows the
same version declines (score at or above its threshold): one selection on both sides. Approvals' inputs are
not compared (the explained ones are those whose callers asked, not a sample of approvals).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from platform_assets.core import slo
from platform_assets.core.decisions import DECLINE
from platform_assets.ml import live_quality, performance_estimation, population_stability, promotion_stats, schema

#: The raw application fields the log keeps for an explained row, and the columns the CSI compares.
INPUT_COLUMNS = schema.FEATURE_COLUMNS


@dataclass(frozen=True)
class StabilityReference:
    """What a version's window is compared with: ``scores`` (calibrated probabilities of default) of the reference
    rows, their raw ``inputs`` (``INPUT_COLUMNS``, row-aligned with ``scores``), the version's decision
    ``threshold`` and a sentence saying which rows these are."""

    scores: np.ndarray
    inputs: pd.DataFrame
    threshold: float
    description: str

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.inputs):
            raise ValueError(f"{len(self.scores)} reference scores but {len(self.inputs)} rows of inputs")
        missing = [c for c in INPUT_COLUMNS if c not in self.inputs.columns]
        if missing:
            raise ValueError(f"the reference rows lack the input column(s) {missing}")
        if len(self.scores) == 0:
            raise ValueError("the reference has no rows")


@dataclass(frozen=True)
class StabilityPolicy:
    """Up to ``bins`` quantile bins of the reference; an alarm where sampling noise alone stays under the threshold
    with probability ``confidence`` (default: ``core.slo.DRIFT.psi_confidence``)."""

    bins: int = population_stability.DEFAULT_BINS
    confidence: float = slo.DRIFT.psi_confidence

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise ValueError(f"bins must be at least 2, got {self.bins}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be within (0, 1), got {self.confidence}")


def logged_inputs(rows: pd.DataFrame) -> pd.DataFrame:
    """The raw fields of the rows of an inference-log frame that logged them (``inputs`` JSON), one column per
    ``INPUT_COLUMNS``; a logged object that lacks one fails naming the prediction and the columns."""
    if "inputs" not in rows:
        return pd.DataFrame(columns=list(INPUT_COLUMNS), dtype="float64")
    explained = rows[rows["inputs"].notna()]
    records = []
    for prediction_id, text in zip(explained["prediction_id"], explained["inputs"], strict=True):
        fields = json.loads(text)
        missing = [c for c in INPUT_COLUMNS if c not in fields]
        if missing:
            raise ValueError(f"prediction {prediction_id}: its logged inputs lack {missing}")
        records.append([fields[c] for c in INPUT_COLUMNS])
    return pd.DataFrame(records, columns=list(INPUT_COLUMNS), dtype="float64")


def score_stability(
    reference: StabilityReference, probabilities: np.ndarray, policy: StabilityPolicy
) -> dict[str, Any]:
    """PSI of the window's scores against the reference's, its alarm threshold for these sample sizes, the alarm."""
    current = np.asarray(probabilities, dtype="float64")
    if len(current) == 0:
        raise ValueError("no scores in the window: the PSI needs at least one")
    value = promotion_stats.psi(reference.scores, current, bins=policy.bins)
    # Tied reference scores (an isotonic calibration's steps) merge bins: the threshold takes the bins that remain.
    bins = len(population_stability.quantile_bin_edges(reference.scores, policy.bins)) + 1
    threshold = promotion_stats.psi_alarm_threshold(
        len(reference.scores), len(current), bins=bins, confidence=policy.confidence
    )
    return {
        "psi": float(value),
        "threshold": float(threshold),
        "alarm": bool(value > threshold),
        "bins": bins,
        "reference_rows": len(reference.scores),
        "current_rows": len(current),
    }


def inputs_stability(reference: StabilityReference, rows: pd.DataFrame, policy: StabilityPolicy) -> dict[str, Any]:
    """CSI of each input between the window's declined rows (their logged inputs) and the reference rows the version
    declines, with each column's alarm threshold; ``columns`` is empty (and ``note`` says why) when either side
    has no rows."""
    declined = rows[rows["decision"] == DECLINE]
    current = logged_inputs(declined)
    reference_rows = reference.inputs[np.asarray(reference.scores) >= reference.threshold]
    out: dict[str, Any] = {
        "rows": "declined applications (the log keeps the inputs of every decline)",
        "reference": f"the reference rows this version declines (score >= {reference.threshold:.4f})",
        "current_rows": len(current),
        "reference_rows": len(reference_rows),
        "unexplained_declines": len(declined) - len(current),
        "columns": {},
        "alarms": [],
    }
    if current.empty or reference_rows.empty:
        side = "window has no declined row with logged inputs" if current.empty else "version declines no reference row"
        return {**out, "note": f"no CSI: the {side}"}
    result = promotion_stats.csi(
        reference_rows, current, list(INPUT_COLUMNS), bins=policy.bins, confidence=policy.confidence
    )
    columns = {
        column: {"csi": float(value), "threshold": float(threshold), "alarm": bool(value > threshold)}
        for column, (value, threshold) in result.items()
    }
    return {**out, "columns": columns, "alarms": sorted(c for c, r in columns.items() if r["alarm"])}


def decision_threshold(rows: pd.DataFrame) -> float:
    """The one threshold a version's logged rows were decided at; several fail (a version's threshold is fixed
    in its record, so the log would be inconsistent)."""
    thresholds = rows["threshold"].unique()
    if len(thresholds) != 1:
        versions = ", ".join(sorted(str(v) for v in rows["model_version"].unique()))
        raise ValueError(f"the rows of {versions} were decided at {len(thresholds)} thresholds: {sorted(thresholds)}")
    return float(thresholds[0])


def version_report(rows: pd.DataFrame, reference: StabilityReference, policy: StabilityPolicy) -> dict[str, Any]:
    """One served version's window (``read_predictions`` rows): estimated and realized quality with the labels'
    coverage, and the stability of its score and inputs against ``reference``."""
    if rows.empty:
        raise ValueError("no predictions of this version in the window")
    probabilities = rows["probability"].to_numpy(dtype="float64")
    threshold = decision_threshold(rows)
    estimated = performance_estimation.estimate_performance(probabilities, threshold).as_dict()
    labelled = rows["defaulted"].notna().to_numpy()
    realized = {**live_quality.frame_quality(rows), **live_quality.label_coverage(rows)}
    on_labelled = (
        performance_estimation.estimate_performance(probabilities[labelled], threshold).as_dict()
        if labelled.any()
        else None
    )
    score = score_stability(reference, probabilities, policy)
    inputs = inputs_stability(reference, rows, policy)
    return {
        "predictions": len(rows),
        "roles": sorted(str(r) for r in rows["role"].unique()),
        "estimated": estimated,
        "realized": realized,
        "estimated_on_labelled": on_labelled,
        "realized_minus_estimated_on_labelled": _differences(realized, on_labelled),
        "score_psi": score,
        "inputs_csi": inputs,
        "alarm": bool(score["alarm"] or inputs["alarms"]),
        "reference": reference.description,
    }


def _differences(realized: Mapping[str, Any], estimated: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Realized minus estimated ROC AUC and accuracy on the same rows; ``None`` where either is undefined."""

    def minus(key: str) -> float | None:
        if estimated is None or realized.get(key) is None or estimated.get(key) is None:
            return None
        return float(realized[key] - estimated[key])

    return {"roc_auc": minus("roc_auc"), "accuracy": minus("accuracy")}


def report_table(document: Mapping[str, Any]) -> str:
    """Markdown: one row per version with the estimate, the realized values and their coverage, the score PSI
    against its threshold and the inputs whose CSI alarms."""
    cell = live_quality.cell
    lines = [
        "| version | predictions | est. ROC AUC | est. accuracy | labelled | coverage | labels cover | ROC AUC | "
        "accuracy | score PSI | PSI threshold | CSI alarms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for version, m in document["versions"].items():
        estimated, realized, score = m["estimated"], m["realized"], m["score_psi"]
        alarms = ", ".join(m["inputs_csi"]["alarms"]) or "-"
        psi = f"**{score['psi']:.4f}**" if score["alarm"] else f"{score['psi']:.4f}"
        lines.append(
            f"| {version} | {m['predictions']} | {cell(estimated['roc_auc'])} | {cell(estimated['accuracy'])} | "
            f"{realized['labelled']} | {cell(realized['coverage'])} | {realized['labels_cover']} | "
            f"{cell(realized['roc_auc'])} | {cell(realized['accuracy'])} | {psi} | {score['threshold']:.4f} | "
            f"{alarms} |"
        )
    return "\n".join(lines)
