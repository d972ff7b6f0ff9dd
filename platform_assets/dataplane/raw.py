"""``raw_credit_applications`` on Spark: each task produces one chunk of a day and writes it as one lake part.

The driver sends each task a chunk index; the task asks the day's source for that chunk (the seeded
generator draws it, the UCI replay reads its file), writes it as a Parquet part and returns its name,
sha256, rows and defaults. The driver commits the manifest; no row passes through it, so its memory does not
grow with the rows per day. ``count_out_of_range`` is the raw check's count, on executors too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from platform_assets.core import lake_keys
from platform_assets.dataplane.objects import ObjectStore
from platform_assets.dataplane.partitions import Part, read_part, reading, write_part
from platform_assets.dataplane.sources import DaySource
from platform_assets.dataplane.tasks import Summary, run_part_tasks
from platform_assets.ml import features, schema

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

RAW, DEFAULTS, ROWS, REASONS = "raw", "defaults", "rows", "reason"


@dataclass(frozen=True)
class LandedPartition:
    """What one Spark run wrote (not yet committed) and what Spark counted."""

    run_token: str
    parts: tuple[Part, ...]
    defaults: int  # rows with TARGET = 1

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)


def land_chunk(store: ObjectStore, source: DaySource, day: date, index: int, run_token: str) -> list[Summary]:
    """One Spark task: chunk ``index`` of ``day`` -> one raw part; its summary back."""
    chunk = source.chunk(day, index)
    part = write_part(store, lake_keys.raw(day.isoformat()), lake_keys.part_name(run_token, index), chunk)
    return [
        Summary(RAW, part.name, part.sha256, None, part.rows),
        Summary(DEFAULTS, "", "", None, int(chunk[schema.TARGET].sum())),
    ]


def land_partition(
    spark: SparkSession, store: ObjectStore, source: DaySource, day: date, run_token: str
) -> LandedPartition:
    """Write ``day``'s raw parts from ``spark``'s executors, one task per chunk; the parts are not committed."""
    chunks = source.chunks(day)  # on the driver: a day the source cannot give fails before any task
    totals = run_part_tasks(spark, range(chunks), lambda index: land_chunk(store, source, day, index, run_token))
    return LandedPartition(
        run_token=run_token,
        parts=tuple(Part(t.name, t.rows, t.sha256) for t in totals if t.output == RAW),
        defaults=sum(t.rows for t in totals if t.output == DEFAULTS),
    )


def count_part(store: ObjectStore, folder: str, part: Part) -> list[Summary]:
    """One Spark task: a committed raw part's rows and its out-of-range rows by reason."""
    frame = read_part(store, folder, part).to_pandas()
    reasons = features.quarantine_reasons(frame).value_counts()
    return [
        Summary(ROWS, "", "", None, len(frame)),
        *(Summary(REASONS, "", "", str(r), int(n)) for r, n in reasons.items()),
    ]


def count_out_of_range(spark: SparkSession, store: ObjectStore, partition: str) -> tuple[int, Counter[str]]:
    """The committed raw partition's rows and out-of-range rows by quarantine reason, counted on executors."""
    folder = lake_keys.raw(partition)
    with reading(store, folder) as manifest:
        totals = run_part_tasks(spark, manifest.parts, lambda part: count_part(store, folder, part))
    rows = sum(t.rows for t in totals if t.output == ROWS)
    return rows, Counter({str(t.reason): t.rows for t in totals if t.output == REASONS})
