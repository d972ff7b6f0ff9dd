"""Schedules replace the Airflow DAG: daily ingest of the day that ended, weekly retrain."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from platform_assets.definitions import defs
from platform_assets.retries import io_retry_policy


def run_requests(schedule_name: str, at: datetime) -> list[dg.RunRequest]:
    definitions = defs()
    schedule = definitions.resolve_schedule_def(schedule_name)
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
        data = schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def test_daily_ingest_requests_the_day_that_just_ended(platform_home: Path) -> None:
    [request] = run_requests("daily_ingest_schedule", datetime(2026, 11, 3, 1, 0, tzinfo=UTC))
    assert request.partition_key == "2026-11-02"
    schedule = defs().resolve_schedule_def("daily_ingest_schedule")
    assert schedule.cron_schedule == "0 1 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_weekly_retrain_runs_the_training_job_on_mondays(platform_home: Path) -> None:
    schedule = defs().resolve_schedule_def("weekly_retrain_schedule")
    assert schedule.cron_schedule == "0 3 * * 1"
    assert schedule.job_name == "retrain_and_deploy_job"
    [request] = run_requests("weekly_retrain_schedule", datetime(2026, 11, 2, 3, 0, tzinfo=UTC))
    assert request.partition_key is None


def test_every_asset_retries_io_failures_with_the_configured_policy(
    platform_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The policies were fixed at import, with this process' environment (tests/conftest.py: 1 s delay).
    expected = io_retry_policy()
    definitions = defs()
    for key in definitions.resolve_all_asset_keys():
        policy = definitions.resolve_assets_def(key).op.retry_policy
        assert policy is not None, f"{key.to_user_string()} has no retry policy"
        assert (policy.max_retries, policy.delay) == (expected.max_retries, expected.delay), key.to_user_string()
    monkeypatch.setenv("PLATFORM_RETRIES", "4")
    monkeypatch.setenv("PLATFORM_RETRY_DELAY_SECONDS", "60")
    assert (io_retry_policy().max_retries, io_retry_policy().delay) == (4, 60)
    monkeypatch.delenv("PLATFORM_RETRIES")
    monkeypatch.delenv("PLATFORM_RETRY_DELAY_SECONDS")
    assert (io_retry_policy().max_retries, io_retry_policy().delay) == (2, 300), "the seed's defaults"
