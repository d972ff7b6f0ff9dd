"""The short variant of ``make bench-soak``: a real service under 64 connections answers every request;
the RSS curve is printed (the million-request figure is the make target's, not a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "serving" / "soak.py"


def test_a_short_soak_has_no_errors(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, str(SOAK), "--requests", "6000", "--segment", "3", "--warm-up", "1000"]
    done = subprocess.run([*command, "--json", str(out)], capture_output=True, text=True, timeout=600)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["errors"] == 0 and result["requests"] >= 6000
    assert len(result["rss_after_warm_up_mb"]) == 2 and all(point["rss_mb"] for point in result["curve"])
