"""``make bench-loop``'s smoke run (real service, real sensors, real runs): the rollout it provokes is decided, every
stage's row has figures on both sides, no request failed, and the pure process ran without Dagster, MLflow or
BentoML. No timing is asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(
    r"^\| (?P<stage>[a-z ]+) \| [^|]+ \| (?P<orchestrated>[\d.]+|-) \| (?P<pure>[\d.]+|-) \| [^|]+ \|$", re.M
)


@pytest.mark.timeout(2400)
def test_the_loop_benchmark_decides_the_rollout_and_prints_every_stage(platform_home: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/loop/run_benchmark.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=2300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out = run.stdout
    assert run.returncode == 0, f"{run.stderr[-3000:]}\n{out[-4000:]}"
    rows = {m["stage"]: (m["orchestrated"], m["pure"]) for m in ROW.finditer(out)}
    assert {"detection", "trained", "released", "decision", "total"} <= set(rows), out[-4000:]
    for stage in ("detection", "trained", "released", "decision", "total"):
        orchestrated, pure = rows[stage]
        assert float(orchestrated) > 0 and float(pure) >= 0, (stage, rows)
    # Training and the release are real compute on both sides (a detection's reads take milliseconds).
    assert all(float(rows[stage][1]) > 0 for stage in ("trained", "released", "total")), rows
    assert re.search(r"trained: .*train the CNN [\d.]+, .*ONNX export [\d.]+", out), out[-4000:]
    assert re.search(r"^Rollout: (promoted|retired) ", out, re.M), out[-2000:]
    assert re.search(r"applications sent, 0 failed; outcomes: \d+ posted, 0 failed", out), out[-2000:]
    assert "pure process loaded no Dagster, MLflow or BentoML" in out
    assert re.search(r"^Detection -> .*: [\d.]+ s \(target <= 60 s: (met|missed)\)", out, re.M)
    assert re.search(r"^\| retrain_and_deploy_job \| [\d.]+ \| default_risk_model [\d.]+ \|$", out, re.M)
    assert re.search(r"^Machine: .*load average [\d.]+ / [\d.]+ / [\d.]+ ", out, re.M)
