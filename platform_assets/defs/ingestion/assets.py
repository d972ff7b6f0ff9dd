"""Raw daily batches of credit history, landed in the lake."""

from datetime import date
from typing import Any

import dagster as dg

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions, raw
from platform_assets.ml import schema
from platform_assets.partitions import daily_partitions
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.source import CreditHistorySource
from platform_assets.resources.spark import CreditSparkResource
from platform_assets.retries import fail_fast, io_retry_policy

RAW_TABLE_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name=c, type="int64") for c in schema.RAW_COLUMNS],
)


@dg.asset(
    partitions_def=daily_partitions,
    group_name="ingestion",
    kinds={"spark", "parquet"},
    retry_policy=io_retry_policy(),
    description=(
        "One day of raw credit records with the UCI 'default of credit card clients' schema, from the "
        "seeded synthetic generator or the UCI CSV replay. Spark tasks produce the day in bounded chunks and "
        "write each as a Parquet part; the driver commits the manifest. The partition digest (over the parts' "
        "sha256) is its data version."
    ),
)
def raw_credit_applications(
    context: dg.AssetExecutionContext,
    credit_source: CreditHistorySource,
    pyspark: CreditSparkResource,
    lake: LakeStorage,
) -> dg.MaterializeResult[Any]:
    partition = context.partition_key
    folder = lake_keys.raw(partition)
    store, source = lake.executor_store(), credit_source.day_source()
    with fail_fast(), partitions.writing(store, [folder]) as token:  # a bad or missing source will not fix itself
        landed = raw.land_partition(pyspark.spark_session, store, source, date.fromisoformat(partition), token)
        manifest = partitions.commit(store, folder, landed.parts, token)
    context.log.info(
        f"{manifest.rows} rows in {len(manifest.parts)} part(s) from {source.describe()} -> {lake.uri(folder)}"
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(manifest.digest),
        metadata={
            "dagster/row_count": manifest.rows,
            "dagster/column_schema": RAW_TABLE_SCHEMA,
            "source": source.describe(),
            "default_rate": landed.defaults / manifest.rows,
            "parts": len(manifest.parts),
            "digest": manifest.digest,
            "spark_master": pyspark.spark_session.sparkContext.master,
            "path": dg.MetadataValue.path(lake.uri(lake_keys.manifest(folder))),
        },
    )
