"""Model quality on the real UCI data: the whole graph over all 30 replay days, CNN vs baselines.

    PLATFORM_UCI_CSV=../shared/data/uci_credit_default_taiwan.csv .venv/bin/python benchmarks/uci_auc.py

Prints the test-set table (CNN, logistic regression, HistGradientBoosting side by side), the wall
time and the machine. Uses a throw-away PLATFORM_HOME unless one is given.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> int:
    csv = Path(os.environ.get("PLATFORM_UCI_CSV") or REPO.parent / "shared/data/uci_credit_default_taiwan.csv")
    if not csv.is_file():
        print(f"UCI CSV not found at {csv}: set PLATFORM_UCI_CSV", file=sys.stderr)
        return 2
    os.environ.update(
        PLATFORM_SOURCE="uci_csv",
        PLATFORM_UCI_CSV=str(csv),
        PLATFORM_UCI_REPLAY_START="2026-10-01",
        PLATFORM_HOME=os.environ.get("PLATFORM_HOME") or tempfile.mkdtemp(prefix="uci_auc_"),
    )
    from platform_assets import settings
    from platform_assets.demo import run_pipeline
    from platform_assets.ml.evaluate import metrics_table

    start = date(2026, 10, 1)
    partitions = [(start + timedelta(days=d)).isoformat() for d in range(settings.UCI_REPLAY_DAYS)]
    began = time.perf_counter()
    report = run_pipeline(partitions)
    elapsed = time.perf_counter() - began
    print(f"\nUCI credit default, {report['partitions']} daily partitions, test set {report['test_rows']} rows")
    print(metrics_table(report["metrics"]))
    print(f"\nCNN test ROC AUC {report['metrics']['cnn']['roc_auc']:.4f} (target >= 0.77)")
    print(f"wall time {elapsed:.0f} s on {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
