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


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, raw_logits: np.ndarray | None = None
) -> dict[str, float]:
    """ROC AUC, accuracy, precision, recall (at ``threshold``), Brier score and expected calibration error of the
    (calibrated) ``probabilities``; with ``raw_logits`` (the model's score before calibration) also the AUC,
    Brier score and ECE of ``sigmoid(raw_logits)`` as ``*_uncalibrated``."""
    decisions = probabilities >= threshold
    metrics = {
        "roc_auc": float(roc_auc_score(labels, probabilities)),
        "accuracy": float(accuracy_score(labels, decisions)),
        "precision": float(precision_score(labels, decisions, zero_division=0)),
        "recall": float(recall_score(labels, decisions, zero_division=0)),
        "brier": float(brier_score_loss(labels, probabilities)),
        "ece": expected_calibration_error(labels, probabilities),
        "threshold": float(threshold),
    }
    if raw_logits is not None:
        raw = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(raw_logits, dtype="float64")))
        metrics["roc_auc_uncalibrated"] = float(roc_auc_score(labels, raw))
        metrics["brier_uncalibrated"] = float(brier_score_loss(labels, raw))
        metrics["ece_uncalibrated"] = expected_calibration_error(labels, raw)
    return metrics


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


def plots_png(labels: np.ndarray, scores: dict[str, np.ndarray], uncalibrated: dict[str, np.ndarray]) -> bytes:
    """ROC curves, and reliability diagrams of the calibrated and the uncalibrated probabilities (10 equal-width
    bins, the ECE's), for every model side by side, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (roc_axis, calibrated_axis, raw_axis) = plt.subplots(1, 3, figsize=(15, 4.6), dpi=90)
    for name, probabilities in scores.items():
        fpr, tpr, _ = roc_curve(labels, probabilities)
        roc_axis.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, probabilities):.3f})")
    for axis, by_model in ((calibrated_axis, scores), (raw_axis, uncalibrated)):
        for name, probabilities in by_model.items():
            observed, predicted = calibration_curve(labels, probabilities, n_bins=10, strategy="uniform")
            ece = expected_calibration_error(labels, probabilities)
            axis.plot(predicted, observed, marker="o", label=f"{name} (ECE {ece:.3f})")
    for axis in (roc_axis, calibrated_axis, raw_axis):
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        axis.legend(fontsize=8)
    roc_axis.set(title="ROC (test set)", xlabel="false positive rate", ylabel="true positive rate")
    calibrated_axis.set(title="Reliability, calibrated (test set)", xlabel="mean predicted PD", ylabel="default rate")
    raw_axis.set(title="Reliability, uncalibrated (test set)", xlabel="mean raw score", ylabel="default rate")
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
    columns += [c for c in ("brier_uncalibrated", "ece_uncalibrated") if all(c in m for m in rows.values())]
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.4f}" for c in columns) + " |")
    return "\n".join(lines)
