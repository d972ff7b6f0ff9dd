"""The data pipeline's figures: per asset and rows per day, wall time, rows/s and peak memory of driver and executors.

    make bench-pipeline                                   # 10k, 100k, 1M rows a day, then the UCI graph
    .venv/bin/python benchmarks/pipeline/run_benchmark.py --huge     # adds 10M rows a day
    .venv/bin/python benchmarks/pipeline/run_benchmark.py --smoke    # 10k, no baseline, no UCI (`make test`)

Each size runs ``worker.py`` in a fresh process and a fresh PLATFORM_HOME (a cold lake): it starts the Spark
session (timed apart), then ``daily_ingest_job`` for one partition, then (this tree only) rescores that day as
``portfolio_scores`` does (``dataplane.scoring`` on the executors, ONNX Runtime, parts committed by a
manifest) with the production CNN architecture exported to ONNX (untrained: the cost does not depend on the
weights). This process samples the worker's process tree every 50 ms with psutil: the **driver** is the
worker itself (the Dagster run process, where the asset code runs) and, apart, the Spark driver JVM it starts
(in ``local[N]`` that JVM also hosts the executors' JVM threads); the **executors** are the Python workers
under the JVM (``pyspark.daemon`` and its forks, which run every task: generation, featurization, scoring),
their RSS summed. Per step, the peak of each over the samples taken between the step's start and end, and
rows/s = rows / step wall time. Every size runs twice: with
this tree's code and with the baseline's (``--baseline``, a git ref: by default the last commit that
generated raw days in the driver), side by side. Then, with PLATFORM_UCI_CSV, the
cold full graph over the 30 UCI days (ingest, features, training, evaluation, governance; no deploy) and the
training time per epoch. The targets of issue 10 are printed beside the figures, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
from uci_auc import machine  # noqa: E402  (the sibling script's description of the machine)

PARTITION = "2026-10-05"
SIZES = (10_000, 100_000, 1_000_000)
HUGE = 10_000_000
SAMPLE_SECONDS = 0.05
MB = 1024 * 1024
#: Steps of daily_ingest_job, as the table names them.
STEPS = {
    "raw_credit_applications": "raw",
    "raw_credit_applications_raw_values_in_range": "raw check",
    "credit_history_tensors": "tensors",
    "portfolio_scores": "rescoring",
}
#: The baseline: the last commit whose raw asset generated a day in the driver (before the Spark tasks did).
BASELINE = "bed5009"
#: Issue 10's targets on 2 cores (printed beside the figures).
DRIVER_RSS_GROWTH = 0.15
FEATURIZATION_ROWS_PER_S = 150_000
RESCORING_ROWS_PER_S = 200_000
CLUSTER_GRAPH_SECONDS = 60.0


@dataclass
class Sample:
    at: float
    driver: int  # bytes
    jvm: int
    executors: int


@dataclass
class Sampler:
    """Samples the RSS of a worker's process tree in a thread until stopped."""

    pid: int
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self, root: psutil.Process) -> Sample:
        driver, jvm, executors = root.memory_info().rss, 0, 0
        for child in root.children():
            try:
                if "java" in child.name():
                    jvm += child.memory_info().rss
                    executors += sum(_rss(p) for p in child.children(recursive=True))
            except psutil.Error:
                continue  # a process that just ended
        return Sample(time.time(), driver, jvm, executors)

    def run(self) -> None:
        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                self.samples.append(self._sample(root))
            except psutil.Error:
                return
            time.sleep(SAMPLE_SECONDS)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> dict[str, float]:
        """Peak RSS of each group over ``[start, end]``, MB."""
        window = [s for s in self.samples if start <= s.at <= end] or self.samples[-1:]
        return {
            "driver": max(s.driver for s in window) / MB,
            "jvm": max(s.jvm for s in window) / MB,
            "executors": max(s.executors for s in window) / MB,
        }


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def machine_line() -> str:
    memory = psutil.virtual_memory().total / 1024**3
    return f"{machine()}, {memory:.1f} GB RAM, {platform.platform()}"


def versions() -> str:
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    packages = ("pyspark", "dagster", "pandas", "pyarrow", "numpy", "tensorflow-cpu", "keras")
    return ", ".join(
        [
            *(f"{p} {metadata.version(p)}" for p in packages),
            java[0] if java else "no java",
        ]
    )


def run_worker(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], Sampler]:
    """Run ``worker.py args`` under the sampler; its JSON summary and the samples."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "worker.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    with Sampler(process.pid) as sampler:
        stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"worker {' '.join(args)} failed ({process.returncode}):\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), sampler


def worker_env(home: str, code: Path, **extra: str) -> dict[str, str]:
    """The worker's environment: a fresh home, and ``code`` (a checkout) first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_") or k == "PLATFORM_UCI_CSV"}
    env.update(
        PLATFORM_HOME=home,
        DAGSTER_HOME=str(Path(home) / "dagster"),
        PYSPARK_PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])]),
        **extra,
    )
    return env


def checkout(ref: str, into: Path) -> Path:
    """``platform_assets`` as of git ``ref``, extracted under ``into`` (the baseline's code)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "platform_assets"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def export_model(into: Path) -> str:
    """The production CNN architecture's ``model.onnx`` (worker ``model``), written under ``into``."""
    onnx = into / "model.onnx"
    with tempfile.TemporaryDirectory(prefix="bench_model_") as home:
        run_worker(["model", str(onnx)], worker_env(home, REPO))
    return str(onnx)


def ingest_rows(sizes: list[int], master: str, codes: dict[str, Path], onnx: str) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        for code, root in codes.items():
            with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as home:
                env = worker_env(home, root, SPARK_MASTER=master)
                rescoring = [onnx] if root == REPO else []  # a baseline before portfolio_scores cannot rescore
                summary, sampler = run_worker(["ingest", str(size), PARTITION, *rescoring], env)
            if not summary["success"]:
                raise SystemExit(f"the ingest of {size} rows ({code}) failed")
            if rescoring and summary["scored_rows"] != size:
                raise SystemExit(f"the rescoring of {size} rows scored {summary['scored_rows']}")
            for step, (start, end) in summary["steps"].items():
                seconds = end - start
                rows.append(
                    {
                        "code": code,
                        "rows": size,
                        "step": STEPS.get(step, step),
                        "seconds": seconds,
                        "rows_per_s": size / seconds if seconds else float("nan"),
                        "session_seconds": summary["session_seconds"],
                        **sampler.peak(start, end),
                        "driver_whole_run": max(s.driver for s in sampler.samples) / MB,
                    }
                )
    return rows


def print_ingest(rows: list[dict[str, Any]], master: str) -> None:
    print(f"\n## One daily partition, synthetic source, Spark master {master}, cold lake\n")
    print(
        "| rows/day | code | step | Spark session start s | step wall s | rows/s "
        "| driver peak MB | driver JVM MB | executors MB |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['rows']:,} | {r['code']} | {r['step']} | {r['session_seconds']:.1f} | {r['seconds']:.1f} "
            f"| {r['rows_per_s']:,.0f} | {r['driver']:.0f} | {r['jvm']:.0f} | {r['executors']:.0f} |"
        )
    print()
    for code in dict.fromkeys(r["code"] for r in rows):
        whole = {r["rows"]: r["driver_whole_run"] for r in rows if r["code"] == code}
        sizes = sorted(whole)
        line = f"{code}: driver peak RSS over the run " + ", ".join(f"{s:,} rows {whole[s]:.0f} MB" for s in sizes)
        if len(sizes) > 1:
            small, large = sizes[0], [s for s in sizes if s <= 1_000_000][-1]
            growth = whole[large] / whole[small] - 1
            line += f"; {small:,} -> {large:,}: {growth:+.1%} (target <= {DRIVER_RSS_GROWTH:.0%}: "
            line += f"{growth <= DRIVER_RSS_GROWTH})"
        print(line)
        for step, name, target in (
            ("tensors", "featurization", FEATURIZATION_ROWS_PER_S),
            ("rescoring", "rescoring", RESCORING_ROWS_PER_S),
        ):
            at_1m = [r for r in rows if r["code"] == code and r["step"] == step and r["rows"] == 1_000_000]
            if at_1m:
                rate = at_1m[0]["rows_per_s"]
                print(
                    f"{code}: {name} at 1M rows {rate:,.0f} rows/s (target >= {target:,}: {rate >= target}, "
                    f"{rate / target:.0%} of it)"
                )


def print_profile(rows: int, onnx: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_profile_") as home:
        summary, _ = run_worker(["profile", str(rows), onnx], worker_env(home, REPO))
    stages = summary["cpu_seconds"]
    print(f"\n## One task's stages on a {rows:,}-row chunk, CPU seconds (no Spark; load-independent)\n")
    print("| stage | CPU s | rows per CPU-second |")
    print("|---|---:|---:|")
    for stage, seconds in stages.items():
        print(f"| {stage} | {seconds:.2f} | {rows / seconds:,.0f} |" if seconds else f"| {stage} | 0 | - |")
    rescoring = {k: v for k, v in stages.items() if k.startswith("rescore")}
    tensor_task = sum(v for k, v in stages.items() if k not in ("generate", "write raw part", *rescoring))
    print(
        f"\na tensor task: {tensor_task:.2f} CPU s per {rows:,} rows = {rows / tensor_task:,.0f} rows/s per core; "
        f"2 cores at most {2 * rows / tensor_task:,.0f} rows/s before Spark's own costs "
        f"(target {FEATURIZATION_ROWS_PER_S:,})"
    )
    for seconds in rescoring.values():
        print(
            f"a rescoring task: {seconds:.2f} CPU s per {rows:,} rows = {rows / seconds:,.0f} rows/s per core; "
            f"2 cores at most {2 * rows / seconds:,.0f} rows/s before Spark's own costs "
            f"(target {RESCORING_ROWS_PER_S:,})"
        )


def uci_graph() -> None:
    csv = os.environ.get("PLATFORM_UCI_CSV")
    if not csv or not Path(csv).is_file():
        print("\nUCI graph skipped: set PLATFORM_UCI_CSV to the UCI CSV")
        return
    with tempfile.TemporaryDirectory(prefix="bench_uci_") as home:
        env = worker_env(
            home,
            REPO,
            PLATFORM_SOURCE="uci_csv",
            PLATFORM_UCI_CSV=csv,
            SPARK_MASTER=os.environ.get("SPARK_MASTER", "local[2]"),
        )
        summary, sampler = run_worker(["uci"], env)
    graph = summary["graph_seconds"]
    print(f"\n## Cold full graph over the {summary['partitions']} UCI days (no deploy)\n")
    print(
        f"graph {graph:.1f} s (process start to end {summary['since_process_start_seconds']:.1f} s; target <= "
        f"{CLUSTER_GRAPH_SECONDS:.0f} s: {graph <= CLUSTER_GRAPH_SECONDS}); by job: "
        + ", ".join(f"{job} {seconds:.1f} s" for job, seconds in sorted(summary["job_seconds"].items()))
    )
    per_epoch = summary["seconds_per_epoch"]
    print(
        f"training: {summary['epochs']} epochs, {per_epoch:.2f} s per epoch"
        if per_epoch
        else "training: no epochs logged"
    )
    peak = sampler.peak(0, float("inf"))
    print(
        f"peak RSS: driver {peak['driver']:.0f} MB, driver JVM {peak['jvm']:.0f} MB, "
        f"executors {peak['executors']:.0f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--huge", action="store_true", help=f"also {HUGE:,} rows a day")
    parser.add_argument("--smoke", action="store_true", help=f"{SIZES[0]:,} rows only, no UCI graph")
    parser.add_argument("--sizes", help="comma-separated rows per day instead of the default 10k, 100k, 1M")
    parser.add_argument("--no-uci", action="store_true", help="skip the cold UCI graph")
    parser.add_argument("--master", default=os.environ.get("SPARK_MASTER", "local[2]"), help="Spark master URL")
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help=f"git ref whose platform_assets runs the same sizes side by side (default {BASELINE}; '' for none)",
    )
    args = parser.parse_args(argv)
    sizes = [SIZES[0]] if args.smoke else [*SIZES, *([HUGE] if args.huge else [])]
    if args.sizes:
        sizes = [int(size) for size in args.sizes.split(",")]
    print(f"# bench-pipeline, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine_line()}")
    print(f"versions: {versions()}")
    print("load average at start (1, 5, 15 min): {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="bench_baseline_") as baseline:
        onnx = export_model(Path(baseline))
        codes = {"this tree": REPO}
        if args.baseline and not args.smoke:
            codes[f"baseline {args.baseline}"] = checkout(args.baseline, Path(baseline))
        print_ingest(ingest_rows(sizes, args.master, codes, onnx), args.master)
        if not args.smoke:
            print_profile(100_000, onnx)
    if not args.smoke and not args.no_uci:
        uci_graph()
    # Other work on the machine slows every figure: the load says how much the cores were shared.
    print("\nload average at end (1, 5, 15 min): {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
