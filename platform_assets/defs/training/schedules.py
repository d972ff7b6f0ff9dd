"""Weekly retrain on everything ingested so far."""

import dagster as dg

from platform_assets.defs.training.jobs import retrain_and_deploy_job

weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain_schedule",
    job=retrain_and_deploy_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays 03:00 UTC, after the daily ingest: retrain, gate, build and roll out the model.",
)
