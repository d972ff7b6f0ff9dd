"""TrainingData: valid tensor rows from the lake, pinned by content hashes, split as a stream."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from platform_assets.core import lake_keys
from platform_assets.dataplane.partitions import PartitionError, read_manifest, write_partition
from platform_assets.ml import dataset, features, schema, synthetic
from platform_assets.resources.lake import LocalLake
from platform_assets.resources.training_data import TrainingData, open_partitions

OLD, NEW = "2026-10-01", "2026-10-02"


def _tensor_rows(day: str, rows: int, seed: int = 8) -> pd.DataFrame:
    return features.featurize_rows(synthetic.generate_partition(date.fromisoformat(day), rows, seed))


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    lake = LocalLake(root=str(tmp_path / "lake"))
    old = synthetic.generate_partition(date.fromisoformat(OLD), 40, seed=8)
    old.loc[3, "AGE"] = 17  # one quarantined row in the older partition
    write_partition(lake, lake_keys.tensors(OLD), [features.featurize_rows(old)])
    # Two parts: a partition's rows are the union of the parts its manifest lists.
    new = _tensor_rows(NEW, 60)
    write_partition(lake, lake_keys.tensors(NEW), [new.iloc[:25], new.iloc[25:]])
    return lake


def _digest(lake: LocalLake, partition: str) -> str:
    return read_manifest(lake, lake_keys.tensors(partition)).digest


def test_load_returns_valid_rows_and_partition_hashes(lake: LocalLake, tmp_path: Path) -> None:
    rows, versions = TrainingData().load(lake)
    assert len(rows) == 40 - 1 + 60
    assert rows[features.REASON].isna().all()
    assert 20261001_0000000004 not in set(rows[schema.ID])  # the quarantined client (row 3 of the old day)
    assert versions == {OLD: _digest(lake, OLD), NEW: _digest(lake, NEW)}
    assert list(rows.index) == list(range(len(rows)))


def test_opened_rows_split_into_model_inputs(lake: LocalLake) -> None:
    training_data = TrainingData(validation_fraction=0.1, test_fraction=0.2)
    rows, _ = training_data.load(lake)
    data, _ = training_data.open(lake)
    splits = {name: data.materialize(name) for name in dataset.SPLITS}
    assert {name: len(s) for name, s in splits.items()} == data.rows()
    assert sorted(np.concatenate([s.ids for s in splits.values()])) == sorted(rows[schema.ID])
    expected = dataset.split_dataset(rows, 0.1, 0.2, seed=42)  # the same rows in memory: the same splits
    for name, split in splits.items():
        np.testing.assert_array_equal(split.ids, expected[name].ids)
        np.testing.assert_array_equal(split.flat(), expected[name].flat())
    train = splits["train"]
    assert train.features.tensor.shape == (len(train), schema.N_MONTHS, len(features.CHANNELS))
    assert np.isfinite(train.flat()).all()


def test_window_days_picks_the_newest_partitions(lake: LocalLake, tmp_path: Path) -> None:
    rows, versions = TrainingData(window_days=1).load(lake)
    assert versions == {NEW: _digest(lake, NEW)}
    assert len(rows) == 60
    assert TrainingData(window_days=5).available_partitions(lake) == [OLD, NEW]


def test_pinned_versions_reload_exactly_those_partitions(lake: LocalLake) -> None:
    training_data = TrainingData()
    data, versions = training_data.open(lake)
    write_partition(lake, lake_keys.tensors("2026-10-03"), [_tensor_rows("2026-10-03", 10)])  # arrives later
    again = open_partitions(lake, versions, training_data.split_spec())
    assert again.plan == data.plan
    for name in dataset.SPLITS:
        pd.testing.assert_frame_equal(again.materialize(name).frame, data.materialize(name).frame)


def test_changed_partition_is_refused(lake: LocalLake) -> None:
    _, versions = TrainingData().load(lake)
    write_partition(lake, lake_keys.tensors(OLD), [_tensor_rows(OLD, 40, seed=99)])  # rewritten since training
    with pytest.raises(ValueError, match="changed since training") as error:
        open_partitions(lake, versions, TrainingData().split_spec())
    assert OLD in str(error.value)


def test_empty_lake_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no credit_history_tensors partitions"):
        TrainingData().load(LocalLake(root=str(tmp_path / "empty")))


def test_an_uncommitted_partition_is_not_offered(lake: LocalLake) -> None:
    """Parts a failed run left behind, with no manifest, are no partition."""
    lake.write_bytes(f"{lake_keys.tensors('2026-10-04')}/part-deadbeef-00000.parquet", b"half written")
    assert TrainingData().available_partitions(lake) == [OLD, NEW]


def test_a_corrupt_part_fails_naming_it(lake: LocalLake) -> None:
    _, versions = TrainingData().load(lake)
    [part, _] = read_manifest(lake, lake_keys.tensors(NEW)).parts
    lake.write_bytes(f"{lake_keys.tensors(NEW)}/{part.name}", b"not parquet")
    with pytest.raises(PartitionError, match=f"{part.name} is corrupt"):
        open_partitions(lake, versions, TrainingData().split_spec())
