"""Deterministic, stratified train/validation/test splits of the valid tensor rows."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from platform_assets.ml import dataset, features, schema, synthetic


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """About 10,000 valid tensor rows (five synthetic days)."""
    days = [synthetic.generate_partition(date(2026, 5, 1) + timedelta(days=d), 2_000, seed=5) for d in range(5)]
    return features.featurize_rows(pd.concat(days, ignore_index=True))


def _assign(frame: pd.DataFrame, validation: float = 0.1, test: float = 0.2, seed: int = 42) -> pd.Series:
    names = dataset.assign_splits(frame[schema.ID].to_numpy(), frame[schema.TARGET].to_numpy(), validation, test, seed)
    return pd.Series(names, index=frame[schema.ID].to_numpy())


def test_assignment_is_deterministic(rows: pd.DataFrame) -> None:
    pd.testing.assert_series_equal(_assign(rows), _assign(rows))


def test_assignment_does_not_depend_on_row_order(rows: pd.DataFrame) -> None:
    shuffled = rows.sample(frac=1.0, random_state=1)
    pd.testing.assert_series_equal(_assign(shuffled).sort_index(), _assign(rows).sort_index())


def test_seed_changes_the_assignment(rows: pd.DataFrame) -> None:
    """``TrainingData.split_seed`` is a knob users turn to draw another split; it must have an effect."""
    changed = (_assign(rows, seed=1) != _assign(rows, seed=2)).mean()
    assert changed > 0.2, f"only {changed:.2%} of rows changed split between seeds 1 and 2"


def test_splits_are_stratified_and_honour_the_fractions(rows: pd.DataFrame) -> None:
    names = _assign(rows, validation=0.1, test=0.2)
    labels = rows[schema.TARGET].to_numpy()
    overall = labels.mean()
    shares = {"train": 0.7, "validation": 0.1, "test": 0.2}
    assert set(names) == set(shares)
    for name, share in shares.items():
        mask = (names == name).to_numpy()
        assert mask.mean() == pytest.approx(share, abs=0.01), name
        assert abs(labels[mask].mean() - overall) <= 0.01, (name, labels[mask].mean(), overall)


def test_adding_rows_moves_only_clients_near_the_cut_points(rows: pd.DataFrame) -> None:
    """Exact stratification means the cut points move as data arrives, but only clients whose hash
    sits next to a cut change split; a reshuffle (random permutation per run) would move ~half."""
    before = _assign(rows.iloc[:4_000])
    after = _assign(rows).loc[before.index]
    moved = before[before != after]
    assert len(moved) <= 0.02 * len(before), f"{len(moved)} of {len(before)} clients changed split"


@pytest.mark.parametrize(
    ("validation", "test"),
    [(0.0, 0.2), (0.1, 0.0), (0.5, 0.5), (0.6, 0.5), (1.0, 0.1), (-0.1, 0.2), (0.1, 1.2)],
)
def test_invalid_fractions_raise(rows: pd.DataFrame, validation: float, test: float) -> None:
    with pytest.raises(ValueError, match="fractions"):
        _assign(rows.iloc[:100], validation=validation, test=test)
    with pytest.raises(ValueError, match="fractions"):
        dataset.split_dataset(rows.iloc[:100], validation, test, seed=1)


def test_split_dataset_aligns_inputs_labels_and_ids(rows: pd.DataFrame) -> None:
    splits = dataset.split_dataset(rows, 0.1, 0.2, seed=42)
    assert set(splits) == set(dataset.SPLITS)
    assert sum(len(s) for s in splits.values()) == len(rows)
    ids = np.concatenate([s.ids for s in splits.values()])
    assert len(np.unique(ids)) == len(rows)
    reference = rows.set_index(schema.ID)
    expected_names = _assign(rows)
    for name, split in splits.items():
        assert (expected_names.loc[split.ids] == name).all()
        np.testing.assert_array_equal(split.labels, reference.loc[split.ids, schema.TARGET].to_numpy())
        assert split.features.tensor.shape == (len(split), schema.N_MONTHS, len(features.CHANNELS))
        expected_tensor = features.batch_from_rows(reference.loc[split.ids].reset_index()).tensor
        np.testing.assert_array_equal(split.features.tensor, expected_tensor)
        flat = split.flat()
        assert flat.shape == (len(split), schema.N_MONTHS * len(features.CHANNELS) + len(features.STATIC_FEATURES))
        assert split.keras_inputs()["history"] is split.features.tensor


def test_single_class_raises(rows: pd.DataFrame) -> None:
    only_good = rows[rows[schema.TARGET] == 0].iloc[:500]
    with pytest.raises(ValueError, match="single class"):
        dataset.split_dataset(only_good, 0.1, 0.2, seed=42)


def test_no_rows_raises(rows: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no valid rows"):
        dataset.split_dataset(rows.iloc[:0], 0.1, 0.2, seed=42)


def test_a_sample_is_seeded_and_independent_of_the_reading_order(rows: pd.DataFrame) -> None:
    """The baselines' sample: the same rows for a seed, however the source is cut into pieces or ordered."""
    data = dataset.ModellingDataset.planned(dataset.FrameSource(rows, piece_rows=700), 0.1, 0.2, seed=42)
    shuffled = rows.sample(frac=1.0, random_state=3)
    again = dataset.ModellingDataset.planned(dataset.FrameSource(shuffled, piece_rows=1500), 0.1, 0.2, seed=42)
    train = data.materialize("train")
    sample = data.sample("train", 1000, seed=3)
    assert len(sample) == 1000 and set(sample.ids) <= set(train.ids)
    assert list(sample.ids) == sorted(sample.ids)
    np.testing.assert_array_equal(again.sample("train", 1000, seed=3).ids, sample.ids)
    in_train = np.searchsorted(train.ids, sample.ids)
    np.testing.assert_array_equal(sample.flat(), train.flat()[in_train])
    np.testing.assert_array_equal(sample.labels, sample.frame[schema.TARGET].to_numpy())
    assert len(set(data.sample("train", 1000, seed=4).ids) & set(sample.ids)) < 300
    # Not the head of the split's own hash order: the sample has the class balance of the split.
    assert sample.labels.mean() == pytest.approx(train.labels.mean(), abs=0.04)
    whole = data.sample("train", len(train) + 1, seed=3)
    np.testing.assert_array_equal(whole.ids, train.ids)
    with pytest.raises(ValueError, match="max_rows"):
        data.sample("train", 0, seed=3)
