"""Hands every new model version on to its per-version job, as that job's partition key."""

from __future__ import annotations

import json

import dagster as dg

from platform_assets.defs.training.jobs import NEXT_JOB, model_version_job, release_job

MODEL = dg.AssetKey("default_risk_model")
#: Materializations read per tick; more wait for the next tick (the cursor keeps the place).
BATCH = 20


def version_runs(instance: dg.DagsterInstance, after_storage_id: int) -> tuple[list[dg.RunRequest], list[str], int]:
    """Run requests for the default_risk_model materializations after ``after_storage_id``, the reasons
    for those that get none, and the new cursor position."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MODEL, after_storage_id=after_storage_id), limit=BATCH, ascending=True
    ).records
    requests, skipped, position = [], [], after_storage_id
    for record in records:
        position = max(position, record.storage_id)
        materialization = record.asset_materialization
        entry = materialization.metadata.get("model_version") if materialization else None
        if entry is None:
            skipped.append(f"materialization {record.storage_id} names no model_version")
            continue
        version = str(entry.value)
        run = instance.get_run_by_id(record.run_id)
        training_job = run.job_name if run else "?"
        job_name = NEXT_JOB.get(training_job, model_version_job.name)
        if _already_ran(instance, job_name, version):
            skipped.append(f"{job_name} already ran for {version} (e.g. in process, by make demo)")
            continue
        tags = {k: v for k, v in (run.tags if run else {}).items() if k.startswith("loop/")}
        requests.append(
            dg.RunRequest(
                run_key=f"{job_name}-{version}",
                job_name=job_name,
                partition_key=version,
                tags={**tags, "platform/model_version": version, "platform/training_run_id": record.run_id},
            )
        )
    return requests, skipped, position


def _already_ran(instance: dg.DagsterInstance, job_name: str, version: str) -> bool:
    """Whether ``job_name`` has a run for ``version`` already (launched by this sensor or run in process)."""
    runs = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, tags={"dagster/partition": version}), limit=1
    )
    return bool(runs)


@dg.sensor(
    name="model_version_sensor",
    jobs=[model_version_job, release_job],
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "For each new default_risk_model version, requests model_version_job (or release_job after "
        "retrain_and_deploy_job) with the version as partition key: evaluation, governance and rollout run "
        "for exactly the version that was trained, whatever else trains meanwhile."
    ),
)
def model_version_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else {}
    after = int(cursor.get("storage_id", 0))
    requests, skipped, position = version_runs(context.instance, after)
    for reason in skipped:
        context.log.info(reason)
    if not requests:
        return dg.SensorResult(skip_reason="no new model version", cursor=json.dumps({"storage_id": position}))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps({"storage_id": position}))
