"""Raw daily batches of credit history, landed in the lake."""

from datetime import date
from typing import Any

import dagster as dg

from platform_assets.core import lake_keys
from platform_assets.ml import schema
from platform_assets.partitions import daily_partitions
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.source import CreditHistorySource
from platform_assets.retries import fail_fast, io_retry_policy

RAW_TABLE_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name=c, type="int64") for c in schema.RAW_COLUMNS],
)


@dg.asset(
    partitions_def=daily_partitions,
    group_name="ingestion",
    kinds={"pandas", "parquet"},
    retry_policy=io_retry_policy(),
    description=(
        "One day of raw credit records with the UCI 'default of credit card clients' schema, from the "
        "seeded synthetic generator or the UCI CSV replay. The partition's sha256 is its data version."
    ),
)
def raw_credit_applications(
    context: dg.AssetExecutionContext, credit_source: CreditHistorySource, lake: LakeStorage
) -> dg.MaterializeResult[Any]:
    partition = context.partition_key
    with fail_fast():  # a bad or missing source will not fix itself
        frame = credit_source.load_day(date.fromisoformat(partition))
    key = lake_keys.raw(partition)
    digest = lake.write_frame(key, frame)
    context.log.info(f"{len(frame)} rows from {credit_source.describe()} -> {lake.uri(key)}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": RAW_TABLE_SCHEMA,
            "source": credit_source.describe(),
            "default_rate": float(frame[schema.TARGET].mean()),
            "sha256": digest,
            "path": dg.MetadataValue.path(lake.uri(key)),
        },
    )
