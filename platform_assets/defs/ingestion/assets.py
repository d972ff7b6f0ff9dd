"""Raw daily batches of credit history, landed in the lake."""

from datetime import date
from typing import Any

import dagster as dg

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions
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
        "seeded synthetic generator or the UCI CSV replay, written in bounded chunks as the parts of a "
        "partition committed by its manifest. The partition digest (over the parts' sha256) is its data version."
    ),
)
def raw_credit_applications(
    context: dg.AssetExecutionContext, credit_source: CreditHistorySource, lake: LakeStorage
) -> dg.MaterializeResult[Any]:
    partition = context.partition_key
    folder = lake_keys.raw(partition)
    token = partitions.new_run_token()
    parts, defaults = [], 0
    with fail_fast():  # a bad or missing source will not fix itself
        for index, chunk in enumerate(credit_source.iter_day(date.fromisoformat(partition))):
            parts.append(partitions.write_part(lake, folder, lake_keys.part_name(token, index), chunk))
            defaults += int(chunk[schema.TARGET].sum())
    manifest = partitions.commit(lake, folder, parts, token)
    context.log.info(
        f"{manifest.rows} rows in {len(parts)} part(s) from {credit_source.describe()} -> {lake.uri(folder)}"
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(manifest.digest),
        metadata={
            "dagster/row_count": manifest.rows,
            "dagster/column_schema": RAW_TABLE_SCHEMA,
            "source": credit_source.describe(),
            "default_rate": defaults / manifest.rows,
            "parts": len(manifest.parts),
            "digest": manifest.digest,
            "path": dg.MetadataValue.path(lake.uri(lake_keys.manifest(folder))),
        },
    )
