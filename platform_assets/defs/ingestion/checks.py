"""Checks on the raw batches: out-of-range rows are counted here and quarantined downstream."""

import dagster as dg

from platform_assets.dataplane import raw
from platform_assets.defs.ingestion.assets import raw_credit_applications
from platform_assets.resources.gates import ModelGates
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.spark import CreditSparkResource


@dg.asset_check(
    asset=raw_credit_applications,
    partitions_def=raw_credit_applications.partitions_def,
    description=(
        "Counts rows with out-of-range values (LIMIT_BAL <= 0, AGE outside 18-100, unknown codes). "
        "They are quarantined by credit_history_tensors, never dropped silently; the check warns on any "
        "and fails when their share exceeds the configured maximum."
    ),
)
def raw_values_in_range(
    context: dg.AssetCheckExecutionContext, lake: LakeStorage, pyspark: CreditSparkResource, model_gates: ModelGates
) -> dg.AssetCheckResult:
    # Counted by Spark tasks, one per part: the driver's memory does not grow with the rows per day.
    rows, counts = raw.count_out_of_range(pyspark.spark_session, lake.executor_store(), context.partition_key)
    if not rows:
        raise dg.Failure(description=f"raw partition {context.partition_key} is committed with no rows")
    invalid = sum(counts.values())
    share = invalid / rows
    severity = dg.AssetCheckSeverity.ERROR if share > model_gates.max_quarantine_share else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=invalid == 0,
        severity=severity,
        metadata={
            "rows": rows,
            "out_of_range_rows": invalid,
            "out_of_range_share": share,
            "max_quarantine_share": model_gates.max_quarantine_share,
            "reasons": dg.MetadataValue.json(dict(counts)),
        },
    )
