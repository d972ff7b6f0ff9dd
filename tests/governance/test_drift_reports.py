"""Evidently drift and classification reports on synthetic rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from platform_assets.ml import drift, features

FEATURES = drift.feature_columns(features.CHANNELS, 6, features.STATIC_FEATURES)


def with_score(rows: pd.DataFrame, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """The model inputs of raw ``rows`` as named columns, plus a random score."""
    out = drift.feature_frame(features.build_features(rows.reset_index(drop=True)), features.STATIC_FEATURES)
    out[drift.SCORE] = np.clip(np.random.default_rng(seed).beta(2, 5, len(out)) + shift, 0, 1)
    return out


def test_identical_data_shows_no_drift(synthetic_rows: pd.DataFrame) -> None:
    reference = with_score(synthetic_rows, 1)
    result = drift.drift_report(reference, reference.sample(800, random_state=3), FEATURES)
    summary = result.summary
    assert summary["drift_share"] <= 0.1 and summary["dataset_drift"] is False
    assert set(summary["features"]) == set(FEATURES)
    assert summary["score"]["drifted"] is False
    assert summary["reference_rows"] == 4000 and summary["current_rows"] == 800
    assert FEATURES[:2] == ["delay_m1", "paid_in_full_m1"] and "delay_m6" in FEATURES and "log_limit" in FEATURES
    assert "<html" in result.html.lower()


def test_shifted_data_shows_high_drift_share(synthetic_rows: pd.DataFrame) -> None:
    reference = with_score(synthetic_rows.iloc[:3000], 1)
    current = with_score(synthetic_rows.iloc[3000:], 2, shift=0.3)
    for column in FEATURES:
        current[column] = current[column] * 1.5 + 0.5  # every input shifted
    summary = drift.drift_report(reference, current, FEATURES).summary
    assert summary["drift_share"] >= 0.9 and summary["dataset_drift"] is True
    assert summary["drifted_features"] == len(summary["drifted_feature_names"]) >= 0.9 * len(FEATURES)
    assert summary["score"]["drifted"] is True
    table = drift.drift_table(summary)
    assert "**DRIFT**" in table and "| score |" in table


def test_method_and_threshold_are_configurable(synthetic_rows: pd.DataFrame) -> None:
    reference = with_score(synthetic_rows.iloc[:2000], 1)
    current = with_score(synthetic_rows.iloc[2000:2500], 2)
    summary = drift.drift_report(reference, current, FEATURES, method="psi", threshold=0.25).summary
    assert {r["method"] for r in summary["features"].values()} == {"psi"}
    assert {r["threshold"] for r in summary["features"].values()} == {0.25}


def test_empty_window_is_a_clear_error(synthetic_rows: pd.DataFrame) -> None:
    reference = with_score(synthetic_rows, 1)
    with pytest.raises(drift.EmptyDriftWindowError, match="the drift window has no rows"):
        drift.drift_report(reference, reference.iloc[:0], FEATURES)
    with pytest.raises(drift.EmptyDriftWindowError, match="reference has no rows"):
        drift.drift_report(reference.iloc[:0], reference, FEATURES)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['score'\]"):
        drift.drift_report(reference, reference.drop(columns=[drift.SCORE]), FEATURES)


def test_performance_report_matches_sklearn_at_the_threshold() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 600)
    scores = np.clip(labels * 0.25 + rng.uniform(size=600) * 0.75, 0, 1)
    result = drift.performance_report(labels, scores, 0.45)
    metrics = result.summary["metrics"]
    decisions = (scores >= 0.45).astype(int)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, decisions))
    assert metrics["precision"] == pytest.approx(precision_score(labels, decisions))
    assert metrics["recall"] == pytest.approx(recall_score(labels, decisions))
    assert {"f1", "log_loss", "tpr", "tnr", "fpr", "fnr"} <= set(metrics)
    with pytest.raises(ValueError, match="single class"):
        drift.performance_report(np.zeros(10), np.linspace(0, 1, 10), 0.5)
