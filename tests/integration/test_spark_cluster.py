"""A real standalone Spark cluster on loopback: master and workers from the installed pyspark, the tensor asset
and then ``portfolio_scores`` materialized against ``spark://127.0.0.1:<port>`` with executors that read and
write the lake themselves, and an executor killed in the middle of a task."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ingest_support
import psutil
import pyspark
import pytest
from net_support import free_port
from onnx_support import graph_bytes
from record_support import model_version

from platform_assets import model_store
from platform_assets.core import lake_keys
from platform_assets.core.model_version import ONNX_FILE
from platform_assets.ml import synthetic
from platform_assets.resources.lake import LocalLake

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"
PARTITION = "2026-10-05"


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


@dataclass(frozen=True)
class Cluster:
    master_url: str
    workers: tuple[int, ...]  # the Worker JVMs' pids (spark-class execs java)


@pytest.fixture
def standalone_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A master with two 1-core workers on 127.0.0.1 (free ports); every daemon stopped at the end."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(tmp_path / "work")}
    port, ui_port = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    commands = {
        "master": ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port)]
        + ["--webui-port", str(ui_port)],
        **{
            f"worker{n}": ["org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1"]
            + ["--cores", "1", "--memory", "1g", "--webui-port", str(free_port())]
            for n in (1, 2)
        },
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            processes[name] = subprocess.Popen(
                [str(SPARK_CLASS), *command],
                env=env,
                stdout=(logs / f"{name}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while True:
            state = _master_state(ui_port)
            if state and state.get("aliveworkers") == 2:
                break
            for process in processes.values():
                if process.poll() is not None:
                    pytest.fail(f"a Spark daemon exited ({process.returncode}); see {logs}")
            if time.monotonic() > deadline:
                pytest.fail(f"the workers did not register with {master_url} within 90 s; see {logs}")
            time.sleep(0.5)
        yield Cluster(master_url, (processes["worker1"].pid, processes["worker2"].pid))
    finally:
        for process in reversed(processes.values()):
            _stop(process)


def _runs_python_task(executor: psutil.Process, cpu_seen: dict[int, float]) -> bool:
    """Whether one of the executor's Python workers (pyspark.daemon and its forks) is running a task's code now:
    it used CPU since the previous look (``cpu_seen``: CPU seconds by pid, updated). The daemon and a reused
    worker stay alive between tasks, so being alive is not enough: killing an idle executor costs no task."""
    busy = False
    try:
        workers = [p for p in executor.children(recursive=True) if "pyspark" in " ".join(p.cmdline())]
        for worker in workers:
            used = sum(worker.cpu_times()[:2])
            busy |= worker.pid in cpu_seen and used - cpu_seen[worker.pid] > 0.01
            cpu_seen[worker.pid] = used
    except psutil.Error:  # a worker that just ended (or a zombie awaiting its parent)
        return False
    return busy


def test_tensor_asset_materializes_on_a_standalone_cluster(platform_home: Path, standalone_cluster: Cluster) -> None:
    # Three raw parts (synthetic.CHUNK_ROWS each): three tasks on the two workers.
    rows = 3 * synthetic.CHUNK_ROWS
    report, _ = ingest_support.report(ingest_support.materialize(standalone_cluster.master_url, rows, PARTITION))
    assert report["success"] and report["spark_master"] == standalone_cluster.master_url
    # The raw partition is landed by the cluster's executors too.
    assert report["raw_spark_master"] == standalone_cluster.master_url
    assert report["rows"] == rows and report["parts"] == 3
    assert report["data_version"] == report["digest"]

    # Rescore the partition on the same cluster with a published version (its record and ONNX graph in the lake).
    lake = LocalLake(root=str(platform_home / "lake"))
    onnx_sha256 = lake.write_bytes(model_store.version_key("v3", ONNX_FILE), graph_bytes())
    model_store.publish(lake, model_version("v3", onnx_sha256=onnx_sha256, threshold=0.3))
    scored, _ = ingest_support.report(ingest_support.score(standalone_cluster.master_url, PARTITION, "v3"))
    assert scored["success"] and scored["spark_master"] == standalone_cluster.master_url
    assert scored["model_version"] == "v3"
    assert scored["rows"] == scored["manifest_rows"] == rows  # every client of the partition, committed
    assert 0.0 < scored["approval_rate"] < 1.0 and scored["parts"] >= 1


def test_an_executor_killed_mid_task_is_retried_and_the_partition_is_whole(
    platform_home: Path, standalone_cluster: Cluster
) -> None:
    """SIGKILL an executor while its Python task runs: Spark reruns the task elsewhere, the commit is whole."""
    rows = 5 * synthetic.CHUNK_ROWS
    run = ingest_support.materialize(standalone_cluster.master_url, rows, PARTITION)
    workers = [psutil.Process(pid) for pid in standalone_cluster.workers]
    deadline = time.monotonic() + 300
    victim = None
    cpu_seen: dict[int, float] = {}
    while victim is None:
        assert run.poll() is None, "the run ended before any Python task started"
        assert time.monotonic() < deadline, "no executor ran a Python task within 300 s"
        for worker in workers:
            for executor in worker.children():
                if _runs_python_task(executor, cpu_seen):
                    victim = executor
        time.sleep(0.05)
    victim.kill()

    report, log = ingest_support.report(run)
    assert "Lost task" in log, "the kill was expected to cost Spark a running task"
    assert report["success"] and report["rows"] == rows and report["parts"] == 5
    tensors = platform_home / "lake" / lake_keys.tensors(PARTITION)
    on_disk = sorted(p.name for p in tensors.iterdir() if not p.name.startswith("."))
    assert len(on_disk) == 6 and lake_keys.MANIFEST_FILE in on_disk  # the five committed parts, nothing else
