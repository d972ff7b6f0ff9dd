"""The code location loads, and its graph only changes on purpose (snapshot)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from platform_assets.definitions import defs

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "definitions.json"


def describe_partitions(partitions: dg.PartitionsDefinition | None) -> str | None:
    if partitions is None:
        return None
    if isinstance(partitions, dg.DynamicPartitionsDefinition):
        return f"dynamic:{partitions.name}"
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        return f"{partitions.cron_schedule} from {partitions.start.date().isoformat()}"
    return type(partitions).__name__


def describe(definitions: dg.Definitions) -> dict[str, object]:
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "partitions": describe_partitions(node.partitions_def),
            "has_description": bool(node.description),
            "has_code_version": node.code_version is not None,
            "freshness": type(node.freshness_policy).__name__ if node.freshness_policy else None,
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda c: c.to_user_string()):
        spec = graph.get_check_spec(check_key)
        checks[check_key.to_user_string()] = {"blocking": spec.blocking}
    jobs = {}
    for job in definitions.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
            "partitions": describe_partitions(job.partitions_def),
        }
    schedules = {
        s.name: {"cron": s.cron_schedule, "job": s.job_name, "timezone": s.execution_timezone}
        for s in definitions.schedules or []
    }
    sensors = {
        s.name: {
            "jobs": sorted(j.name for j in s.jobs) if s.has_jobs else [],  # a repairing sensor targets no job
            "minimum_interval_seconds": s.minimum_interval_seconds,
        }
        for s in definitions.sensors or []
    }
    return {
        "assets": assets,
        "checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
        "resources": sorted(definitions.resources or {}),
    }


def test_definitions_match_snapshot(platform_home: Path) -> None:
    actual = describe(defs())
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert actual == expected, "the asset graph changed: review, then rerun with UPDATE_SNAPSHOTS=1"


def test_partitions_are_daily_from_the_configured_start(platform_home: Path) -> None:
    graph = defs().resolve_asset_graph()
    partitions = graph.get(dg.AssetKey("raw_credit_applications")).partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.get_first_partition_key() == "2026-10-01"
    assert graph.get(dg.AssetKey("credit_history_tensors")).partitions_def == partitions


def test_workspace_loads_the_code_location() -> None:
    workspace = (Path(__file__).resolve().parents[2] / "workspace.yaml").read_text()
    assert "platform_assets.definitions" in workspace


def test_every_asset_about_a_model_version_is_partitioned_by_it(platform_home: Path) -> None:
    graph = defs().resolve_asset_graph()
    per_version = {
        "baseline_models",
        "model_evaluation",
        "fairness_report",
        "data_drift_report",
        "model_performance_report",
        "model_manifest",
        "model_card",
        "credit_risk_bento",
        "credit_risk_deployment",
        "promotion_approval",
    }
    for name in per_version:
        partitions = graph.get(dg.AssetKey(name)).partitions_def
        assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name == "model_versions", name


def test_every_job_runs_its_steps_in_the_run_process() -> None:
    """A process per step reloads the code location each time (most of release_job's time under the daemon)."""
    jobs = [job for job in defs().resolve_all_job_defs() if not job.name.startswith("__")]
    assert {job.name: job.executor_def.name for job in jobs} == {job.name: "in_process" for job in jobs}
    assert "release_job" in {job.name for job in jobs}
