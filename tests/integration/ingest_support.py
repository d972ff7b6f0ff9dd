"""The daily ingest job in a process of its own: its SparkSession is the master it is given, not the suite's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

#: Materializes ``daily_ingest_job`` for one partition and prints a summary of what the lake holds.
MATERIALIZE = """
import json, sys
import dagster as dg
from platform_assets.core import lake_keys
from platform_assets.dataplane.partitions import read_manifest
from platform_assets.definitions import bound_to
from platform_assets.settings import PlatformSettings

master, rows, partition = sys.argv[1], int(sys.argv[2]), sys.argv[3]
definitions = bound_to(PlatformSettings(spark_master=master, rows_per_day=rows))
with dg.DagsterInstance.ephemeral() as instance:
    job = definitions.resolve_job_def("daily_ingest_job")
    result = job.execute_in_process(partition_key=partition, instance=instance)
    tensors = instance.get_latest_materialization_event(dg.AssetKey("credit_history_tensors")).asset_materialization
    raw = instance.get_latest_materialization_event(dg.AssetKey("raw_credit_applications")).asset_materialization
lake = definitions.resources["lake"]
manifest = read_manifest(lake, lake_keys.tensors(partition))
print(json.dumps({
    "success": result.success,
    "spark_master": tensors.metadata["spark_master"].value,
    "raw_spark_master": raw.metadata["spark_master"].value,
    "rows": manifest.rows,
    "parts": len(manifest.parts),
    "data_version": tensors.tags["dagster/data_version"],
    "raw_data_version": raw.tags["dagster/data_version"],
    "digest": manifest.digest,
}))
"""


#: Materializes ``portfolio_scoring_job`` for one partition with a named model version and prints what it recorded.
SCORE = """
import json, sys
import dagster as dg
from platform_assets.core import lake_keys
from platform_assets.dataplane.partitions import read_manifest
from platform_assets.definitions import bound_to
from platform_assets.settings import PlatformSettings

master, partition, version = sys.argv[1], sys.argv[2], sys.argv[3]
definitions = bound_to(PlatformSettings(spark_master=master))
with dg.DagsterInstance.ephemeral() as instance:
    job = definitions.resolve_job_def("portfolio_scoring_job")
    run_config = {"ops": {"portfolio_scores": {"config": {"model_version": version}}}}
    result = job.execute_in_process(partition_key=partition, instance=instance, run_config=run_config)
    scores = instance.get_latest_materialization_event(dg.AssetKey("portfolio_scores")).asset_materialization
manifest = read_manifest(definitions.resources["lake"], lake_keys.portfolio_scores(version, partition))
print(json.dumps({
    "success": result.success,
    "spark_master": scores.metadata["spark_master"].value,
    "model_version": scores.metadata["model_version"].value,
    "rows": scores.metadata["dagster/row_count"].value,
    "approval_rate": scores.metadata["approval_rate"].value,
    "manifest_rows": manifest.rows,
    "parts": len(manifest.parts),
}))
"""


def _run(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )


def score(master_url: str, partition: str, version: str) -> subprocess.Popen[str]:
    """Start the rescoring of ``partition``'s tensors by ``version`` against ``master_url`` (``$PLATFORM_HOME``'s
    lake)."""
    return _run(SCORE, master_url, partition, version)


def materialize(master_url: str, rows: int, partition: str) -> subprocess.Popen[str]:
    """Start the ingest of ``partition`` (``rows`` synthetic rows) against ``master_url``; the lake is
    ``$PLATFORM_HOME``'s."""
    return _run(MATERIALIZE, master_url, str(rows), partition)


def report(run: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    """The run's summary line and its log (stderr); fails with the log's end if the run failed."""
    stdout, stderr = run.communicate(timeout=900)
    assert run.returncode == 0, stderr[-4000:]
    return dict(json.loads(stdout.strip().splitlines()[-1])), stderr
