"""CBPE: the estimated ROC AUC and accuracy of calibrated probabilities, before the outcomes arrive."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from platform_assets.ml import calibration, schema
from platform_assets.ml.performance_estimation import estimate_auc_interval, estimate_performance, expected_roc_auc


def _calibrated_population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of default (Beta, mean about 0.22) and outcomes drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 4.2, n)
    return p, (rng.random(n) < p).astype("int64")


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_estimate_matches_the_realized_auc_within_sampling_error(seed: int) -> None:
    p, defaulted = _calibrated_population(5000, seed)
    estimate = estimate_performance(p, threshold=0.5)
    low, high = estimate_auc_interval(p, confidence=0.99, draws=400, seed=seed)
    realized = roc_auc_score(defaulted, p)
    assert low <= realized <= high
    assert low < estimate.roc_auc < high and high - low < 0.05
    assert estimate.accuracy == pytest.approx(accuracy_score(defaulted, p >= 0.5), abs=0.02)
    assert estimate.expected_default_rate == pytest.approx(defaulted.mean(), abs=0.015)


def test_estimate_is_the_mean_auc_of_outcomes_drawn_from_the_probabilities() -> None:
    p, _ = _calibrated_population(2000, seed=6)
    rng = np.random.default_rng(7)
    draws = [roc_auc_score(rng.random(len(p)) < p, p) for _ in range(300)]
    assert expected_roc_auc(p) == pytest.approx(np.mean(draws), abs=0.003)


def test_expected_confusion_matrix() -> None:
    p = np.array([0.9, 0.6, 0.4, 0.1])
    estimate = estimate_performance(p, threshold=0.5)
    assert (estimate.expected_true_positives, estimate.expected_false_positives) == pytest.approx((1.5, 0.5))
    assert (estimate.expected_false_negatives, estimate.expected_true_negatives) == pytest.approx((0.5, 1.5))
    assert estimate.accuracy == pytest.approx(0.75) and estimate.n == 4 and estimate.method == "cbpe"
    # Expected ROC after 0.9 (TPR 0.45, FPR 0.05), 0.6 (0.75, 0.25), 0.4 (0.95, 0.55), 0.1 (1, 1): trapezoids
    # 0.01125 + 0.12 + 0.255 + 0.43875 = 0.825, which is also sum_{i,j} p_i (1 - p_j) [p_i > p_j] (+ half the
    # i = j terms) / (sum p * sum (1 - p)) = 3.3 / 4.
    assert estimate.roc_auc == pytest.approx(0.825)
    assert estimate.as_dict()["roc_auc"] == pytest.approx(0.825)


def test_ties_move_together_and_constant_scores_say_nothing() -> None:
    assert expected_roc_auc([0.3, 0.3, 0.3]) == pytest.approx(0.5)
    p = np.repeat([0.1, 0.5, 0.8], 50)
    assert expected_roc_auc(p) == pytest.approx(expected_roc_auc(np.array([0.1, 0.5, 0.8])))


def test_a_miscalibrated_model_is_estimated_wrongly() -> None:
    # The method's assumption, shown: probabilities pushed towards 0 and 1 keep the ranking (same realized AUC)
    # but claim more certainty, so the estimate is too high and the realized AUC falls outside the interval.
    p, defaulted = _calibrated_population(5000, seed=8)
    logits = calibration.logits_of(p)
    overconfident = calibration.sigmoid(3.0 * logits)
    assert roc_auc_score(defaulted, overconfident) == pytest.approx(roc_auc_score(defaulted, p))
    low, _ = estimate_auc_interval(overconfident, confidence=0.99)
    assert roc_auc_score(defaulted, overconfident) < low


@pytest.mark.parametrize(
    ("probabilities", "threshold", "message"),
    [
        ([], 0.5, "non-empty one-dimensional"),
        ([0.2, 1.3], 0.5, r"in \[0, 1\]: 1 value\(s\) are not"),
        ([0.2, float("nan")], 0.5, r"in \[0, 1\]: 1 value\(s\) are not"),
        ([0.2, 0.3], 50, r"threshold must be a probability in \[0, 1\], got 50"),
        ([0.0, 0.0], 0.5, "every probability is 0"),
    ],
)
def test_bad_input(probabilities: list[float], threshold: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimate_performance(probabilities, threshold)


# -- the real UCI data ------------------------------------------------------------------------------------------
def _learner(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, early_stopping=False, random_state=seed)


@pytest.fixture(scope="module")
def uci_scored(uci_frame: pd.DataFrame) -> dict[str, Any]:
    """A HistGradientBoosting model trained on UCI rows, calibrated on others (``ml/calibration.py``), scoring a
    held-out test split; and which test applicants a champion (logistic regression trained on a fourth part)
    approves: it declines its top-risk 20 %, and in production only the approved ones get an outcome."""
    x = uci_frame[list(schema.FEATURE_COLUMNS)].to_numpy(dtype="float64")
    y = uci_frame[schema.TARGET].to_numpy(dtype="int64")
    rows = np.random.default_rng(0).permutation(len(y))
    champion_rows, train, validation, test = rows[:5000], rows[5000:17000], rows[17000:23000], rows[23000:]
    champion = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
        x[champion_rows], y[champion_rows]
    )
    risk = champion.predict_proba(x)[:, 1]
    model = _learner(seed=0).fit(x[train], y[train])
    fitted = calibration.fit(model.decision_function(x[validation]), y[validation])
    return {
        "labels": y[test],
        "approved": risk[test] < np.quantile(risk[champion_rows], 0.8),
        "probabilities": calibration.apply(fitted, model.decision_function(x[test])),
    }


# One split (permutation seed 0, the first tried). Over six splits of this setup the error was 0.003-0.036 and
# within 0.03 in five (the sixth's test AUC fell outside even the 95 % outcome-noise interval): the target is met
# typically, not always; see the module docstring of performance_estimation.
@pytest.mark.slow
def test_uci_estimate_of_a_calibrated_model_is_within_003_of_the_realized_auc(uci_scored: dict[str, Any]) -> None:
    p, labels = uci_scored["probabilities"], uci_scored["labels"]
    assert estimate_performance(p, 0.5).roc_auc == pytest.approx(roc_auc_score(labels, p), abs=0.03)


@pytest.mark.slow
def test_uci_estimate_when_only_approved_applicants_have_labels(uci_scored: dict[str, Any]) -> None:
    p, labels, approved = uci_scored["probabilities"], uci_scored["labels"], uci_scored["approved"]
    through_the_door = roc_auc_score(labels, p)
    observable = roc_auc_score(labels[approved], p[approved])
    # What the labels can show (the approved, a narrower range of risk) is far from the AUC on every applicant,
    # which CBPE estimates from the scores alone, declined applicants included.
    assert abs(observable - through_the_door) > 0.05
    assert estimate_performance(p, 0.5).roc_auc == pytest.approx(through_the_door, abs=0.03)
