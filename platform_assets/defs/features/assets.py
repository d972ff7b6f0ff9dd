"""Per-client (months x channels) tensors built on Spark, with invalid rows quarantined."""

from typing import Any

import dagster as dg
from pydantic import Field

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions, tensors
from platform_assets.defs.ingestion.assets import raw_credit_applications
from platform_assets.ml import features, schema
from platform_assets.partitions import daily_partitions
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.spark import CreditSparkResource
from platform_assets.retries import fail_fast, io_retry_policy


class TensorConfig(dg.Config):
    include_protected: bool = Field(
        default=False,
        description="Append SEX/AGE/MARRIAGE/EDUCATION to the static vector (off: they are only carried along).",
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=[raw_credit_applications],
    group_name="features",
    kinds={"spark", "parquet"},
    retry_policy=io_retry_policy(),
    description=(
        "Each client's 6 months of history as a months x channels tensor plus a static vector, computed "
        "by Spark executors that read the raw parts from the lake, featurize them with "
        "platform_assets.ml.features (the function serving uses) and write the tensor parts themselves; "
        "the manifest commits the partition. Protected attributes ride along for the fairness audit. "
        "Invalid rows are kept with a reason and copied to the quarantine partition."
    ),
)
def credit_history_tensors(
    context: dg.AssetExecutionContext, config: TensorConfig, pyspark: CreditSparkResource, lake: LakeStorage
) -> dg.MaterializeResult[Any]:
    partition = context.partition_key
    store = lake.executor_store()
    folders = [lake_keys.quarantine(partition), lake_keys.tensors(partition)]
    # A concurrent run of the same partition spares this run's parts while it writes (and vice versa).
    with fail_fast(), partitions.writing(store, folders) as token:  # bad raw data will not fix itself
        written = tensors.featurize_partition(
            pyspark.spark_session, store, partition, include_protected=config.include_protected, run_token=token
        )
        if written.quarantined == written.rows:
            # Nothing is committed: the partition stays as it was (or absent), and this run's parts go.
            raise dg.Failure(
                description=f"partition {partition}: all {written.rows} rows failed validation ({written.reasons})",
                allow_retries=False,
            )
        quarantine = partitions.commit(store, folders[0], written.quarantine_parts, token)
        # The whole partition, quarantined rows included with their reason, is the asset's value.
        committed = partitions.commit(store, folders[1], written.tensor_parts, token)
    if quarantine.rows:
        context.log.warning(f"{quarantine.rows} of {committed.rows} rows quarantined in {partition}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(committed.digest),
        metadata={
            "dagster/row_count": committed.rows - quarantine.rows,
            "quarantined_rows": quarantine.rows,
            "quarantine_reasons": dg.MetadataValue.json(written.reasons),
            "quarantine_path": dg.MetadataValue.path(lake.uri(lake_keys.quarantine(partition))),
            "tensor_shape": f"{schema.N_MONTHS} months x {len(features.CHANNELS)} channels",
            "feature_spec": dg.MetadataValue.json(features.feature_spec(include_protected=config.include_protected)),
            "spark_master": pyspark.spark_session.sparkContext.master,
            "parts": len(committed.parts),
            "digest": committed.digest,
            "path": dg.MetadataValue.path(lake.uri(lake_keys.manifest(lake_keys.tensors(partition)))),
        },
    )
