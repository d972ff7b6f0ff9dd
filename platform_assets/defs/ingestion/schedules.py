"""Daily ingest: each day, land yesterday's partition and build its tensors."""

import dagster as dg

from platform_assets.defs.ingestion.jobs import daily_ingest_job

daily_ingest_schedule = dg.build_schedule_from_partitioned_job(
    daily_ingest_job,
    name="daily_ingest_schedule",
    hour_of_day=1,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="01:00 UTC: materialize the partition of the day that just ended (raw + tensors).",
)
