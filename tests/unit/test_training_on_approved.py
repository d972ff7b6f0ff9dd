"""Training on the approved only: the champion's decisions select the training and validation outcomes, the
test split stays through the door, and reject-inference weights reach the CNN's stream and the baselines' fit."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
from reject_support import write_champion_scores
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from platform_assets.core import lake_keys
from platform_assets.core.model_version import InverseApprovalWeights, LabelSelection, ModelVersion, ThresholdPolicy
from platform_assets.dataplane.partitions import write_partition
from platform_assets.defs.training.assets import CNNTrainingConfig
from platform_assets.ml import calibration, dataset, features, reject_inference, synthetic
from platform_assets.ml.train import TrainConfig, balanced_weights, policy_threshold, train_baselines, training_stream
from platform_assets.resources.lake import LocalLake
from platform_assets.resources.training_data import TrainingData, champion_decisions, select_approved

DAYS = ("2026-10-01", "2026-10-02")
CHAMPION = "v3"


def _tensor_rows(day: str, rows: int) -> pd.DataFrame:
    return features.featurize_rows(synthetic.generate_partition(date.fromisoformat(day), rows, seed=11))


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    """Two days of tensors (900 clients each) and the champion's committed scores of both."""
    lake = LocalLake(root=str(tmp_path / "lake"))
    for day in DAYS:
        rows = _tensor_rows(day, 900)
        write_partition(lake, lake_keys.tensors(day), [rows.iloc[:400], rows.iloc[400:]])
        write_champion_scores(lake, CHAMPION, day, rows, threshold=0.35)
    return lake


def _selected(lake: LocalLake) -> tuple[dataset.ModellingDataset, dataset.ModellingDataset, dataset.Decisions]:
    data, _ = TrainingData().open(lake)
    decisions, _ = champion_decisions(lake, CHAMPION, list(DAYS), expected=None)
    return data, data.selected(decisions), decisions


def test_a_declined_client_keeps_no_label_and_the_test_split_stays_through_the_door(lake: LocalLake) -> None:
    everyone, approved, decisions = _selected(lake)
    assert 0.4 < len(decisions.approved) / (len(decisions.approved) + len(decisions.declined)) < 0.9
    for split in dataset.SELECTED_SPLITS:
        all_rows, kept = everyone.materialize(split), approved.materialize(split)
        approved_here = np.isin(all_rows.ids, decisions.approved)
        np.testing.assert_array_equal(kept.ids, all_rows.ids[approved_here])
        np.testing.assert_array_equal(kept.labels, all_rows.labels[approved_here])
        assert not np.isin(kept.ids, decisions.declined).any()
        assert approved.rows()[split] == len(kept) and approved.declined_rows()[split] == int((~approved_here).sum())
        assert approved.class_rows(split) == {0: int((kept.labels == 0).sum()), 1: int((kept.labels == 1).sum())}
    np.testing.assert_array_equal(approved.materialize("test").ids, everyone.materialize("test").ids)
    assert approved.rows()["test"] == everyone.rows()["test"]
    # The champion declines riskier applicants: the kept training rows default less than the whole flow.
    assert approved.materialize("train").labels.mean() < everyone.materialize("train").labels.mean()


def test_a_client_without_a_decision_or_with_two_fails_naming_the_version() -> None:
    decisions = dataset.Decisions.of(CHAMPION, np.array([1, 2, 3]), np.array([True, False, True]))
    np.testing.assert_array_equal(decisions.approved_mask(np.array([3, 2, 1])), [True, False, True])
    with pytest.raises(ValueError, match=r"1 client\(s\) of the training window have no decision by v3.*\[7\]"):
        decisions.approved_mask(np.array([1, 7]))
    with pytest.raises(ValueError, match=r"v3 both approved and declined 1 client\(s\) \(IDs \[2\]\)"):
        dataset.Decisions.of(CHAMPION, np.array([1, 2, 2]), np.array([True, True, False]))


def test_the_stream_yields_class_times_reject_inference_weights_of_the_approved_only(lake: LocalLake) -> None:
    everyone, approved, decisions = _selected(lake)
    spec = reject_inference.inverse_approval_weights_of(approved, seed=42)
    train = approved.materialize("train")
    expected = np.array([balanced_weights(approved.class_rows("train"))[y] for y in train.labels])
    expected *= reject_inference.weights_of(spec, train.flat())
    assert not np.allclose(expected / expected[0], 1.0), "the weights must differ between rows"

    batches = list(training_stream(approved, TrainConfig(batch_size=64, shuffle_rows=128, seed=5), spec))
    streamed = np.concatenate(
        [np.concatenate([x["history"].numpy().reshape(len(y), -1), x["static"].numpy()], 1) for x, y, _ in batches]
    )
    weights = np.concatenate([w.numpy() for _, _, w in batches])
    assert len(streamed) == len(train) < everyone.rows()["train"]  # declined clients contribute no row
    # Row for row (matched by the flat inputs): each streamed row's weight is its class weight times its IPW.
    order_streamed, order_expected = np.lexsort(streamed.T[::-1]), np.lexsort(train.flat().T[::-1])
    np.testing.assert_array_equal(streamed[order_streamed], train.flat()[order_expected])
    np.testing.assert_allclose(weights[order_streamed], expected[order_expected], rtol=1e-5)


def test_without_reject_inference_the_stream_carries_the_class_weights(lake: LocalLake) -> None:
    everyone, _, _ = _selected(lake)
    class_weight = balanced_weights(everyone.class_rows("train"))
    for _, labels, weights in training_stream(everyone, TrainConfig(batch_size=256, seed=5)):
        np.testing.assert_allclose(weights.numpy(), [class_weight[int(y)] for y in labels.numpy()], rtol=1e-6)


def test_streamed_weights_equal_the_in_memory_reject_inference_weights(lake: LocalLake) -> None:
    everyone, approved, decisions = _selected(lake)
    spec = reject_inference.inverse_approval_weights_of(approved, seed=42)
    applicants = everyone.materialize("train")  # fewer rows than the fit cap: the model sees every applicant
    flags = decisions.approved_mask(applicants.ids)
    in_memory = reject_inference.reject_inference_weights(applicants.flat(), flags)
    streamed = reject_inference.weights_of(spec, approved.materialize("train").flat())  # same ID order
    np.testing.assert_allclose(streamed, in_memory, rtol=1e-6)
    assert spec.fitted_rows == len(applicants) and spec.approval_rate == pytest.approx(flags.mean())
    assert spec.effective_sample_size == pytest.approx(reject_inference.effective_sample_size(in_memory))
    assert spec.effective_sample_size < len(streamed)


def test_the_baselines_fit_with_the_weights(lake: LocalLake) -> None:
    _, approved, _ = _selected(lake)
    spec = reject_inference.inverse_approval_weights_of(approved, seed=42)
    train, validation = approved.materialize("train"), approved.materialize("validation")
    weights = reject_inference.weights_of(spec, train.flat())
    weighted = train_baselines(train, validation, seed=1, sample_weight=weights)["logistic_regression"].model
    plain = train_baselines(train, validation, seed=1)["logistic_regression"].model
    by_hand = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    by_hand.fit(train.flat(), train.labels, logisticregression__sample_weight=weights)
    np.testing.assert_allclose(weighted[-1].coef_, by_hand[-1].coef_, rtol=1e-6)
    assert not np.allclose(weighted[-1].coef_, plain[-1].coef_, rtol=1e-3)
    with pytest.raises(ValueError, match="sample_weight has shape"):
        train_baselines(train, validation, seed=1, sample_weight=weights[:-1])


def test_the_baselines_calibrate_and_threshold_with_the_validation_weights(lake: LocalLake) -> None:
    _, approved, _ = _selected(lake)
    spec = reject_inference.inverse_approval_weights_of(approved, seed=42)
    train, validation = approved.materialize("train"), approved.materialize("validation")
    validation_weight = reject_inference.weights_of(spec, validation.flat())
    policy = ThresholdPolicy(kind="approval_rate", target_approval_rate=0.8)
    weighted = train_baselines(train, validation, seed=1, policy=policy, validation_weight=validation_weight)
    plain = train_baselines(train, validation, seed=1, policy=policy)
    for name, baseline in weighted.items():
        scores = baseline.model.decision_function(validation.flat())
        assert baseline.calibration.weighted and not plain[name].calibration.weighted
        assert baseline.calibration == calibration.fit(
            scores, validation.labels, seed=1, sample_weight=validation_weight
        )
        probabilities = calibration.apply(baseline.calibration, scores)
        assert baseline.threshold == policy_threshold(policy, probabilities, validation_weight)
        assert baseline.calibration != plain[name].calibration
    with pytest.raises(ValueError, match="validation_weight has shape"):
        train_baselines(train, validation, seed=1, validation_weight=validation_weight[:-1])


def test_reweighting_without_the_approved_is_a_config_error_naming_both_settings() -> None:
    with pytest.raises(ValueError, match=r"reject_inference='reweight'.*outcomes='approved', not outcomes='all'"):
        CNNTrainingConfig(reject_inference="reweight").to_train_config()
    with pytest.raises(pydantic.ValidationError, match="outcomes"):
        CNNTrainingConfig(outcomes="approved-only")  # type: ignore[arg-type]


def test_a_day_without_the_champions_scores_names_the_day_and_the_job(lake: LocalLake) -> None:
    later = "2026-10-03"
    write_partition(lake, lake_keys.tensors(later), [_tensor_rows(later, 100)])
    data, versions = TrainingData().open(lake)
    with pytest.raises(
        ValueError,
        match=rf"training day {later} has no committed portfolio_scores by the champion v3.*portfolio_scoring_job",
    ):
        select_approved(lake, data, sorted(versions), CHAMPION, reweight=False, seed=42)
    with pytest.raises(
        ValueError, match="registry has no champion: promote a version first, or train with outcomes='all'"
    ):
        select_approved(lake, data, sorted(versions), None, reweight=False, seed=42)


def test_select_records_what_it_kept(lake: LocalLake) -> None:
    data, versions = TrainingData().open(lake)
    selected, selection = select_approved(lake, data, sorted(versions), CHAMPION, reweight=True, seed=42)
    assert selection.outcomes == "approved" and selection.reject_inference == "reweight"
    assert selection.selected_by == CHAMPION and set(selection.scores_versions) == set(DAYS)
    assert selection.labelled_rows == {s: selected.rows()[s] for s in dataset.SELECTED_SPLITS}
    assert selection.declined_rows == selected.declined_rows() and min(selection.declined_rows.values()) > 0
    assert selection.weights is not None and selection.weights.fitted_rows == data.rows()["train"]
    _, unweighted = select_approved(lake, data, sorted(versions), CHAMPION, reweight=False, seed=42)
    assert unweighted.reject_inference == "none" and unweighted.weights is None
    # A rescored day after training: the version's rows can no longer be rebuilt.
    changed = dict(selection.scores_versions, **{DAYS[0]: "0" * 64})
    with pytest.raises(ValueError, match=rf"portfolio_scores of {DAYS[0]} by v3 changed since training.*retrain first"):
        champion_decisions(lake, CHAMPION, list(DAYS), expected=changed)


def test_records_before_the_setting_load_as_every_outcome_and_the_selection_is_consistent() -> None:
    from record_support import model_version

    document = model_version().to_document()
    del document["label_selection"]
    assert ModelVersion.model_validate(document).label_selection == LabelSelection(outcomes="all")
    with pytest.raises(pydantic.ValidationError, match="reweight' needs outcomes 'approved'"):
        LabelSelection(reject_inference="reweight")
    with pytest.raises(pydantic.ValidationError, match="selected_by and scores_versions"):
        LabelSelection(outcomes="approved")
    with pytest.raises(pydantic.ValidationError, match="one value per flat feature"):
        InverseApprovalWeights(
            feature_means=(0.0, 1.0),
            feature_scales=(1.0,),
            coefficients=(1.0,),
            intercept=0.0,
            min_probability=0.05,
            normaliser=1.0,
            fitted_rows=2,
            approval_rate=0.5,
            effective_sample_size=1.0,
        )
