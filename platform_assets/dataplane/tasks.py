"""One Python task per lake part on Spark's executors, and only small summary rows back to the driver.

A task returns ``Summary`` rows (per written file: its name, sha256 and rows; per counted thing, e.g. a
quarantine reason: a count); Spark sums them by everything but ``rows`` and the driver collects the totals,
never a partition's rows. A task's failure comes back as the task's own message (it names the object).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from platform_assets.dataplane.objects import LakeUnavailable
from platform_assets.dataplane.partitions import PartitionError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T = TypeVar("T")


class Summary(NamedTuple):
    """What a task tells the driver: ``output`` says what it is about (a file kind or a count's kind)."""

    output: str
    name: str
    sha256: str
    reason: str | None
    rows: int


_SUMMARY_SCHEMA = "output string, name string, sha256 string, reason string, rows long"
_TASK_ERROR = re.compile(r"(?:PartitionError|FileNotFoundError|RawSchemaError|OnnxModelError|ValueError): (.+)")
_LAKE_UNAVAILABLE = re.compile(r"LakeUnavailable: (.+)")


def named_failure(error: Exception) -> Exception:
    """The task's own message (it names the object) instead of only a Java stack trace: bad data as a
    ``PartitionError`` (not retried), an unreachable lake as ``LakeUnavailable`` (retried)."""
    unavailable = _LAKE_UNAVAILABLE.findall(str(error))
    if unavailable:
        return LakeUnavailable(unavailable[-1].strip())
    found = _TASK_ERROR.findall(str(error))
    return PartitionError(found[-1].strip()) if found else error


def run_part_tasks(spark: SparkSession, tasks: Sequence[T], task: Callable[[T], list[Summary]]) -> list[Summary]:
    """``task`` on each of ``tasks`` (one Spark task each), and the summed summaries, sorted."""
    from pyspark.sql import functions as F

    written = spark.sparkContext.parallelize(list(tasks), max(len(tasks), 1)).flatMap(task)
    summary = spark.createDataFrame(written, _SUMMARY_SCHEMA)
    try:
        totals = summary.groupBy("output", "name", "sha256", "reason").agg(F.sum("rows").alias("rows")).collect()
    except Exception as error:
        raise named_failure(error) from error
    return sorted(
        (Summary(r["output"], r["name"], r["sha256"], r["reason"], int(r["rows"])) for r in totals),
        key=lambda s: (s.output, s.name, s.reason or ""),
    )
