"""Data drift and classification quality with Evidently (0.7 API: ``Report``, ``Dataset``, ``DataDefinition``).

Drift is measured on **exactly what the model sees** and on its **score**: the (months x channels)
tensor flattened to one readable column per cell, ``<channel>_m<k>`` with ``k = 1`` the oldest and
``k = 6`` the newest month (e.g. ``delay_m6`` is the latest repayment delay, see ``ml/features.py``),
plus one column per static feature (``log_limit``, ``worst_delay``, ...). The tensor table does not
carry the raw UCI columns, and the model's lineage records the tensor partitions, so the reference
and the window are read from the same table and the same data versions.

Evidently picks the test per column unless ``method`` is given: with up to 1,000 reference rows the
K-S test (p-value, drift when ``< 0.05``) for numeric columns and chi-square/Z for columns with at
most 5 values; above 1,000 reference rows the normed Wasserstein distance (drift when ``>= 0.1``) or
Jensen-Shannon distance. Every column's score comes with its method and threshold, so a reader
knows whether smaller or larger means drift.

No Dagster here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from platform_assets.ml import features as model_features

SCORE: Final = "score"
TARGET: Final = "target"


def feature_columns(channels: Sequence[str], months: int, static: Sequence[str]) -> list[str]:
    """``<channel>_m1 .. <channel>_m<months>`` per channel (oldest first), then the static features."""
    return [f"{channel}_m{month}" for month in range(1, months + 1) for channel in channels] + list(static)


def feature_frame(batch: model_features.FeatureBatch, static_names: Sequence[str]) -> pd.DataFrame:
    """One named column per tensor cell and per static feature (the layout of ``feature_columns``)."""
    n, months, channels = batch.tensor.shape
    if batch.static.shape[1] != len(static_names):
        raise ValueError(f"{batch.static.shape[1]} static features but {len(static_names)} names")
    names = feature_columns(model_features.CHANNELS[:channels], months, static_names)
    values = np.concatenate([batch.tensor.reshape(n, months * channels), batch.static], axis=1)
    return pd.DataFrame(values.astype("float64"), columns=names)


class EmptyDriftWindowError(ValueError):
    """The current (or reference) data of a drift report has no rows."""


@dataclass(frozen=True)
class EvidentlyResult:
    """A report's figures as plain JSON-able values, and its standalone HTML page."""

    summary: dict[str, Any]
    html: str


def _value_drift_results(snapshot: Any) -> dict[str, dict[str, Any]]:
    """Per column: score, method, threshold and whether Evidently's test flagged drift."""
    document = snapshot.dict()
    status_by_metric = {
        test["metric_config"]["metric_id"]: test["status"] for test in document["tests"] if test.get("id") == "drift"
    }
    out = {}
    for metric in document["metrics"]:
        config = metric["config"]
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        status = status_by_metric.get(metric["id"])
        if status is None:
            raise RuntimeError(f"Evidently produced no drift test for column {config['column']!r}")
        out[config["column"]] = {
            "score": float(metric["value"]),
            "method": config["method"],
            "threshold": float(config["threshold"]),
            "drifted": status == "FAIL",
        }
    return out


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    *,
    score: str | None = SCORE,
    method: str | None = None,
    threshold: float | None = None,
    drift_share: float = 0.5,
) -> EvidentlyResult:
    """Drift of each feature (and of ``score``) between ``reference`` and ``current``.

    ``drift_share`` is the share of drifted *features* (the score is reported on its own);
    ``dataset_drift`` is true when it reaches the ``drift_share`` threshold.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    if len(current) == 0:
        raise EmptyDriftWindowError(
            "the drift window has no rows: the newest credit_history_tensors partition(s) hold no valid rows "
            "(materialize newer partitions, or widen the window)"
        )
    if len(reference) == 0:
        raise EmptyDriftWindowError("the drift reference has no rows: the model's training split is empty")
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    columns = [*features, *([score] if score else [])]
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"the {name} data lacks the column(s) {missing}")
    definition = DataDefinition(numerical_columns=columns)
    items: list[Any] = [
        DataDriftPreset(columns=list(features), method=method, threshold=threshold, drift_share=drift_share)
    ]
    if score:
        items.append(ValueDrift(column=score, method=method, threshold=threshold))
    snapshot = Report(items, include_tests=True).run(
        Dataset.from_pandas(current[columns].astype("float64").reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(reference[columns].astype("float64").reset_index(drop=True), data_definition=definition),
    )
    results = _value_drift_results(snapshot)
    feature_results = {c: results[c] for c in features}
    drifted = sorted(c for c, r in feature_results.items() if r["drifted"])
    share = len(drifted) / len(feature_results) if feature_results else 0.0
    summary: dict[str, Any] = {
        "reference_rows": len(reference),
        "current_rows": len(current),
        "features": feature_results,
        "drifted_features": len(drifted),
        "drifted_feature_names": drifted,
        "drift_share": share,
        "drift_share_threshold": drift_share,
        "dataset_drift": share >= drift_share,
        "score": results.get(score) if score else None,
    }
    return EvidentlyResult(summary=summary, html=snapshot.get_html_str(as_iframe=False))


def drift_table(summary: dict[str, Any]) -> str:
    """Markdown: one row per feature (and the score) with method, score, threshold and verdict."""
    lines = ["| column | method | score | threshold | drift |", "|---|---|---|---|---|"]
    rows = dict(summary["features"])
    if summary.get("score"):
        rows[SCORE] = summary["score"]
    for column, result in rows.items():
        verdict = "**DRIFT**" if result["drifted"] else "-"
        lines.append(
            f"| {column} | {result['method']} | {result['score']:.4g} | {result['threshold']:.3g} | {verdict} |"
        )
    return "\n".join(lines)


_METRIC_NAMES: Final = {
    "Accuracy": "accuracy",
    "Precision": "precision",
    "Recall": "recall",
    "F1Score": "f1",
    "RocAuc": "roc_auc",
    "LogLoss": "log_loss",
    "TPR": "tpr",
    "TNR": "tnr",
    "FPR": "fpr",
    "FNR": "fnr",
}


def performance_report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> EvidentlyResult:
    """Evidently's ``ClassificationPreset`` on labels (0/1) and scores, decisions at ``score >= threshold``."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    labels = np.asarray(labels, dtype="int64")
    scores = np.asarray(scores, dtype="float64")
    if len(scores) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    if len(labels) == 0:
        raise ValueError("no rows to evaluate: the test split is empty")
    if len(np.unique(labels)) < 2:
        raise ValueError(f"the test split has a single class ({len(labels)} rows): classification quality undefined")
    frame = pd.DataFrame({TARGET: labels, SCORE: scores})
    definition = DataDefinition(
        classification=[BinaryClassification(target=TARGET, prediction_probas=SCORE, pos_label=1)]
    )
    snapshot = Report([ClassificationPreset(probas_threshold=float(threshold))], include_tests=False).run(
        Dataset.from_pandas(frame, data_definition=definition), None
    )
    metrics: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        name = _METRIC_NAMES.get(metric["metric_name"].split("(")[0])
        if name is not None and isinstance(metric["value"], int | float):
            metrics[name] = float(metric["value"])
    summary = {
        "rows": len(labels),
        "default_rate": float(labels.mean()),
        "threshold": float(threshold),
        "metrics": metrics,
    }
    return EvidentlyResult(summary=summary, html=snapshot.get_html_str(as_iframe=False))
