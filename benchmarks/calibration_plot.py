"""The README's reliability diagram: the UCI run's calibrated CNN against its own uncalibrated scores and against
the calibrated baselines, on the test split.

    PLATFORM_UCI_CSV=../shared/data/uci_credit_default_taiwan.csv .venv/bin/python benchmarks/calibration_plot.py

Runs the graph once on the UCI data as ``benchmarks/uci_auc.py`` does (all 30 replay days; one model version, its
baselines and its evaluation; training seed 42), scores that version's test split with its CNN and baselines as
``model_evaluation`` does, and draws ``docs/calibration.png`` (``--out``): the observed default rate against the
mean predicted probability in the 10 equal-width bins of the expected calibration error (ECE; bins of fewer than
``MIN_ROWS`` rows are not drawn as points), and the test rows per bin. Prints each curve's ECE, which must equal
the one the evaluation recorded, the wall time and the machine. Uses a throw-away PLATFORM_HOME unless one is
given.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from uci_auc import REPO, machine, uci_graph  # the sibling script's graph run (this folder is on sys.path)

BINS = 10
#: Bins with fewer test rows are not drawn as points: one or two rows make an observed rate of 0 or 1 that says
#: nothing (they still count in the ECE, by their rows, and in the histogram).
MIN_ROWS = 20
#: Curve -> (model in the evaluation report, metric that holds its ECE there, line style).
CURVES = {
    "CNN, calibrated (served PD)": ("cnn", "ece", "-"),
    "CNN, uncalibrated": ("cnn", "ece_uncalibrated", ":"),
    "HistGradientBoosting, calibrated": ("hist_gradient_boosting", "ece", "--"),
    "logistic regression, calibrated": ("logistic_regression", "ece", "-."),
}


def test_split_probabilities(lake: Any, version: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Test labels, and per curve of ``CURVES`` the probabilities of default of ``version``'s test rows: the
    calibrated PD each model reports, and the CNN's uncalibrated score (the sigmoid of its raw logit)."""
    from platform_assets import model_store
    from platform_assets.ml import calibration
    from platform_assets.ml.train import predict_cnn

    loaded = model_store.load_version(lake, version)
    baselines, fitted = model_store.load_baselines(lake, version)
    test = loaded.splits["test"]
    inputs = test.keras_inputs()
    calibrated = {"cnn": predict_cnn(loaded.model, inputs)}
    for name, model in fitted.items():
        calibrated[name] = calibration.apply(baselines.calibrations[name], model.decision_function(test.flat()))
    uncalibrated_cnn = calibration.sigmoid(calibration.raw_logits(loaded.model, inputs))
    return test.labels, {
        curve: uncalibrated_cnn if metric == "ece_uncalibrated" else calibrated[model]
        for curve, (model, metric, _) in CURVES.items()
    }


def reliability(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of ``evaluate.expected_calibration_error`` (same edges, same assignment): mean predicted
    probability, observed default rate (NaN where empty) and rows."""
    edges = np.linspace(0.0, 1.0, BINS + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, BINS - 1)
    rows = np.bincount(which, minlength=BINS)
    with np.errstate(invalid="ignore"):  # an empty bin has no rate: NaN, left out of the plot
        predicted = np.bincount(which, weights=probabilities, minlength=BINS) / rows
        observed = np.bincount(which, weights=labels.astype("float64"), minlength=BINS) / rows
    return predicted, observed, rows


Bins = tuple[np.ndarray, np.ndarray, np.ndarray]


def draw(labels: np.ndarray, bins: dict[str, Bins], eces: dict[str, float], out: Path) -> None:
    """``out``: the reliability diagram of ``bins`` (per curve, from ``reliability``) over the rows per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (diagram, histogram) = plt.subplots(
        2, 1, figsize=(7.5, 8), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    diagram.plot([0, 1], [0, 1], color="grey", linewidth=1, label="perfect calibration")
    centres = (np.arange(BINS) + 0.5) / BINS
    width = 1.0 / BINS / (len(bins) + 1)
    for offset, (curve, (predicted, observed, rows)) in enumerate(bins.items()):
        filled = rows >= MIN_ROWS
        style = CURVES[curve][2]
        (line,) = diagram.plot(
            predicted[filled], observed[filled], style, marker="o", label=f"{curve}: ECE {eces[curve]:.3f}"
        )
        histogram.bar(centres - 0.5 / BINS + (offset + 1) * width, rows, width=width, color=line.get_color())
    diagram.set(
        title=f"Reliability on the UCI test split ({len(labels):,} clients, default rate {labels.mean():.3f})",
        ylabel="observed default rate",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    diagram.legend(loc="upper left", fontsize=9)
    diagram.annotate(
        f"points: bins of at least {MIN_ROWS} test rows; every row counts in the ECE",
        (0.98, 0.02),
        xycoords="axes fraction",
        ha="right",
        fontsize=8,
        color="grey",
    )
    diagram.grid(alpha=0.3)
    histogram.set(xlabel=f"predicted probability of default ({BINS} equal-width bins)", ylabel="test rows")
    histogram.set_yscale("log")
    histogram.grid(alpha=0.3)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    figure.savefig(tmp, format="png")
    plt.close(figure)
    tmp.replace(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "calibration.png", help="the PNG to write")
    out = parser.parse_args().out.resolve()
    began = time.perf_counter()
    graph = uci_graph("calibration_plot_")
    if graph is None:
        return 2
    report, lake = graph
    from platform_assets.ml.evaluate import expected_calibration_error

    version = report["model_version"]
    labels, curves = test_split_probabilities(lake, version)
    eces = {curve: expected_calibration_error(labels, probabilities) for curve, probabilities in curves.items()}
    bins = {curve: reliability(labels, probabilities) for curve, probabilities in curves.items()}
    print(f"\nECE on the test split ({len(labels)} rows, {BINS} equal-width bins), model version {version}:")
    for curve, ece in eces.items():
        model, metric, _ = CURVES[curve]
        recorded = report["metrics"][model][metric]
        predicted, observed, rows = bins[curve]
        drawn = float(np.nansum(rows * np.abs(observed - predicted)) / len(labels))
        print(f"  {curve:<36} {ece:.4f}  (model_evaluation recorded {recorded:.4f}; from the drawn bins {drawn:.4f})")
        # The recorded figure is this very computation; the drawn bins sum in float64, the ECE in float32.
        if recorded != ece or abs(drawn - ece) > 1e-6:
            raise RuntimeError(f"{curve}: ECE {ece}, recorded {recorded}, drawn {drawn}: the plot is not of that run")
    draw(labels, bins, eces, out)
    print(f"\nwrote {out}")
    print(f"{datetime.now(UTC):%Y-%m-%d}, wall time {time.perf_counter() - began:.0f} s on {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
