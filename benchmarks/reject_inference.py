"""Reject inference on the real UCI data: does reweighting the approved applicants help a retrained model?

    PLATFORM_UCI_CSV=../shared/data/uci_credit_default_taiwan.csv \\
        .venv/bin/python benchmarks/reject_inference.py [--seeds 1,2,3] [--decline-share 0.3] [--exploration 0.05]

Per seed, the 30,000 applicants are split at random into a champion part (20 %), a development part (50 %) and
a through-the-door test part (30 %, every outcome known). A champion (logistic regression trained on its part
with all its labels) declines its top-risk ``--decline-share`` of the development applicants; with
``--exploration`` a random share of those would-be declines is approved anyway. Only the approved keep their
outcome, as in production. The same learner (HistGradientBoosting, or logistic regression) is then trained on
the development part (a) on the approved only, (b) on the approved with inverse approval-probability weights
(``platform_assets.ml.reject_inference``), (c) on every development label (what no lender has: the ceiling), and
scored on the test part: ROC AUC, expected calibration error (ECE, 10 equal-width bins) and the mean predicted
probability of default against the realized default rate. Raw UCI columns as features; nothing is tuned.

``--cnn`` runs the platform's own training path instead (``default_risk_model`` and ``baseline_models`` without
Dagster and the lake): the 24,000 applicants outside the champion part are the training window, featurized and
split by the platform (validation 10 %, test 20 %, by the ID hash); the champion's decisions select the training
and validation outcomes (``ModellingDataset.selected``), the test split keeps every outcome (through the door).
The CNN (training defaults: early stopping on validation AUC, calibrated on validation) and the two baselines
(balanced, calibrated, on the training split) are trained (a) on every outcome, (b) on the approved only,
(c) on the approved with ``reject_inference='reweight'`` (``inverse_approval_weights_of``), per seed; (c) is also
calibrated and thresholded with the validation rows' weights, as the platform does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3)
VARIANTS = ("approved_only", "reweighted", "all_labels")
LEARNERS = ("hist_gradient_boosting", "logistic_regression")
COLUMNS = ("roc_auc", "ece", "mean_pd")


def learner(name: str, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.05, min_samples_leaf=50, early_stopping=False, random_state=seed
        )
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def fit(model: Any, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> Any:
    if weights is None:
        return model.fit(x, y)
    if hasattr(model, "steps"):  # a pipeline routes the weights to its last step
        return model.fit(x, y, **{f"{model.steps[-1][0]}__sample_weight": weights})
    return model.fit(x, y, sample_weight=weights)


def seed_run(x: np.ndarray, y: np.ndarray, seed: int, decline_share: float, exploration: float) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from platform_assets.ml import reject_inference
    from platform_assets.ml.evaluate import expected_calibration_error

    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(y))
    n_champion, n_development = int(0.2 * len(y)), int(0.5 * len(y))
    champion_rows = rows[:n_champion]
    development = rows[n_champion : n_champion + n_development]
    test = rows[n_champion + n_development :]
    champion = learner("logistic_regression", seed).fit(x[champion_rows], y[champion_rows])
    risk = champion.predict_proba(x[development])[:, 1]
    approved = risk < np.quantile(risk, 1.0 - decline_share)
    approved |= ~approved & (rng.random(len(development)) < exploration)
    weights = reject_inference.reject_inference_weights(x[development], approved)
    labelled = development[approved]
    out: dict[str, Any] = {
        "development": len(development),
        "test": len(test),
        "approval_rate": float(approved.mean()),
        "effective_sample_size": reject_inference.effective_sample_size(weights),
        "labelled": len(labelled),
        "max_weight": float(weights.max()),
        "test_default_rate": float(y[test].mean()),
    }
    for name in LEARNERS:
        training = {
            "approved_only": (labelled, None),
            "reweighted": (labelled, weights),
            "all_labels": (development, None),
        }
        for variant, (train_rows, sample_weight) in training.items():
            model = fit(learner(name, seed), x[train_rows], y[train_rows], sample_weight)
            p = model.predict_proba(x[test])[:, 1]
            out[name, variant] = {
                "roc_auc": float(roc_auc_score(y[test], p)),
                "ece": expected_calibration_error(y[test], p),
                "mean_pd": float(p.mean()),
            }
    return out


CNN_VARIANTS = ("all_outcomes", "approved_only", "reweighted")
CNN_MODELS = ("cnn", "logistic_regression", "hist_gradient_boosting")


def champion_decisions(
    frame: Any, seed: int, decline_share: float, exploration: float
) -> tuple[Any, Any, dict[str, float]]:
    """The champion (logistic regression on a random 20 % with all labels), its decisions on the other 80 % (the
    training window), and that window's rows."""
    from platform_assets.ml import schema
    from platform_assets.ml.dataset import Decisions

    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(frame))
    champion_rows, window = rows[: int(0.2 * len(frame))], np.sort(rows[int(0.2 * len(frame)) :])
    x = frame[list(schema.FEATURE_COLUMNS)].to_numpy(dtype="float64")
    y = frame[schema.TARGET].to_numpy(dtype="int64")
    champion = learner("logistic_regression", seed).fit(x[champion_rows], y[champion_rows])
    risk = champion.predict_proba(x[window])[:, 1]
    approved = risk < np.quantile(risk, 1.0 - decline_share)
    approved |= ~approved & (rng.random(len(window)) < exploration)
    ids = frame[schema.ID].to_numpy()[window]
    return Decisions.of("champion", ids, approved), frame.iloc[window], {"approval_rate": float(approved.mean())}


def cnn_run(frame: Any, seed: int, decline_share: float, exploration: float) -> dict[Any, Any]:
    """The platform's training path on the window, per variant: test-split metrics of the CNN and baselines."""
    from platform_assets.defs.training.assets import BaselineConfig, CNNTrainingConfig
    from platform_assets.ml import calibration, evaluate, features
    from platform_assets.ml import reject_inference as ipw
    from platform_assets.ml.dataset import FrameSource, ModellingDataset
    from platform_assets.ml.train import predict_cnn, train_baselines, train_cnn
    from platform_assets.resources.training_data import TrainingData

    decisions, window, out = champion_decisions(frame, seed, decline_share, exploration)
    split = TrainingData().split_spec()
    everyone = ModellingDataset.planned(
        FrameSource(features.featurize_rows(window)), split.validation, split.test, split.seed, split.max_holdout_rows
    )
    approved = everyone.selected(decisions)
    weights = ipw.inverse_approval_weights_of(approved, seed=split.seed)
    test = everyone.materialize("test")  # the same through-the-door rows for every variant
    out |= {
        "rows": everyone.rows(),
        "labelled": approved.rows(),
        "effective_sample_size": weights.effective_sample_size,
        "test_default_rate": float(test.labels.mean()),
    }
    config = CNNTrainingConfig(seed=seed).to_train_config()
    for variant, data, spec in (
        ("all_outcomes", everyone, None),
        ("approved_only", approved, None),
        ("reweighted", approved, weights),
    ):
        began = time.perf_counter()
        validation = data.materialize("validation")
        cnn = train_cnn(data, config, validation=validation, weights=spec)
        scores = {"cnn": predict_cnn(cnn.model, test.keras_inputs())}
        thresholds = {"cnn": cnn.threshold}
        train = data.sample("train", BaselineConfig().max_train_rows, seed=seed)
        sample_weight = None if spec is None else ipw.weights_of(spec, train.flat())
        validation_weight = None if spec is None else ipw.weights_of(spec, validation.flat())
        baselines = train_baselines(train, validation, seed, config.policy, sample_weight, validation_weight)
        for name, baseline in baselines.items():
            scores[name] = calibration.apply(baseline.calibration, baseline.model.decision_function(test.flat()))
            thresholds[name] = baseline.threshold
        for name in CNN_MODELS:
            metrics = evaluate.classification_metrics(test.labels, scores[name], thresholds[name])
            out[name, variant] = {
                "roc_auc": metrics["roc_auc"],
                "ece": metrics["ece"],
                "mean_pd": float(scores[name].mean()),
            }
        print(f"  {variant}: CNN best epoch {cnn.best_epoch}, {time.perf_counter() - began:.0f} s", flush=True)
    return out


def cnn_table(runs: list[dict[Any, Any]]) -> str:
    """Markdown: per model and variant, mean (± standard deviation over seeds when there are several)."""
    lines = ["| model | trained on | " + " | ".join(COLUMNS) + " |", "|---|---" + "|---:" * len(COLUMNS) + "|"]
    for name in CNN_MODELS:
        for variant in CNN_VARIANTS:
            values = {c: np.array([run[name, variant][c] for run in runs]) for c in COLUMNS}
            spread = {c: f" ± {v.std(ddof=1):.4f}" if len(v) > 1 else "" for c, v in values.items()}
            cells = [f"{values[c].mean():.4f}{spread[c]}" for c in COLUMNS]
            lines.append(f"| {name} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seeds_table(runs: list[dict[str, Any]]) -> str:
    """Markdown: per learner and variant, mean ± standard deviation (ddof=1) over the seeds."""
    lines = ["| learner | trained on | " + " | ".join(COLUMNS) + " |", "|---|---" + "|---:" * len(COLUMNS) + "|"]
    for name in LEARNERS:
        for variant in VARIANTS:
            cells = []
            for column in COLUMNS:
                values = np.array([run[name, variant][column] for run in runs])
                spread = values.std(ddof=1) if len(values) > 1 else 0.0
                cells.append(f"{values.mean():.4f} ± {spread:.4f}")
            lines.append(f"| {name} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated split seeds")
    parser.add_argument("--decline-share", type=float, default=0.3, help="share the champion declines (0..1)")
    parser.add_argument("--exploration", type=float, default=0.0, help="share of would-be declines approved")
    parser.add_argument("--cnn", action="store_true", help="the platform's training path (CNN and baselines)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    csv = Path(os.environ.get("PLATFORM_UCI_CSV") or REPO.parent / "shared/data/uci_credit_default_taiwan.csv")
    if not csv.is_file():
        print(f"UCI CSV not found at {csv}: set PLATFORM_UCI_CSV", file=sys.stderr)
        return 2
    from platform_assets.ml import schema, uci

    frame = uci.read_uci_csv(csv.read_bytes(), str(csv))
    x = frame[list(schema.FEATURE_COLUMNS)].to_numpy(dtype="float64")
    y = frame[schema.TARGET].to_numpy(dtype="int64")
    began = time.perf_counter()
    if args.cnn:
        cnn_runs = []
        for seed in seeds:
            print(f"seed {seed}:", flush=True)
            cnn_runs.append(run := cnn_run(frame, seed, args.decline_share, args.exploration))
            print(
                f"  window {run['rows']}, labelled (approved) {run['labelled']}, approval rate "
                f"{run['approval_rate']:.1%}, effective sample size {run['effective_sample_size']:,.0f}, "
                f"test default rate {run['test_default_rate']:.4f}"
            )
        print(
            f"\nThrough-the-door test split ({cnn_runs[0]['rows']['test']:,} applicants), champion declines "
            f"{args.decline_share:.0%}, exploration {args.exploration:.0%}; seeds {seeds}:"
        )
        print(cnn_table(cnn_runs))
        return footer(began, csv)
    runs = []
    for seed in seeds:
        runs.append(run := seed_run(x, y, seed, args.decline_share, args.exploration))
        print(
            f"seed {seed}: approved {run['approval_rate']:.1%} of {run['development']:,} development applicants, "
            f"{run['labelled']:,} labelled, weights max {run['max_weight']:.1f}, effective sample size "
            f"{run['effective_sample_size']:,.0f}; test default rate {run['test_default_rate']:.4f}"
        )
        for name in LEARNERS:
            cells = ", ".join(f"{v} AUC {run[name, v]['roc_auc']:.4f} ECE {run[name, v]['ece']:.4f}" for v in VARIANTS)
            print(f"  {name}: {cells}")
    print(
        f"\nThrough-the-door test part ({runs[0]['test']:,} applicants), champion declines "
        f"{args.decline_share:.0%}, exploration {args.exploration:.0%}; mean ± std over seeds {seeds}:"
    )
    print(seeds_table(runs))
    return footer(began, csv)


def footer(began: float, csv: Path) -> int:
    """Date, wall time, machine, the command and the load: what a reader needs to weigh the figures."""
    from uci_auc import machine

    print(f"\n{datetime.now(UTC):%Y-%m-%d}, wall time {time.perf_counter() - began:.0f} s on {machine()}")
    python = os.path.relpath(sys.executable, Path.cwd())
    print(f"command: PLATFORM_UCI_CSV={csv} {' '.join([python, *sys.argv])}")
    print(f"load average at the end (1/5/15 min): {' / '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
