"""Reject inference by inverse approval-probability weights."""

from __future__ import annotations

import numpy as np
import pytest

from platform_assets.ml.calibration import sigmoid
from platform_assets.ml.reject_inference import (
    approval_probability,
    effective_sample_size,
    fit_approval_model,
    inverse_approval_weights,
    reject_inference_weights,
)


def _applicants(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, true approval probabilities (a noisy champion: logistic in the features, never 0 or 1),
    the champion's decisions and the outcomes (risk grows with the first feature, as approval falls)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 3))
    true_approval = sigmoid(1.0 - 1.5 * features[:, 0] + 0.5 * features[:, 1])
    approved = rng.random(n) < true_approval
    defaulted = rng.random(n) < sigmoid(-1.5 + 1.2 * features[:, 0])
    return features, true_approval, approved, defaulted


def test_the_approval_model_recovers_the_champions_approval_probability() -> None:
    features, true_approval, approved, _ = _applicants(20_000, seed=1)
    model = fit_approval_model(features, approved)
    estimated = approval_probability(model, features)
    assert np.max(np.abs(estimated - true_approval)) < 0.05
    assert model.rows == 20_000 and model.approval_rate == pytest.approx(approved.mean())


def test_weights_make_the_approved_stand_for_every_applicant() -> None:
    features, _, approved, defaulted = _applicants(40_000, seed=2)
    weights = reject_inference_weights(features, approved, min_probability=0.01)
    assert weights.shape == (int(approved.sum()),) and weights.mean() == pytest.approx(1.0)
    everyone = defaulted.mean()
    naive = defaulted[approved].mean()
    reweighted = np.average(defaulted[approved], weights=weights)
    assert everyone - naive > 0.05  # the approved default less: the selection bias
    assert reweighted == pytest.approx(everyone, abs=0.01)


def test_weights_are_clipped_and_normalised() -> None:
    weights = inverse_approval_weights([0.5, 0.25, 0.001], min_probability=0.05)
    raw = np.array([2.0, 4.0, 20.0])  # 0.001 is raised to 0.05
    np.testing.assert_allclose(weights, raw / raw.mean())
    with pytest.raises(ValueError, match=r"min_probability must be in \(0, 1\], got 0"):
        inverse_approval_weights([0.5], min_probability=0)
    with pytest.raises(ValueError, match="probabilities in"):
        inverse_approval_weights([0.5, 1.5])


def test_effective_sample_size() -> None:
    assert effective_sample_size(np.ones(50)) == pytest.approx(50)
    assert effective_sample_size([100.0, 1e-6, 1e-6]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        effective_sample_size([1.0, -1.0])


def test_bad_input_names_what_is_wrong() -> None:
    features = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"approved has shape \(3,\) but features have 4 rows"):
        fit_approval_model(features, [1, 0, 1])
    with pytest.raises(ValueError, match="approved must hold both decisions to model them, got 4 of 4 approved"):
        fit_approval_model(features, [1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"approved must be booleans or 0/1 \(1 = approved\), found \[0, 1, 2\]"):
        fit_approval_model(features, [0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"features has 1 non-finite value"):
        fit_approval_model(np.array([[0.0, np.nan], [1, 1], [2, 2], [3, 3]]), [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"features must be a non-empty \(applicants x features\) matrix"):
        fit_approval_model(np.zeros(4), [0, 1, 0, 1])
