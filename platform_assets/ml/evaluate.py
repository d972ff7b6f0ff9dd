"""Test-set metrics and plots, the same for the CNN and the baselines."""

from __future__ import annotations

import base64
import io

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC, accuracy, precision, recall (at ``threshold``), Brier score and expected calibration error."""
    decisions = probabilities >= threshold
    return {
        "roc_auc": float(roc_auc_score(labels, probabilities)),
        "accuracy": float(accuracy_score(labels, decisions)),
        "precision": float(precision_score(labels, decisions, zero_division=0)),
        "recall": float(recall_score(labels, decisions, zero_division=0)),
        "brier": float(brier_score_loss(labels, probabilities)),
        "ece": expected_calibration_error(labels, probabilities),
        "threshold": float(threshold),
    }


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean probability| over equal-width bins, weighted by rows per bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(labels[mask].mean() - probabilities[mask].mean())
    return float(total / len(labels))


def plots_png(labels: np.ndarray, scores: dict[str, np.ndarray]) -> bytes:
    """ROC curves and a calibration (reliability) plot for every model, side by side, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (roc_axis, calibration_axis) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=90)
    for name, probabilities in scores.items():
        fpr, tpr, _ = roc_curve(labels, probabilities)
        roc_axis.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, probabilities):.3f})")
        observed, predicted = calibration_curve(labels, probabilities, n_bins=10, strategy="quantile")
        calibration_axis.plot(predicted, observed, marker="o", label=name)
    for axis in (roc_axis, calibration_axis):
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        axis.legend(fontsize=8)
    roc_axis.set(title="ROC (test set)", xlabel="false positive rate", ylabel="true positive rate")
    calibration_axis.set(title="Calibration (test set)", xlabel="mean predicted probability", ylabel="observed rate")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown embedding ``png`` inline, which the Dagster UI renders in asset metadata."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per model, one column per metric."""
    columns = ["roc_auc", "accuracy", "precision", "recall", "brier", "ece", "threshold"]
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.4f}" for c in columns) + " |")
    return "\n".join(lines)
