"""Class weighting and threshold choice (the CNN itself is not trained in unit tests)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from platform_assets.ml import train


def _best_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """The best F1 of any cut ``scores >= s`` at one of the scores (the only cuts that differ)."""
    return max(f1_score(labels, scores >= s, zero_division=0) for s in np.unique(scores))


@pytest.mark.parametrize("positives", [1, 2, 5, 9])
def test_class_weights_balance_the_classes(positives: int) -> None:
    labels = np.array([1] * positives + [0] * (10 - positives))
    weights = train.class_weights(labels)
    assert set(weights) == {0, 1}
    # Each class contributes the same total weight: half of the rows' worth.
    assert weights[1] * positives == pytest.approx(weights[0] * (10 - positives))
    assert weights[1] * positives == pytest.approx(len(labels) / 2)
    if positives < 5:
        assert weights[1] > 1.0 > weights[0]


@pytest.mark.parametrize("labels", [np.zeros(8, dtype=int), np.ones(8, dtype=int)], ids=["no-defaults", "all-defaults"])
def test_class_weights_need_both_classes(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="both classes"):
        train.class_weights(labels)


LABELS = np.array([0, 0, 1, 0, 1, 1, 0, 1])
SCORES = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])


def test_choose_threshold_maximises_f1() -> None:
    threshold = train.choose_threshold(LABELS, SCORES)
    # Cutting at 0.3 flags 4 defaults and 2 good clients: F1 0.8, the best available.
    assert _best_f1(LABELS, SCORES) == pytest.approx(0.8)
    assert f1_score(LABELS, SCORES >= threshold) == pytest.approx(0.8)
    assert 0.2 < threshold <= 0.3


def test_choose_threshold_returns_one_of_the_scores() -> None:
    """The threshold recorded with the model should be a score the validation set actually produced.

    An interpolated quantile (e.g. 0.205 between 0.2 and 0.3) behaves like 0.3 on validation but
    flags new clients scored in (0.205, 0.3) although validation never justified that cut.
    """
    threshold = train.choose_threshold(LABELS, SCORES)
    assert threshold in set(SCORES.tolist()), threshold


def test_choose_threshold_can_flag_everyone_when_that_is_best() -> None:
    """With the lowest score a default, flagging everyone has the best F1 (0.8 against 0.67)."""
    labels = np.array([1, 0, 1])
    scores = np.array([0.1, 0.2, 0.3])
    threshold = train.choose_threshold(labels, scores)
    assert f1_score(labels, scores >= threshold) == pytest.approx(_best_f1(labels, scores)), threshold


def test_choose_threshold_on_a_noisy_validation_set() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    scores = np.clip(0.35 * labels + rng.normal(0.3, 0.2, 400), 0.0, 1.0)
    threshold = train.choose_threshold(labels, scores)
    assert scores.min() <= threshold <= scores.max()
    assert f1_score(labels, scores >= threshold) >= _best_f1(labels, scores) - 0.01
