"""``make demo``'s main job: ingest the latest daily partitions, train, evaluate, print the table.

Runs are recorded in the Dagster instance under ``$DAGSTER_HOME`` (default
``$PLATFORM_HOME/dagster``), so the UI started afterwards shows every materialization.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platform_assets import settings
from platform_assets.core import registry
from platform_assets.core.environment import Environment

if TYPE_CHECKING:
    import dagster as dg


def latest_partitions(days: int, today: date | None = None) -> list[str]:
    """The ``days`` newest complete daily partitions (yesterday backwards), oldest first."""
    end = today or datetime.now(UTC).date()
    start = date.fromisoformat(settings.PARTITIONS_START)
    keys = [end - timedelta(days=d) for d in range(days, 0, -1)]
    return [k.isoformat() for k in keys if k >= start]


#: The demo's instance: SQLite storage under DAGSTER_HOME, no telemetry, and the daemon dequeuing runs every second
#: rather than every 5 s (Dagster's default): a sensor's run then starts 2 s sooner on average, and the closed loop's
#: detection -> challenger path has five runs (README, closed loop).
DEMO_INSTANCE = """telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""
#: What this function wrote before the dequeue interval: such a file is brought up to ``DEMO_INSTANCE``.
_EARLIER_DEMO_INSTANCES = ("telemetry:\n  enabled: false\n",)


def ensure_dagster_home(home: Path) -> Path:
    """Point ``DAGSTER_HOME`` at the platform home (unless set) with ``DEMO_INSTANCE``'s configuration, unless its
    dagster.yaml is someone else's (then it is left as it is)."""
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(home / "dagster")))
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists() or config.read_text() in _EARLIER_DEMO_INSTANCES:
        partial = config.with_name(f".{config.name}.partial")
        partial.write_text(DEMO_INSTANCE)
        partial.replace(config)
    return dagster_home


#: Console output a person can follow: our own INFO lines (epochs, tables), not Dagster's DEBUG events.
#: The full event log stays in each run's log in the UI.
CONSOLE = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _execute(job: Any, instance: Any, what: str, **kwargs: Any) -> Any:
    """Run ``job`` in process; print each materialized asset; raise naming ``what`` when it fails."""
    print(f"> {what}", flush=True)
    result = job.execute_in_process(instance=instance, raise_on_error=False, **kwargs)
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        partition = f" [{materialization.partition}]" if materialization.partition else ""
        print(f"  materialized {materialization.asset_key.to_user_string()}{partition}", flush=True)
    if not result.success:
        raise RuntimeError(f"{what} failed: see run {result.run_id} in the Dagster UI")
    return result


def trained_version(result: Any) -> str:
    """The model version a training run created (from its default_risk_model materialization)."""
    versions = [
        str(e.step_materialization_data.materialization.metadata["model_version"].value)
        for e in result.get_asset_materialization_events()
        if e.asset_key is not None and e.asset_key.to_user_string() == "default_risk_model"
    ]
    if len(versions) != 1:
        raise RuntimeError(f"run {result.run_id} materialized {len(versions)} model versions, not one")
    return versions[0]


def train_and_release(
    definitions: Any,
    instance: Any,
    run_config: dict[str, Any] | None,
    *,
    deploy: bool,
    tags: dict[str, str] | None = None,
) -> str:
    """Train one model version, then run its per-version job for exactly that version (what
    ``model_version_sensor`` does under the daemon); return the version label."""
    from platform_assets.defs.training.jobs import NEXT_JOB

    job_name = "retrain_and_deploy_job" if deploy else "training_job"
    config = {**CONSOLE, **(run_config or {})}
    training = _execute(definitions.resolve_job_def(job_name), instance, job_name, run_config=config, tags=tags)
    version = trained_version(training)
    follow_up = NEXT_JOB[job_name]
    _execute(
        definitions.resolve_job_def(follow_up),
        instance,
        f"{follow_up} for {version}",
        partition_key=version,
        run_config=CONSOLE,
        tags={"platform/model_version": version, "platform/training_run_id": training.run_id},
    )
    return version


#: The local demo has nobody to approve a version's promotion: it records the labelled auto-approval instead
#: (``core.approval.AUTO_APPROVER``), which counts in the local environment only.
AUTO_APPROVAL = {"ops": {"promotion_approval": {"config": {"auto": True, "reason": "make demo: no reviewer"}}}}


def auto_approve(definitions: Any, instance: Any, version: str) -> None:
    """Record the local demo's labelled auto-approval of ``version`` (``promotion_approval_job``)."""
    job = definitions.resolve_job_def("promotion_approval_job")
    what = f"promotion_approval_job for {version} (local demo auto-approval, no human)"
    _execute(job, instance, what, partition_key=version, run_config={**CONSOLE, **AUTO_APPROVAL})


def run_pipeline(
    partitions: list[str], run_config: dict[str, Any] | None = None, *, deploy: bool = False
) -> dict[str, Any]:
    """Materialize ingest + features for ``partitions``, then train one model version and evaluate and govern it
    (and, with ``deploy``, build and roll it out, and in the local environment record the labelled auto-approval of
    its promotion); return its evaluation report.

    Raises ``RuntimeError`` naming the job and partition of the first failed run.
    """
    ensure_dagster_home(settings.platform_home())
    import dagster as dg

    from platform_assets import model_store
    from platform_assets.definitions import defs
    from platform_assets.defs.training.assets import EVALUATION_FILE

    definitions = defs()
    with dg.DagsterInstance.get() as instance:
        ingest = definitions.resolve_job_def("daily_ingest_job")
        for partition in partitions:
            _execute(ingest, instance, f"daily_ingest_job {partition}", partition_key=partition, run_config=CONSOLE)
        version = train_and_release(definitions, instance, run_config, deploy=deploy)
        if deploy and settings.load().env is Environment.LOCAL:
            auto_approve(definitions, instance, version)
    lake = _bound_resource(definitions, "lake")
    record = model_store.load_record(lake, version)
    report = model_store.read_json(lake, model_store.version_key(version, EVALUATION_FILE))
    return {**report, "partitions": len(record.data_versions)}


def _bound_resource(definitions: dg.Definitions, key: str) -> Any:
    """The resource ``definitions`` binds to ``key`` (Dagster types ``Definitions.resources`` as optional)."""
    return (definitions.resources or {})[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=int(os.environ.get("PLATFORM_DEMO_DAYS", "7")))
    parser.add_argument("--partitions", nargs="*", help="explicit partition dates instead of the latest --days")
    parser.add_argument("--no-deploy", action="store_true", help="stop after governance: no Bento, no service")
    args = parser.parse_args(argv)
    partitions = args.partitions or latest_partitions(args.days)
    if not partitions:
        raise SystemExit(f"no partitions to run: --days {args.days} reaches before {settings.PARTITIONS_START}")

    from platform_assets.ml.evaluate import metrics_table

    try:
        report = run_pipeline(partitions, deploy=not args.no_deploy)
    except RuntimeError as error:
        print(f"demo failed: {error}")
        return 1
    print(
        f"\n{registry.MODEL_NAME} {report['model_version']} on {report['test_rows']} test rows "
        f"({report['partitions']} partitions):\n"
    )
    print(metrics_table(report["metrics"]))
    if not args.no_deploy:
        print_service_help()
    return 0


def print_service_help() -> None:
    """Where the service runs and a key to call it with (created once, stored hashed)."""
    from platform_assets.core.api_keys import create_key
    from platform_assets.definitions import defs

    deployer = _bound_resource(defs(), "deployer")
    state = deployer.local_manager().current()
    if state is None:
        print("the credit-risk service is not running: see the credit_risk_deployment run")
        return
    key_file = settings.platform_home() / "serving" / "demo.key"
    if not key_file.exists():
        key, _ = create_key(deployer.api_keys_file(), ["predict", "feedback"], note="make demo")
        key_file.write_text(key)
        key_file.chmod(0o600)
    key = key_file.read_text().strip()
    print(f"\ncredit-risk service: {state.url}  (docs: {state.url}/docs, metrics: {state.url}/metrics)")
    print(f"demo API key (predict, feedback), also in {key_file}:\n  {key}")
    print(
        f"try:\n  curl -s -X POST {state.url}/predict -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' -d @- <<'JSON'\n"
        '{"applications": [{"ID": 1, "LIMIT_BAL": 20000, "AGE": 24, "PAY_0": 2, "PAY_2": 2, "PAY_3": -1, '
        '"PAY_4": -1, "PAY_5": -2, "PAY_6": -2, "BILL_AMT1": 3913, "BILL_AMT2": 3102, "BILL_AMT3": 689, '
        '"BILL_AMT4": 0, "BILL_AMT5": 0, "BILL_AMT6": 0, "PAY_AMT1": 0, "PAY_AMT2": 689, "PAY_AMT3": 0, '
        '"PAY_AMT4": 0, "PAY_AMT5": 0, "PAY_AMT6": 0}]}\nJSON'
    )


if __name__ == "__main__":
    raise SystemExit(main())
