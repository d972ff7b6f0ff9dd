"""``make bench-pipeline``'s smoke run: the smallest size end to end, its table complete (no timing asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_the_pipeline_benchmark_prints_every_step_with_driver_and_executor_memory(platform_home: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/pipeline/run_benchmark.py"), "--smoke", "--master", "local[2]"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    out = run.stdout
    assert re.search(r"^machine: \d+ cores", out, re.M) and re.search(r"^versions: .*pyspark 4\.", out, re.M)
    rows = {
        match["step"]: [float(v.replace(",", "")) for v in match["values"].split("|")]
        for match in re.finditer(r"^\| 10,000 \| this tree \| (?P<step>[a-z ]+) \| (?P<values>[\d.,| ]+)\|$", out, re.M)
    }
    # The ingest's steps and the day rescored as portfolio_scores does it.
    assert set(rows) == {"raw", "raw check", "tensors", "rescoring"}, out
    for step, (session, wall, rate, driver, jvm, executors) in rows.items():
        assert session > 0 and wall > 0 and rate > 0, (step, out)
        # The driver, its JVM and the executors' Python workers are each found and measured.
        assert driver > 50 and jvm > 50 and executors > 10, (step, out)
