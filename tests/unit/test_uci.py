"""Replay of the real UCI CSV as 30 daily batches."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from platform_assets.ml import schema, uci
from platform_assets.ml.features import RawSchemaError

DAYS = 30


def test_real_file_reads_as_30000_typed_rows(uci_frame: pd.DataFrame) -> None:
    assert len(uci_frame) == 30_000
    assert list(uci_frame.columns) == list(schema.RAW_COLUMNS)
    assert all(dtype == np.dtype("int64") for dtype in uci_frame.dtypes)
    assert uci_frame[schema.ID].is_unique
    assert uci_frame[schema.TARGET].mean() == pytest.approx(0.2212, abs=1e-3)


def test_replay_partitions_every_row_exactly_once(uci_frame: pd.DataFrame) -> None:
    batches = [uci.replay_partition(uci_frame, day, DAYS) for day in range(DAYS)]
    sizes = [len(batch) for batch in batches]
    assert sum(sizes) == len(uci_frame)  # no row twice
    all_ids = np.concatenate([batch[schema.ID].to_numpy() for batch in batches])
    assert len(np.unique(all_ids)) == len(all_ids)
    assert set(all_ids) == set(uci_frame[schema.ID])  # no row lost
    assert all(850 <= size <= 1150 for size in sizes), sizes
    for batch in batches:
        assert batch[schema.ID].is_monotonic_increasing
        assert list(batch.index) == list(range(len(batch)))
        assert list(batch.columns) == list(schema.RAW_COLUMNS)


def test_replay_batches_keep_the_full_records(uci_frame: pd.DataFrame) -> None:
    batch = uci.replay_partition(uci_frame, 7, DAYS)
    expected = uci_frame.set_index(schema.ID).loc[batch[schema.ID]].reset_index()
    pd.testing.assert_frame_equal(batch, expected[list(schema.RAW_COLUMNS)])


def test_replay_is_deterministic(uci_bytes: bytes) -> None:
    first = uci.read_uci_csv(uci_bytes, "a")
    second = uci.read_uci_csv(uci_bytes, "b")
    for day in (0, 13, 29):
        pd.testing.assert_frame_equal(uci.replay_partition(first, day, DAYS), uci.replay_partition(second, day, DAYS))
    # Row order of the file does not matter: a client's day depends on its ID only.
    shuffled = first.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(uci.replay_partition(shuffled, 13, DAYS), uci.replay_partition(first, 13, DAYS))


def test_replay_days_spread_consecutive_ids() -> None:
    ids = pd.Series(np.arange(1, 3_001))
    days = uci.replay_day(ids, DAYS)
    assert days.min() == 0 and days.max() == DAYS - 1
    counts = np.bincount(days, minlength=DAYS)
    assert counts.min() >= 80 and counts.max() <= 120, counts


@pytest.mark.parametrize("day", [-1, DAYS, DAYS + 5])
def test_day_outside_the_window_raises(day: int) -> None:
    frame = pd.DataFrame({schema.ID: [1, 2, 3]})
    with pytest.raises(ValueError, match=f"outside the {DAYS}-day replay window"):
        uci.replay_partition(frame, day, DAYS)


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xfe\xfa\x80\x81\n\x90\x91", b"not,a,credit,file\n1,2,3,4\n"], ids=["empty", "binary", "other"]
)
def test_unreadable_or_foreign_bytes_raise_naming_the_source(data: bytes) -> None:
    with pytest.raises(RawSchemaError, match="s3://bucket/uci.csv"):
        uci.read_uci_csv(data, "s3://bucket/uci.csv")


def test_csv_missing_a_column_names_source_and_column(uci_bytes: bytes) -> None:
    frame = pd.read_csv(io.BytesIO(uci_bytes), nrows=50).drop(columns=["PAY_AMT3"])
    with pytest.raises(RawSchemaError, match="upload.csv") as error:
        uci.read_uci_csv(frame.to_csv(index=False).encode(), "upload.csv")
    assert "PAY_AMT3" in str(error.value)


def test_csv_with_a_non_integer_value_names_source_and_column() -> None:
    header = ",".join(schema.RAW_COLUMNS)
    values = ["1", "20000", "2", "2", "1", "24", *["0"] * 6, *["100"] * 6, *["10"] * 6, "0"]
    values[schema.RAW_COLUMNS.index("LIMIT_BAL")] = "20000.5"
    with pytest.raises(RawSchemaError, match=r"upload.csv.*'LIMIT_BAL'"):
        uci.read_uci_csv(f"{header}\n{','.join(values)}\n".encode(), "upload.csv")
