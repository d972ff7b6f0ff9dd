"""Checks on the raw batches: out-of-range rows are counted here and quarantined downstream."""

from collections import Counter

import dagster as dg

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions
from platform_assets.defs.ingestion.assets import raw_credit_applications
from platform_assets.ml.features import quarantine_reasons
from platform_assets.resources.gates import ModelGates
from platform_assets.resources.lake import LakeStorage


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
    context: dg.AssetCheckExecutionContext, lake: LakeStorage, model_gates: ModelGates
) -> dg.AssetCheckResult:
    rows, counts = 0, Counter[str]()
    # Part by part: memory bounded by one part at any rows per day.
    for frame in partitions.iter_partition(lake, lake_keys.raw(context.partition_key)):
        rows += len(frame)
        counts.update({str(k): int(v) for k, v in quarantine_reasons(frame).value_counts().items()})
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
