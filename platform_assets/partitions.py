"""The daily partitioning shared by ingestion and features."""

from __future__ import annotations

import dagster as dg

from platform_assets.settings import PARTITIONS_START

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START)
