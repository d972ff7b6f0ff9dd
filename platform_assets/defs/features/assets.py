"""Per-client (months x channels) tensors built on Spark, with invalid rows quarantined."""

from typing import Any

import dagster as dg
from pydantic import Field

from platform_assets.core import lake_keys
from platform_assets.defs.ingestion.assets import raw_credit_applications
from platform_assets.ml import features, schema
from platform_assets.ml.spark_features import featurize_on_spark
from platform_assets.partitions import daily_partitions
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.spark import CreditSparkResource
from platform_assets.retries import fail_fast, io_retry_policy

TENSOR_COLUMNS = [
    schema.ID,
    schema.TARGET,
    *schema.PROTECTED_COLUMNS,
    features.REASON,
    features.HISTORY,
    features.STATIC,
]


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
        "on Spark with platform_assets.ml.features.featurize_rows (the function serving uses). Protected "
        "attributes ride along for the fairness audit. Invalid rows go to the quarantine file with a reason."
    ),
)
def credit_history_tensors(
    context: dg.AssetExecutionContext, config: TensorConfig, pyspark: CreditSparkResource, lake: LakeStorage
) -> dg.MaterializeResult[Any]:
    partition = context.partition_key
    with fail_fast():
        raw = lake.read_frame(lake_keys.raw(partition))
    rows = featurize_on_spark(pyspark.spark_session, raw, include_protected=config.include_protected)
    quarantined = rows[rows[features.REASON].notna()]
    valid = rows[rows[features.REASON].isna()]
    if valid.empty:
        raise dg.Failure(
            description=f"partition {partition}: all {len(rows)} rows failed validation; see the quarantine file",
            allow_retries=False,
        )
    # The whole partition, quarantined rows included with their reason, is the asset's value.
    digest = lake.write_frame(lake_keys.tensors(partition), rows[TENSOR_COLUMNS])
    if quarantined.empty:
        lake.delete(lake_keys.quarantine(partition))
    else:
        lake.write_frame(lake_keys.quarantine(partition), quarantined[[*schema.RAW_COLUMNS, features.REASON]])
        context.log.warning(f"{len(quarantined)} of {len(rows)} rows quarantined in {partition}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "dagster/row_count": len(valid),
            "quarantined_rows": len(quarantined),
            "quarantine_reasons": dg.MetadataValue.json(
                {str(k): int(v) for k, v in quarantined[features.REASON].value_counts().items()}
            ),
            "quarantine_path": dg.MetadataValue.path(lake.uri(lake_keys.quarantine(partition))),
            "tensor_shape": f"{schema.N_MONTHS} months x {len(features.CHANNELS)} channels",
            "feature_spec": dg.MetadataValue.json(features.feature_spec(include_protected=config.include_protected)),
            "spark_master": pyspark.spark_session.sparkContext.master,
            "sha256": digest,
            "path": dg.MetadataValue.path(lake.uri(lake_keys.tensors(partition))),
        },
    )
