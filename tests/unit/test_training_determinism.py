"""Training is deterministic for a seed on a machine: the same seed gives the same weights, calibration,
threshold and scores; another seed gives other weights (a small CNN, a few epochs). The threshold policy."""

from __future__ import annotations

import numpy as np
import pytest
from model_support import synthetic_rows

from platform_assets.core.model_version import ThresholdPolicy
from platform_assets.ml import dataset, features
from platform_assets.ml.model import CNNConfig
from platform_assets.ml.train import (
    DEFAULT_POLICY,
    TrainConfig,
    TrainedCNN,
    policy_threshold,
    predict_cnn,
    train_baselines,
    train_cnn,
)


@pytest.fixture(scope="module")
def data() -> dataset.ModellingDataset:
    rows = features.featurize_rows(synthetic_rows(days=2, rows_per_day=1000, seed=3))
    # Pieces of 300 rows and a shuffle buffer smaller than the training split: the stream's own order matters.
    return dataset.ModellingDataset.planned(dataset.FrameSource(rows, piece_rows=300), 0.2, 0.2, seed=42)


@pytest.fixture(scope="module")
def splits(data: dataset.ModellingDataset) -> dict[str, dataset.Split]:
    return {name: data.materialize(name) for name in dataset.SPLITS}


def _train(data: dataset.ModellingDataset, seed: int) -> TrainedCNN:
    config = TrainConfig(
        epochs=3, patience=3, seed=seed, shuffle_rows=256, cnn=CNNConfig(conv_filters=8, dense_units=16)
    )
    return train_cnn(data, config)


def test_the_same_seed_trains_the_same_model(data: dataset.ModellingDataset, splits: dict[str, dataset.Split]) -> None:
    first, second, other = _train(data, seed=7), _train(data, seed=7), _train(data, seed=8)
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.calibration == second.calibration and first.threshold == second.threshold
    assert first.history == second.history
    test = splits["test"].keras_inputs()
    np.testing.assert_array_equal(predict_cnn(first.model, test), predict_cnn(second.model, test))
    assert not np.array_equal(predict_cnn(first.model, test), predict_cnn(other.model, test))


def test_the_same_seed_fits_the_same_baselines(splits: dict[str, dataset.Split]) -> None:
    first = train_baselines(splits["train"], splits["validation"], seed=7)
    second = train_baselines(splits["train"], splits["validation"], seed=7)
    flat = splits["test"].flat()
    for name in first:
        assert first[name].calibration == second[name].calibration
        np.testing.assert_array_equal(first[name].predict_default(flat), second[name].predict_default(flat))


def test_the_threshold_follows_the_policy() -> None:
    # Defaults: loss given default 0.45, margin 0.15 -> decline from a PD of 0.15 / 0.60 = 0.25.
    assert policy_threshold(DEFAULT_POLICY, np.array([0.1, 0.9])) == pytest.approx(0.25)
    stricter = ThresholdPolicy(kind="expected_cost", loss_given_default=0.9, margin=0.1)
    assert policy_threshold(stricter, np.array([0.5])) == pytest.approx(0.1)
    pds = np.linspace(0.0, 0.99, 100)
    cut = policy_threshold(ThresholdPolicy(kind="approval_rate", target_approval_rate=0.8), pds)
    assert np.mean(pds < cut) == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match="wrong parameters"):
        ThresholdPolicy(kind="approval_rate", loss_given_default=0.45, margin=0.1)


def test_a_weighted_approval_rate_threshold_counts_a_row_as_its_weight() -> None:
    rng = np.random.default_rng(11)
    pds = rng.random(500)
    counts = rng.integers(1, 6, len(pds))
    policy = ThresholdPolicy(kind="approval_rate", target_approval_rate=0.7)
    weighted = policy_threshold(policy, pds, counts.astype("float64"))
    assert weighted == policy_threshold(policy, np.repeat(pds, counts), np.ones(counts.sum()))
    assert np.average(pds < weighted, weights=counts) == pytest.approx(0.7, abs=0.01)
    # The flow holds more risky applicants than the rows do: approving 70 % of it reaches further up the PDs.
    heavier_when_riskier = 1.0 + 9.0 * pds
    assert policy_threshold(policy, pds, heavier_when_riskier) > policy_threshold(policy, pds) + 0.05
    # The expected-cost threshold counts no rows: weights change nothing.
    assert policy_threshold(DEFAULT_POLICY, pds, counts.astype("float64")) == policy_threshold(DEFAULT_POLICY, pds)
    with pytest.raises(ValueError, match="sample_weight has shape"):
        policy_threshold(policy, pds, np.ones(3))


def test_the_training_config_refuses_an_unknown_method_or_policy_before_training() -> None:
    from platform_assets.defs.training.assets import CNNTrainingConfig

    config = CNNTrainingConfig(threshold_policy="approval_rate", target_approval_rate=0.7).to_train_config()
    assert config.policy == ThresholdPolicy(kind="approval_rate", target_approval_rate=0.7)
    assert CNNTrainingConfig(calibration_method="isotonic").to_train_config().calibration_method == "isotonic"
    with pytest.raises(ValueError, match="calibration_method"):
        CNNTrainingConfig(calibration_method="beta").to_train_config()
    with pytest.raises(ValueError, match="kind"):
        CNNTrainingConfig(threshold_policy="max_f1").to_train_config()
