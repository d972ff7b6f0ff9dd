"""Where raw credit records come from: the seeded synthetic generator or the UCI CSV replay."""

from __future__ import annotations

from datetime import date
from typing import Literal

import dagster as dg
import pandas as pd

from platform_assets.dataplane.sources import DaySource, SyntheticDays, UciReplayDays


class CreditHistorySource(dg.ConfigurableResource["CreditHistorySource"]):
    """Produces one day's raw records with the UCI schema, chunk by chunk on Spark executors (``day_source``)."""

    kind: Literal["synthetic", "uci_csv"] = "synthetic"
    uci_csv: str | None = None
    seed: int = 2005
    rows_per_day: int = 1000
    replay_start: str = "2026-10-01"
    replay_days: int = 30
    s3_endpoint_url: str | None = None

    def day_source(self) -> DaySource:
        """The configured source as a picklable, Dagster-free object that Spark tasks call."""
        if self.kind == "synthetic":
            return SyntheticDays(seed=self.seed, rows_per_day=self.rows_per_day)
        return UciReplayDays(
            csv=self.uci_csv,
            replay_start=self.replay_start,
            replay_days=self.replay_days,
            s3_endpoint_url=self.s3_endpoint_url,
        )

    def describe(self) -> str:
        return self.day_source().describe()

    def load_day(self, day: date) -> pd.DataFrame:
        """Raw records for ``day`` in one frame, in this process (small days and tests; the asset lands a
        day chunk by chunk on Spark); raises naming the source on any schema problem or an empty day."""
        source = self.day_source()
        return pd.concat([source.chunk(day, i) for i in range(source.chunks(day))], ignore_index=True)
