"""A real standalone Spark cluster on loopback: master and worker from the installed pyspark, the tensor asset
materialized against ``spark://127.0.0.1:<port>`` with executors that read and write the lake themselves."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyspark
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"
PARTITION = "2026-10-05"

#: Runs in its own process so that its SparkSession is the cluster's, not the suite's local one.
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
lake = definitions.resources["lake"]
manifest = read_manifest(lake, lake_keys.tensors(partition))
print(json.dumps({
    "success": result.success,
    "spark_master": tensors.metadata["spark_master"].value,
    "rows": manifest.rows,
    "parts": len(manifest.parts),
    "data_version": tensors.tags["dagster/data_version"],
    "digest": manifest.digest,
}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _master_state(ui_port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
            return dict(json.load(response))
    except OSError:
        return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def standalone_cluster(tmp_path: Path) -> Iterator[str]:
    """``spark://127.0.0.1:<port>`` of a master with one 2-core worker; both stopped at the end."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(tmp_path / "work")}
    port, ui_port, worker_ui = _free_port(), _free_port(), _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            subprocess.Popen(
                [str(SPARK_CLASS), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
                + ["--port", str(port), "--webui-port", str(ui_port)],
                env=env,
                stdout=(logs / "master.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        processes.append(
            subprocess.Popen(
                [str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1"]
                + ["--cores", "2", "--memory", "1g", "--webui-port", str(worker_ui)],
                env=env,
                stdout=(logs / "worker.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + 90
        while True:
            state = _master_state(ui_port)
            if state and state.get("aliveworkers") == 1:
                break
            for process in processes:
                if process.poll() is not None:
                    pytest.fail(f"a Spark daemon exited ({process.returncode}); see {logs}")
            if time.monotonic() > deadline:
                pytest.fail(f"no worker registered with {master_url} within 90 s; see {logs}")
            time.sleep(0.5)
        yield master_url
    finally:
        for process in reversed(processes):
            _stop(process)


def test_tensor_asset_materializes_on_a_standalone_cluster(platform_home: Path, standalone_cluster: str) -> None:
    # Two raw parts of at most 250,000 rows: two tasks, on the worker's two cores.
    rows = 300_000
    done = subprocess.run(
        [sys.executable, "-c", MATERIALIZE, standalone_cluster, str(rows), PARTITION],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["success"] and report["spark_master"] == standalone_cluster
    assert report["rows"] == rows and report["parts"] == 2
    assert report["data_version"] == report["digest"]
