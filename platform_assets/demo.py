"""``make demo``'s main job: ingest the latest daily partitions, train, evaluate, print the table.

Runs are recorded in the Dagster instance under ``$DAGSTER_HOME`` (default
``$PLATFORM_HOME/dagster``), so the UI started afterwards shows every materialization.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from platform_assets import settings


def latest_partitions(days: int, today: date | None = None) -> list[str]:
    """The ``days`` newest complete daily partitions (yesterday backwards), oldest first."""
    end = today or datetime.now(UTC).date()
    start = date.fromisoformat(settings.PARTITIONS_START)
    keys = [end - timedelta(days=d) for d in range(days, 0, -1)]
    return [k.isoformat() for k in keys if k >= start]


def ensure_dagster_home(home: Path) -> Path:
    """Point ``DAGSTER_HOME`` at the platform home (unless set) with SQLite storage and no telemetry."""
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(home / "dagster")))
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dagster_home


def run_pipeline(
    partitions: list[str], run_config: dict[str, Any] | None = None, *, deploy: bool = False
) -> dict[str, Any]:
    """Materialize ingest + features for ``partitions``, then train, evaluate and run governance (and, with
    ``deploy``, build and roll out the service); return the evaluation report.

    Raises ``RuntimeError`` naming the job and partition of the first failed run.
    """
    ensure_dagster_home(settings.platform_home())
    import dagster as dg

    from platform_assets import lake_keys, model_store
    from platform_assets.definitions import defs

    definitions = defs()
    with dg.DagsterInstance.get() as instance:
        ingest = definitions.resolve_job_def("daily_ingest_job")
        for partition in partitions:
            print(f"ingest + features: {partition}", flush=True)
            if not ingest.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False).success:
                raise RuntimeError(f"daily_ingest_job failed for {partition}: see the run in the Dagster UI")
        job_name = "retrain_and_deploy_job" if deploy else "training_job"
        print(f"{job_name}", flush=True)
        job = definitions.resolve_job_def(job_name)
        if not job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False).success:
            raise RuntimeError(f"{job_name} failed: see the run in the Dagster UI")
        if not deploy:
            governance = definitions.resolve_job_def("governance_job")
            if not governance.execute_in_process(instance=instance, raise_on_error=False).success:
                raise RuntimeError("governance_job failed: see the run in the Dagster UI")
    lake = definitions.resources["lake"]
    info = model_store.latest_info(lake, settings.MODEL_NAME)
    report = model_store.read_json(lake, f"{lake_keys.model_dir(settings.MODEL_NAME, info['version'])}/evaluation.json")
    return {**report, "partitions": len(info["data_versions"])}


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
        f"\n{settings.MODEL_NAME} {report['model_version']} on {report['test_rows']} test rows "
        f"({report['partitions']} partitions):\n"
    )
    print(metrics_table(report["metrics"]))
    if not args.no_deploy:
        print_service_help()
    return 0


def print_service_help() -> None:
    """Where the service runs and a key to call it with (created once, stored hashed)."""
    from platform_assets.definitions import defs
    from platform_assets.serving.auth import create_key

    deployer = defs().resources["deployer"]
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
