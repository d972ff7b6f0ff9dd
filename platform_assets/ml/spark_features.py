"""Run ``features.featurize_rows`` on Spark: the distributed form of the one row transform."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

from platform_assets.ml import schema
from platform_assets.ml.features import HISTORY, REASON, STATIC, featurize_rows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _output_schema() -> str:
    raw = ", ".join(f"`{c}` bigint" for c in schema.RAW_COLUMNS)
    return f"{raw}, `{REASON}` string, `{HISTORY}` array<float>, `{STATIC}` array<float>"


def _featurize_batches(batches: Iterator[pd.DataFrame], include_protected: bool) -> Iterator[pd.DataFrame]:
    for batch in batches:
        yield featurize_rows(batch, include_protected=include_protected)


def featurize_on_spark(spark: SparkSession, raw: pd.DataFrame, *, include_protected: bool = False) -> pd.DataFrame:
    """Featurize ``raw`` (typed UCI-schema rows) on ``spark``; returns the same columns as ``featurize_rows``."""
    frame: DataFrame = spark.createDataFrame(raw[list(schema.RAW_COLUMNS)])
    featurized = frame.mapInPandas(
        lambda batches: _featurize_batches(batches, include_protected), schema=_output_schema()
    )
    # pyspark types toPandas() with a pandas alias mypy cannot resolve here (pandas ships no stubs).
    out: pd.DataFrame = featurized.toPandas()
    # Arrow hands arrays back as numpy arrays; lists match what featurize_rows returns.
    for column in (HISTORY, STATIC):
        out[column] = [list(map(float, v)) if v is not None else [] for v in out[column]]
    return out.sort_values(schema.ID).reset_index(drop=True)
