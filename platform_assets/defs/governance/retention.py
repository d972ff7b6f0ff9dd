"""Weekly retention: archive old lake partitions and inference-log rows, delete old Dagster runs."""

from typing import Any

import dagster as dg
from pydantic import Field

from platform_assets.governance import retention
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.monitoring import LiveMonitoring
from platform_assets.retries import io_retry_policy

#: A group of its own: the retrain job selects the governance group, and retention must not run with a new model.
GROUP = "retention"


class RetentionConfig(dg.Config):
    retention_days: int = Field(
        default=retention.DEFAULT_RETENTION_DAYS,
        description="Keep this many days hot; older data is archived.",
    )
    archive_prefix: str = Field(
        default=retention.DEFAULT_ARCHIVE_PREFIX,
        description="Lake folder that receives archived partitions and inference-log rows (cold storage).",
    )
    delete_runs: bool = Field(default=True, description="Delete Dagster runs (and their logs) older than the period.")
    dry_run: bool = Field(default=False, description="Only report what would be archived or deleted.")
    today: str | None = Field(default=None, description="Reference day YYYY-MM-DD (default: today, UTC).")


@dg.asset(
    group_name=GROUP,
    kinds={"parquet"},
    retry_policy=io_retry_policy(),
    description=(
        "Retention: lake partitions (raw/, features/, quarantine/) and inference-log rows older than the retention "
        "period move to the archive prefix (copied, verified, then deleted); Dagster runs older than it are deleted. "
        "Partitions and runs that a model's manifest references are always kept. Reports the counts."
    ),
)
def data_retention(
    context: dg.AssetExecutionContext, config: RetentionConfig, lake: LakeStorage, live_monitoring: LiveMonitoring
) -> dg.MaterializeResult[Any]:
    from datetime import date

    today = date.fromisoformat(config.today) if config.today else None
    cutoff = retention.cutoff_date(config.retention_days, today)
    references = retention.model_references(lake)
    if references.unreadable:
        context.log.warning(f"unreadable model documents, their partitions are not protected: {references.unreadable}")
    lake_result = retention.archive_lake_partitions(
        lake, cutoff, references, archive_prefix=config.archive_prefix, dry_run=config.dry_run
    )
    log_result = retention.archive_inference_log(
        lake,
        live_monitoring.database(),
        cutoff,
        archive_prefix=config.archive_prefix,
        dry_run=config.dry_run,
        today=today,
    )
    if log_result.note:
        context.log.info(log_result.note)
    runs = (
        retention.delete_old_runs(
            context.instance, cutoff, references, current_run_id=context.run.run_id, dry_run=config.dry_run
        )
        if config.delete_runs
        else retention.RunsResult()
    )
    verb = "would archive" if config.dry_run else "archived"
    context.log.info(
        f"retention before {cutoff.isoformat()}: {verb} {sum(lake_result.archived.values())} lake files, "
        f"{log_result.predictions} predictions and {log_result.feedback} feedback rows; "
        f"{'would delete' if config.dry_run else 'deleted'} {len(runs.deleted)} runs; kept "
        f"{len(references.partitions)} referenced partitions and {len(runs.kept_referenced)} referenced runs"
    )
    short = {prefix.split("/")[0]: count for prefix, count in lake_result.archived.items()}
    return dg.MaterializeResult(
        metadata={
            "cutoff": cutoff.isoformat(),
            "retention_days": config.retention_days,
            "dry_run": config.dry_run,
            "archive_prefix": dg.MetadataValue.path(lake.uri(config.archive_prefix)),
            **{f"archived_{name}_files": count for name, count in short.items()},
            "archived_partitions": dg.MetadataValue.json(lake_result.archived_partitions),
            "kept_referenced_partitions": dg.MetadataValue.json(lake_result.kept_referenced),
            "referenced_by": dg.MetadataValue.json(references.partitions),
            "archived_predictions": log_result.predictions,
            "archived_feedback": log_result.feedback,
            "inference_log_archive_files": dg.MetadataValue.json(log_result.files),
            "deleted_runs": len(runs.deleted),
            "kept_referenced_runs": dg.MetadataValue.json(runs.kept_referenced),
        }
    )


retention_job = dg.define_asset_job(
    name="retention_job",
    selection=dg.AssetSelection.assets(data_retention),
    description="Archive lake partitions and inference-log rows older than the retention period; delete old runs.",
)

weekly_retention_schedule = dg.ScheduleDefinition(
    name="weekly_retention_schedule",
    job=retention_job,
    cron_schedule="0 4 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sundays 04:00 UTC: archive and delete what is older than the retention period.",
)
