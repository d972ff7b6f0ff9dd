"""CreditHistorySource.load_day: the synthetic generator and the local UCI replay (S3 is in test_lake_s3)."""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from platform_assets.ml import schema, synthetic, uci
from platform_assets.resources.source import CreditHistorySource

START = date(2026, 10, 1)


@pytest.fixture(scope="module")
def uci_subset_csv(uci_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3,000 rows of the real file in a temporary CSV (never in the repo)."""
    frame = pd.read_csv(io.BytesIO(uci_bytes), nrows=3_000)
    path = tmp_path_factory.mktemp("uci") / "subset.csv"
    frame.to_csv(path, index=False)
    return path


def test_synthetic_source_is_the_seeded_generator() -> None:
    source = CreditHistorySource(kind="synthetic", seed=9, rows_per_day=250)
    day = source.load_day(START)
    assert len(day) == 250
    assert list(day.columns) == list(schema.RAW_COLUMNS)
    pd.testing.assert_frame_equal(day, synthetic.generate_partition(START, 250, 9))
    pd.testing.assert_frame_equal(source.load_day(START), day)
    assert not day.equals(source.load_day(START + timedelta(days=1)))
    assert source.describe() == "synthetic(seed=9)"


def test_uci_source_replays_the_file_from_replay_start(uci_subset_csv: Path) -> None:
    source = CreditHistorySource(kind="uci_csv", uci_csv=str(uci_subset_csv), replay_start="2026-10-01")
    frame = uci.read_uci_csv(uci_subset_csv.read_bytes(), "subset")
    first = source.load_day(START)
    pd.testing.assert_frame_equal(first, uci.replay_partition(frame, 0, 30))
    pd.testing.assert_frame_equal(source.load_day(START + timedelta(days=29)), uci.replay_partition(frame, 29, 30))
    assert 60 <= len(first) <= 140
    assert str(uci_subset_csv) in source.describe()


def test_uci_source_window_covers_every_row_once(uci_subset_csv: Path) -> None:
    source = CreditHistorySource(kind="uci_csv", uci_csv=str(uci_subset_csv), replay_start="2026-10-01", replay_days=10)
    ids = pd.concat([source.load_day(START + timedelta(days=d))[schema.ID] for d in range(10)])
    assert ids.is_unique
    assert sorted(ids) == list(range(1, 3_001))


@pytest.mark.parametrize("day", [START - timedelta(days=1), START + timedelta(days=30)], ids=["before", "after"])
def test_date_outside_the_replay_window_raises(uci_subset_csv: Path, day: date) -> None:
    source = CreditHistorySource(kind="uci_csv", uci_csv=str(uci_subset_csv), replay_start="2026-10-01")
    with pytest.raises(ValueError, match="outside the UCI replay window") as error:
        source.load_day(day)
    message = str(error.value)
    assert "2026-10-01" in message and "30 days" in message
    assert "PLATFORM_UCI_REPLAY_START" in message


def test_missing_uci_file_raises_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    source = CreditHistorySource(kind="uci_csv", uci_csv=str(missing))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        source.load_day(START)


def test_uci_kind_without_a_path_raises() -> None:
    source = CreditHistorySource(kind="uci_csv")
    with pytest.raises(ValueError, match="PLATFORM_UCI_CSV"):
        source.load_day(START)


def test_uci_file_with_a_bad_schema_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("ID,LIMIT_BAL\n1,20000\n")
    source = CreditHistorySource(kind="uci_csv", uci_csv=str(path))
    with pytest.raises(ValueError, match="broken.csv.*missing column"):
        source.load_day(START)
