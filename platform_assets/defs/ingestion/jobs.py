"""One day's raw batch and its tensors, in one run per partition."""

import dagster as dg

from platform_assets.partitions import daily_partitions

daily_ingest_job = dg.define_asset_job(
    name="daily_ingest_job",
    selection=dg.AssetSelection.groups("ingestion", "features"),
    partitions_def=daily_partitions,
    description="Land one day of raw credit records and build its credit-history tensors on Spark.",
)
