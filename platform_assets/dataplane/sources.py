"""Where a day's raw records come from, as Spark tasks see it: picklable, Dagster-free, one chunk at a time.

A source splits a day into chunks (``chunks``), each produced alone (``chunk``): one Spark task lands one
chunk as one lake part, so the driver never holds a day's rows. The control plane's ``CreditHistorySource``
resource builds one of these from its configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import pandas as pd

from platform_assets.ml import synthetic, uci


class DaySource(Protocol):
    def chunks(self, day: date) -> int:
        """How many chunks ``day`` comes in; raises (naming the setting) for a day the source cannot give."""
        ...

    def chunk(self, day: date, index: int) -> pd.DataFrame:
        """Chunk ``index`` of ``day``: raw records with the columns and dtypes of ``schema.RAW_COLUMNS``."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class SyntheticDays:
    """The seeded generator: ``rows_per_day`` rows a day in chunks of ``chunk_rows``."""

    seed: int
    rows_per_day: int
    chunk_rows: int = synthetic.CHUNK_ROWS

    def chunks(self, day: date) -> int:
        return synthetic.chunk_count(self.rows_per_day, self.chunk_rows)

    def chunk(self, day: date, index: int) -> pd.DataFrame:
        return synthetic.generate_chunk(day, self.rows_per_day, self.seed, index, self.chunk_rows)

    def describe(self) -> str:
        return f"synthetic(seed={self.seed})"


@dataclass(frozen=True)
class UciReplayDays:
    """The UCI CSV (a path or ``s3://`` URI) replayed over ``replay_days`` days from ``replay_start``: about
    1,000 rows a day, one chunk."""

    csv: str | None
    replay_start: str
    replay_days: int
    s3_endpoint_url: str | None = None

    def _day_index(self, day: date) -> int:
        if not self.csv:
            raise ValueError("source kind 'uci_csv' needs uci_csv (env PLATFORM_UCI_CSV): a path or s3:// URI")
        index = (day - date.fromisoformat(self.replay_start)).days
        if not 0 <= index < self.replay_days:
            raise ValueError(
                f"partition {day} is outside the UCI replay window: {self.replay_days} days from "
                f"{self.replay_start} (set PLATFORM_UCI_REPLAY_START to move it)"
            )
        return index

    def chunks(self, day: date) -> int:
        self._day_index(day)
        return 1

    def chunk(self, day: date, index: int) -> pd.DataFrame:
        if index != 0:
            raise ValueError(f"a UCI replay day is one chunk, got chunk {index}")
        day_index = self._day_index(day)
        frame = uci.read_uci_csv(self._read_bytes(), self.csv or "")
        batch = uci.replay_partition(frame, day_index, self.replay_days)
        if batch.empty:
            raise ValueError(f"{self.csv}: replay day {day_index} ({day}) has no rows")
        return batch

    def describe(self) -> str:
        return f"uci_csv({self.csv})"

    def _read_bytes(self) -> bytes:
        csv = self.csv or ""
        if csv.startswith("s3://"):
            import boto3

            bucket, _, key = csv[len("s3://") :].partition("/")
            client = boto3.client("s3", endpoint_url=self.s3_endpoint_url)
            try:
                return client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
            except (client.exceptions.NoSuchKey, client.exceptions.NoSuchBucket):
                raise FileNotFoundError(f"UCI CSV not found: {csv}") from None
        path = Path(csv)
        if not path.is_file():
            raise FileNotFoundError(f"UCI CSV not found: {path}")
        return path.read_bytes()
