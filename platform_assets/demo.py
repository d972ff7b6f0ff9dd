"""``make demo``'s main job: ingest the latest daily partitions, train, evaluate, print the table.

Runs are recorded in the Dagster instance under ``$DAGSTER_HOME`` (default
``$PLATFORM_HOME/dagster``), so the UI started afterwards shows every materialization.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta

from platform_assets import settings


def latest_partitions(days: int, today: datetime | None = None) -> list[str]:
    """The ``days`` newest complete daily partitions (yesterday backwards), oldest first."""
    end = (today or datetime.now(UTC)).date()
    start = datetime.fromisoformat(settings.PARTITIONS_START).date()
    keys = [(end - timedelta(days=d)).isoformat() for d in range(days, 0, -1)]
    return [k for k in keys if datetime.fromisoformat(k).date() >= start]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=int(os.environ.get("PLATFORM_DEMO_DAYS", "7")))
    parser.add_argument("--partitions", nargs="*", help="explicit partition dates instead of the latest --days")
    args = parser.parse_args(argv)

    home = settings.platform_home()
    os.environ.setdefault("DAGSTER_HOME", str(home / "dagster"))
    os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)

    import dagster as dg

    from platform_assets import model_store
    from platform_assets.definitions import defs
    from platform_assets.ml.evaluate import metrics_table

    definitions = defs()
    partitions = args.partitions or latest_partitions(args.days)
    if not partitions:
        raise SystemExit(f"no partitions to run: --days {args.days} reaches before {settings.PARTITIONS_START}")
    with dg.DagsterInstance.get() as instance:
        ingest = definitions.get_job_def("daily_ingest_job")
        for partition in partitions:
            print(f"ingest + features: {partition}", flush=True)
            if not ingest.execute_in_process(partition_key=partition, instance=instance).success:
                return 1
        print("training + evaluation", flush=True)
        if not definitions.get_job_def("training_job").execute_in_process(instance=instance).success:
            return 1
    lake = definitions.resources["lake"]
    info = model_store.latest_info(lake, settings.MODEL_NAME)
    report = model_store.read_json(lake, f"models/{settings.MODEL_NAME}/{info['version']}/evaluation.json")
    print(
        f"\n{settings.MODEL_NAME} {info['version']} on {report['test_rows']} test rows "
        f"({len(info['data_versions'])} partitions):\n"
    )
    print(metrics_table(report["metrics"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
