"""Model quality on the real UCI data: the whole graph over all 30 replay days, CNN vs baselines, over seeds.

    PLATFORM_UCI_CSV=../shared/data/uci_credit_default_taiwan.csv .venv/bin/python benchmarks/uci_auc.py [--seeds 1,2]

Runs the graph once (ingest, features, one model version with its evaluation: that table is printed
first), then retrains the CNN and both baselines with the production training code and the training
asset's default config for each of ``SEEDS`` (or ``--seeds``) on that version's split (same rows for every
seed) and prints
the mean and standard deviation over the seeds of test ROC AUC, ECE and Brier score, calibrated and
uncalibrated, with the targets of issue 12, the wall time and the machine. The test split is only scored,
never used to choose anything. Uses a throw-away PLATFORM_HOME unless one is given.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3, 4, 5)
MODELS = ("cnn", "hist_gradient_boosting", "logistic_regression")
COLUMNS = ("roc_auc", "ece", "brier", "roc_auc_uncalibrated", "ece_uncalibrated", "brier_uncalibrated")


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


def seed_metrics(data: Any, splits: dict[str, Any], seed: int) -> dict[str, dict[str, float]]:
    """Train the CNN (streaming the training split) and the baselines (on their sample of it) with ``seed``, else
    the training assets' defaults; score the test split."""
    from platform_assets.defs.training.assets import BaselineConfig, CNNTrainingConfig
    from platform_assets.ml import calibration, evaluate
    from platform_assets.ml.train import predict_cnn, train_baselines, train_cnn

    config = CNNTrainingConfig(seed=seed).to_train_config()
    test, validation = splits["test"], splits["validation"]
    cnn = train_cnn(data, config, validation=validation)
    scores = {"cnn": predict_cnn(cnn.model, test.keras_inputs())}
    raw = {"cnn": calibration.raw_logits(cnn.model, test.keras_inputs())}
    thresholds = {"cnn": cnn.threshold}
    sample = data.sample("train", BaselineConfig().max_train_rows, seed=seed)
    for name, baseline in train_baselines(sample, validation, seed, config.policy).items():
        raw[name] = baseline.model.decision_function(test.flat())
        scores[name] = calibration.apply(baseline.calibration, raw[name])
        thresholds[name] = baseline.threshold
    return {
        name: evaluate.classification_metrics(test.labels, scores[name], thresholds[name], raw_logits=raw[name])
        for name in MODELS
    }


def seeds_table(runs: list[dict[str, dict[str, float]]]) -> str:
    """Markdown: per model, mean ± standard deviation (ddof=1) over the runs of each column."""
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in MODELS:
        cells = []
        for column in COLUMNS:
            values = np.array([run[name][column] for run in runs])
            cells.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def uci_graph(home_prefix: str) -> tuple[dict[str, Any], Any] | None:
    """Run the graph once on the UCI CSV (``PLATFORM_UCI_CSV``, else ``../shared/data/`` beside the checkout) over
    all replay days, in ``PLATFORM_HOME`` or a new temporary home named ``home_prefix``; print its evaluation
    table; return its evaluation report and the lake holding the version. ``None`` (said on stderr) without
    the CSV."""
    csv = Path(os.environ.get("PLATFORM_UCI_CSV") or REPO.parent / "shared/data/uci_credit_default_taiwan.csv")
    if not csv.is_file():
        print(f"UCI CSV not found at {csv}: set PLATFORM_UCI_CSV", file=sys.stderr)
        return None
    os.environ.update(
        PLATFORM_SOURCE="uci_csv",
        PLATFORM_UCI_CSV=str(csv),
        PLATFORM_UCI_REPLAY_START="2026-10-01",
        PLATFORM_HOME=os.environ.get("PLATFORM_HOME") or tempfile.mkdtemp(prefix=home_prefix),
    )
    from platform_assets import settings
    from platform_assets.defs.resources import resources
    from platform_assets.demo import run_pipeline
    from platform_assets.ml.evaluate import metrics_table

    start = date(2026, 10, 1)
    partitions = [(start + timedelta(days=d)).isoformat() for d in range(settings.UCI_REPLAY_DAYS)]
    began = time.perf_counter()
    report = run_pipeline(partitions)
    graph_seconds = time.perf_counter() - began
    print(f"\nUCI credit default, {report['partitions']} daily partitions, test set {report['test_rows']} rows")
    print(f"the graph's model version {report['model_version']} (training seed 42), in {graph_seconds:.0f} s:")
    print(metrics_table(report["metrics"]))
    return report, (resources().resources or {})["lake"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated training seeds")
    seeds = [int(s) for s in parser.parse_args().seeds.split(",")]
    began = time.perf_counter()
    graph = uci_graph("uci_auc_")
    if graph is None:
        return 2
    report, lake = graph
    from platform_assets import model_store

    record = model_store.load_record(lake, report["model_version"])
    data = model_store.open_dataset(lake, record)
    splits = {name: data.materialize(name) for name in ("validation", "test")}
    runs = []
    for seed in seeds:
        runs.append(seed_metrics(data, splits, seed))
        print(
            f"seed {seed}: " + ", ".join(f"{n} AUC {m['roc_auc']:.4f} ECE {m['ece']:.4f}" for n, m in runs[-1].items())
        )
    elapsed = time.perf_counter() - began
    print(f"\nTest split ({len(splits['test'])} rows), mean ± std over seeds {seeds}, same split:")
    print(seeds_table(runs))

    def mean(model: str, column: str) -> float:
        return float(np.mean([run[model][column] for run in runs]))

    best_brier = min(mean(n, "brier") for n in MODELS if n != "cnn")
    print("\ntargets (issue 12), on the means:")
    print(f"  calibrated CNN ECE {mean('cnn', 'ece'):.4f} <= 0.02: {mean('cnn', 'ece') <= 0.02}")
    cnn_brier = mean("cnn", "brier")
    print(f"  CNN Brier {cnn_brier:.4f} <= best baseline's {best_brier:.4f}: {cnn_brier <= best_brier}")
    gap = mean("cnn", "roc_auc") - mean("hist_gradient_boosting", "roc_auc")
    print(f"  CNN AUC - HistGB AUC = {gap:+.4f} (>= 0: {gap >= 0})")
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, wall time {elapsed:.0f} s on {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
