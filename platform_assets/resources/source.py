"""Where raw credit records come from: the seeded synthetic generator or the UCI CSV replay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd

from platform_assets.ml import synthetic, uci


class CreditHistorySource(dg.ConfigurableResource["CreditHistorySource"]):
    """Produces one day's raw records with the UCI schema."""

    kind: Literal["synthetic", "uci_csv"] = "synthetic"
    uci_csv: str | None = None
    seed: int = 2005
    rows_per_day: int = 1000
    replay_start: str = "2026-10-01"
    replay_days: int = 30
    s3_endpoint_url: str | None = None

    def describe(self) -> str:
        return f"synthetic(seed={self.seed})" if self.kind == "synthetic" else f"uci_csv({self.uci_csv})"

    def _read_source_bytes(self) -> bytes:
        if not self.uci_csv:
            raise ValueError("source kind 'uci_csv' needs uci_csv (env PLATFORM_UCI_CSV): a path or s3:// URI")
        if self.uci_csv.startswith("s3://"):
            import boto3

            bucket, _, key = self.uci_csv[len("s3://") :].partition("/")
            client = boto3.client("s3", endpoint_url=self.s3_endpoint_url)
            try:
                return client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
            except (client.exceptions.NoSuchKey, client.exceptions.NoSuchBucket):
                raise FileNotFoundError(f"UCI CSV not found: {self.uci_csv}") from None
        path = Path(self.uci_csv)
        if not path.is_file():
            raise FileNotFoundError(f"UCI CSV not found: {path}")
        return path.read_bytes()

    def load_day(self, day: date) -> pd.DataFrame:
        """Raw records for ``day`` in one frame (``iter_day`` for days of any size)."""
        return pd.concat(list(self.iter_day(day)), ignore_index=True)

    def iter_day(self, day: date) -> Iterator[pd.DataFrame]:
        """Raw records for ``day`` in chunks of bounded size (synthetic) or as one frame (the UCI replay of
        ~1,000 rows a day); raises naming the source on any schema problem or an empty day."""
        if self.kind == "synthetic":
            yield from synthetic.generate_chunks(day, self.rows_per_day, self.seed)
            return
        yield self._replay_day(day)

    def _replay_day(self, day: date) -> pd.DataFrame:
        day_index = (day - date.fromisoformat(self.replay_start)).days
        if not 0 <= day_index < self.replay_days:
            raise ValueError(
                f"partition {day} is outside the UCI replay window: {self.replay_days} days from "
                f"{self.replay_start} (set PLATFORM_UCI_REPLAY_START to move it)"
            )
        frame = uci.read_uci_csv(self._read_source_bytes(), self.uci_csv or "")
        batch = uci.replay_partition(frame, day_index, self.replay_days)
        if batch.empty:
            raise ValueError(f"{self.uci_csv}: replay day {day_index} ({day}) has no rows")
        return batch
