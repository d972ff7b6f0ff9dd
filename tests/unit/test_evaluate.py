"""Test-set metrics, calibration error, plots and the Markdown table."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from platform_assets.ml import evaluate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_perfect_ranking_gives_auc_one_and_threshold_controls_decisions() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([0.1, 0.2, 0.8, 0.9])
    middle = evaluate.classification_metrics(labels, probabilities, threshold=0.5)
    assert middle["roc_auc"] == 1.0
    assert middle["accuracy"] == middle["precision"] == middle["recall"] == 1.0
    assert middle["threshold"] == 0.5
    assert middle["brier"] == pytest.approx((0.1**2 + 0.2**2 + 0.2**2 + 0.1**2) / 4)

    strict = evaluate.classification_metrics(labels, probabilities, threshold=0.85)
    assert strict["roc_auc"] == 1.0  # AUC does not depend on the threshold
    assert strict["precision"] == 1.0 and strict["recall"] == 0.5 and strict["accuracy"] == 0.75

    lax = evaluate.classification_metrics(labels, probabilities, threshold=0.15)
    assert lax["precision"] == pytest.approx(2 / 3) and lax["recall"] == 1.0

    inclusive = evaluate.classification_metrics(labels, probabilities, threshold=0.8)
    assert inclusive["recall"] == 1.0  # a probability equal to the threshold counts as a default

    nobody = evaluate.classification_metrics(labels, probabilities, threshold=0.95)
    assert nobody["precision"] == 0.0 and nobody["recall"] == 0.0 and nobody["accuracy"] == 0.5


def test_inverted_ranking_gives_auc_zero() -> None:
    metrics = evaluate.classification_metrics(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9]), 0.5)
    assert metrics["roc_auc"] == 0.0
    assert metrics["accuracy"] == 0.0


def test_ece_of_perfectly_calibrated_bins_is_zero() -> None:
    # 4 rows at 0.25 with one default, 10 rows at 0.7 with seven: each bin's rate equals its probability.
    labels = np.array([1, 0, 0, 0] + [1] * 7 + [0] * 3)
    probabilities = np.array([0.25] * 4 + [0.7] * 10)
    assert evaluate.expected_calibration_error(labels, probabilities) == pytest.approx(0.0, abs=1e-12)
    assert evaluate.classification_metrics(labels, probabilities, 0.5)["ece"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("rate", "predicted"), [(0.0, 0.9), (0.3, 0.8), (1.0, 0.05)])
def test_ece_of_a_constant_wrong_prediction_is_the_gap(rate: float, predicted: float) -> None:
    labels = np.array([1] * int(rate * 10) + [0] * (10 - int(rate * 10)))
    probabilities = np.full(10, predicted)
    assert evaluate.expected_calibration_error(labels, probabilities) == pytest.approx(abs(predicted - rate))


def test_ece_weights_bins_by_their_rows() -> None:
    # Half the rows perfectly calibrated (0.5, half default), half predicted 0.9 but 70 % default.
    labels = np.array([1, 0] * 5 + [1] * 7 + [0] * 3)
    probabilities = np.array([0.5] * 10 + [0.9] * 10)
    assert evaluate.expected_calibration_error(labels, probabilities) == pytest.approx(0.5 * 0.2)


def test_ece_includes_probabilities_of_exactly_zero_and_one() -> None:
    assert evaluate.expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == pytest.approx(0.0)
    assert evaluate.expected_calibration_error(np.array([1, 0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_plots_png_returns_a_png_image() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = {"cnn": np.clip(labels * 0.4 + rng.random(300) * 0.6, 0, 1), "logistic": rng.random(300)}
    png = evaluate.plots_png(labels, scores, {name: np.sqrt(p) for name, p in scores.items()})
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 10_000  # a real chart, not an empty canvas
    markdown = evaluate.png_markdown(png, "ROC and calibration")
    assert markdown.startswith("![ROC and calibration](data:image/png;base64,")
    assert base64.b64decode(markdown[markdown.index(",") + 1 : -1]) == png


def test_metrics_table_has_one_row_per_model() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    probabilities = {
        "cnn": np.array([0.1, 0.3, 0.7, 0.9, 0.2, 0.6]),
        "hist_gradient_boosting": np.array([0.2, 0.6, 0.4, 0.9, 0.1, 0.8]),
    }
    rows = {name: evaluate.classification_metrics(labels, p, 0.5) for name, p in probabilities.items()}
    lines = evaluate.metrics_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].startswith("| model | roc_auc |")
    header_cells = lines[0].count("|")
    assert all(line.count("|") == header_cells for line in lines)
    body = lines[2:]
    assert [line.split("|")[1].strip() for line in body] == list(rows)
    assert "| 1.0000 |" in body[0]  # the CNN ranks these rows perfectly
