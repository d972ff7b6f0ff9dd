"""The A/B report's comparison of two live model versions, with significance tests.

Pure functions (no Dagster, no I/O) over inference-log frames (``read_predictions`` columns).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from platform_assets.ml.live_quality import frame_quality, labelled_rows


def _normal_p_value(z: float) -> float:
    return float(math.erfc(abs(z) / math.sqrt(2.0)))


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982) standard error of a ROC AUC."""
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def compare_versions(a: pd.DataFrame, b: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """Live metrics of two versions side by side (``a`` the champion, ``b`` the challenger), with a
    two-proportion z-test of the accuracy difference and a z-test of the ROC AUC difference (Hanley-McNeil
    standard errors; the versions scored disjoint applications, so the samples are independent)."""
    qa, qb = frame_quality(a), frame_quality(b)
    out: dict[str, Any] = {"a": qa, "b": qb, "alpha": alpha}
    na, nb = qa["labelled"], qb["labelled"]
    if na and nb:
        pooled = (qa["accuracy"] * na + qb["accuracy"] * nb) / (na + nb)
        se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
        z = (qb["accuracy"] - qa["accuracy"]) / se if se > 0 else 0.0
        out["accuracy_difference"] = qb["accuracy"] - qa["accuracy"]
        out["accuracy_p_value"] = _normal_p_value(z) if se > 0 else 1.0
    if qa["roc_auc"] is not None and qb["roc_auc"] is not None:
        la, lb = labelled_rows(a)["defaulted"], labelled_rows(b)["defaulted"]
        sea = auc_standard_error(qa["roc_auc"], int((la == 1).sum()), int((la == 0).sum()))
        seb = auc_standard_error(qb["roc_auc"], int((lb == 1).sum()), int((lb == 0).sum()))
        se = math.sqrt(sea**2 + seb**2)
        out["roc_auc_difference"] = qb["roc_auc"] - qa["roc_auc"]
        out["roc_auc_p_value"] = _normal_p_value(out["roc_auc_difference"] / se) if se > 0 else 1.0
    significant = [m for m in ("roc_auc", "accuracy") if out.get(f"{m}_p_value", 1.0) < alpha]
    if not significant:
        out["verdict"] = "no significant difference"
    else:
        metric = significant[0]
        better = "b" if out[f"{metric}_difference"] > 0 else "a"
        out["verdict"] = f"{better} is better on {metric.replace('_', ' ')} (p < {alpha})"
    return out
