"""Live model quality from the inference log joined with outcomes, and the closed loop's decisions on it.

Pure functions (no Dagster, no I/O): the monitoring assets and sensors read the inference log with
``platform_assets.serving.inference_log.read_predictions`` and hand the frame here.

* ``live_performance``: per model version (and role) labelled count, accuracy, ROC AUC, Brier score,
  expected calibration error and per-group metrics by protected attribute.
* ``quality_breach``: whether the champion's live quality fell below an absolute floor and/or more than
  a margin below its validation metrics (the accuracy-drop sensor).
* ``canary_decision``: wait / step / promote / rollback for a challenger at a traffic weight.
* ``compare_versions``: the A/B report's side-by-side metrics with significance tests.
* ``server_error_share``: the share of 5xx answers of ``/predict`` from the service's ``/metrics`` text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from platform_assets.ml import evaluate, fairness

#: Inference-log columns of the protected attributes and how their groups are labelled.
_GROUPS: dict[str, Any] = {
    "sex": fairness.SEX_LABELS,
    "education": fairness.EDUCATION_LABELS,
    "marriage": fairness.MARRIAGE_LABELS,
    "age": None,  # banded with fairness.DEFAULT_AGE_EDGES
}
ROLES = ("champion", "challenger")


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def quality(labels: np.ndarray, probabilities: np.ndarray, declined: np.ndarray) -> dict[str, Any]:
    """Metrics of labelled predictions; ``roc_auc`` is ``None`` unless both outcomes occur.

    ``accuracy`` counts a decline of a defaulter and an approval of a repayer as correct (the service's
    decision at the model's own threshold).
    """
    labels = np.asarray(labels, dtype="int64")
    probabilities = np.asarray(probabilities, dtype="float64")
    declined = np.asarray(declined, dtype=bool)
    n = len(labels)
    if n == 0:
        return {"labelled": 0, "accuracy": None, "roc_auc": None, "brier": None, "ece": None, "default_rate": None}
    both = bool(labels.min() == 0 and labels.max() == 1)
    auc = evaluate.classification_metrics(labels, probabilities, 0.5)["roc_auc"] if both else None
    return {
        "labelled": n,
        "accuracy": float((declined == (labels == 1)).mean()),
        "roc_auc": _finite(auc) if auc is not None else None,
        "brier": float(np.mean((probabilities - labels) ** 2)),
        "ece": evaluate.expected_calibration_error(labels, probabilities),
        "default_rate": float(labels.mean()),
        "decline_rate": float(declined.mean()),
    }


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["defaulted"].notna()] if "defaulted" in frame else frame.iloc[0:0]


def frame_quality(frame: pd.DataFrame) -> dict[str, Any]:
    """``quality`` of the labelled rows of an inference-log frame (``read_predictions`` columns)."""
    labelled = _labelled(frame)
    return quality(
        labelled["defaulted"].to_numpy(dtype="int64"),
        labelled["probability"].to_numpy(dtype="float64"),
        (labelled["decision"] == "decline").to_numpy(),
    )


def group_labels(frame: pd.DataFrame, column: str) -> pd.Series:
    """Readable group labels of a protected log column; missing values stay missing."""
    values = frame[column]
    present = values.notna()
    out = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if not present.any():
        return out
    codes = values[present].astype("int64")
    if column == "age":
        out[present] = fairness.age_bands(codes.to_numpy())
    else:
        labels = _GROUPS[column]
        out[present] = [labels.get(int(c), f"code {int(c)}") for c in codes]
    return out


def group_metrics(frame: pd.DataFrame, min_group_size: int = 30) -> dict[str, dict[str, dict[str, Any]]]:
    """Per protected attribute present in the log: per group with at least ``min_group_size`` labelled
    rows, its ``quality``. Attributes that were never sent are left out."""
    labelled = _labelled(frame)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for column in _GROUPS:
        if column not in labelled or not labelled[column].notna().any():
            continue
        labels = group_labels(labelled, column)
        groups = {}
        for group in sorted(labels.dropna().unique(), key=str):
            rows = labelled[labels == group]
            if len(rows) >= min_group_size:
                groups[str(group)] = frame_quality(rows)
        out[column] = groups
    return out


def live_performance(frame: pd.DataFrame, min_group_size: int = 30) -> dict[str, Any]:
    """Per model version: predictions, labelled outcomes and quality overall, per role and per group."""
    versions: dict[str, Any] = {}
    for version, rows in frame.groupby("model_version", sort=True):
        versions[str(version)] = {
            "predictions": len(rows),
            **frame_quality(rows),
            "roles": {
                str(role): {"predictions": len(part), **frame_quality(part)}
                for role, part in rows.groupby("role", sort=True)
            },
            "groups": group_metrics(rows, min_group_size),
        }
    labelled = _labelled(frame)
    return {
        "predictions": len(frame),
        "labelled": len(labelled),
        "versions": versions,
    }


def versions_table(document: Mapping[str, Any]) -> str:
    """A Markdown table of ``live_performance``'s versions, for the UI."""

    def cell(value: Any) -> str:
        return "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))

    lines = [
        "| version | roles | predictions | labelled | accuracy | ROC AUC | Brier | ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for version, m in document["versions"].items():
        roles = ", ".join(m["roles"])
        lines.append(
            f"| {version} | {roles} | {m['predictions']} | {m['labelled']} | {cell(m['accuracy'])} | "
            f"{cell(m['roc_auc'])} | {cell(m['brier'])} | {cell(m['ece'])} |"
        )
    return "\n".join(lines)


# -- the accuracy-drop sensor's test ------------------------------------------------------------------
DropMode = Literal["relative", "absolute", "either"]


@dataclass(frozen=True)
class DropPolicy:
    """When the champion's live quality counts as dropped.

    ``relative``: live ROC AUC more than ``max_auc_drop`` below the validation ROC AUC (or live accuracy
    more than ``max_accuracy_drop`` below validation accuracy); ``absolute``: live accuracy below
    ``accuracy_floor``; ``either``: both tests, one breach is enough.
    """

    mode: DropMode = "relative"
    accuracy_floor: float = 0.85
    max_auc_drop: float = 0.05
    max_accuracy_drop: float = 0.10
    min_labelled: int = 200

    def __post_init__(self) -> None:
        if self.mode not in ("relative", "absolute", "either"):
            raise ValueError(f"drop mode must be relative, absolute or either, got {self.mode!r}")
        if self.min_labelled < 1:
            raise ValueError(f"min_labelled must be at least 1, got {self.min_labelled}")


def quality_breach(live: Mapping[str, Any], validation: Mapping[str, Any] | None, policy: DropPolicy) -> list[str]:
    """Why ``live`` quality (a ``quality`` dict) counts as dropped; empty when it holds.

    Raises ``ValueError`` when there are fewer than ``policy.min_labelled`` outcomes, or when a relative
    test needs validation metrics that are missing.
    """
    if live["labelled"] < policy.min_labelled:
        raise ValueError(f"only {live['labelled']} of the {policy.min_labelled} labelled outcomes needed")
    reasons = []
    if policy.mode in ("absolute", "either") and live["accuracy"] < policy.accuracy_floor:
        reasons.append(f"live accuracy {live['accuracy']:.4f} < floor {policy.accuracy_floor:.4f}")
    if policy.mode in ("relative", "either"):
        if not validation or "roc_auc" not in validation:
            raise ValueError("the model's validation metrics (validation_metrics.roc_auc in info.json) are missing")
        if live["roc_auc"] is not None and live["roc_auc"] < validation["roc_auc"] - policy.max_auc_drop:
            reasons.append(
                f"live ROC AUC {live['roc_auc']:.4f} is {validation['roc_auc'] - live['roc_auc']:.4f} below "
                f"validation {validation['roc_auc']:.4f} (allowed {policy.max_auc_drop:.4f})"
            )
        if "accuracy" in validation and live["accuracy"] < validation["accuracy"] - policy.max_accuracy_drop:
            reasons.append(
                f"live accuracy {live['accuracy']:.4f} is {validation['accuracy'] - live['accuracy']:.4f} below "
                f"validation {validation['accuracy']:.4f} (allowed {policy.max_accuracy_drop:.4f})"
            )
    return reasons


# -- canary -------------------------------------------------------------------------------------------
CanaryAction = Literal["wait", "step", "promote", "rollback"]


@dataclass(frozen=True)
class CanaryPolicy:
    """How a challenger's traffic grows. Weights are percent; the step to 100 is the promotion."""

    steps: tuple[float, ...] = (10.0, 50.0, 100.0)
    min_labelled: int = 200
    max_auc_drop: float = 0.03
    max_accuracy_drop: float = 0.03
    max_error_rate: float = 0.01
    max_p99_seconds: float = 0.5
    min_requests: int = 20

    def __post_init__(self) -> None:
        steps = list(self.steps)
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise ValueError(f"canary steps must be increasing percentages in (0, 100], got {steps}")
        if self.min_labelled < 1:
            raise ValueError(f"min_labelled must be at least 1, got {self.min_labelled}")


@dataclass(frozen=True)
class CanaryDecision:
    action: CanaryAction
    from_weight: float
    to_weight: float
    reasons: list[str]
    measured: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def next_weight(weight: float, steps: Sequence[float]) -> float:
    """The first configured step above ``weight``; 100 (the promotion) after the last."""
    return next((float(s) for s in steps if s > weight + 1e-9), 100.0)


def canary_decision(
    weight: float,
    champion: Mapping[str, Any],
    challenger: Mapping[str, Any],
    policy: CanaryPolicy,
    error_rate: float | None = None,
    requests: int = 0,
    p99_seconds: float | None = None,
) -> CanaryDecision:
    """What to do with a challenger serving ``weight`` percent, given both versions' live ``quality`` over
    the same window (since the current step began) and the service's 5xx share over ``requests``.

    Rollback on an error-rate breach (once ``policy.min_requests`` requests were seen) or on quality more
    than the allowed margin below the champion's; wait until both have ``policy.min_labelled`` outcomes
    (the champion only below 100 %, since at 100 % it gets no traffic); otherwise step to the next weight,
    where reaching 100 % is the promotion.
    """
    measured = {
        "weight": weight,
        "error_rate": error_rate,
        "p99_seconds": p99_seconds,
        "requests": requests,
        **{f"champion_{k}": champion.get(k) for k in ("labelled", "accuracy", "roc_auc", "brier")},
        **{f"challenger_{k}": challenger.get(k) for k in ("labelled", "accuracy", "roc_auc", "brier")},
    }

    def decide(action: CanaryAction, to: float, reasons: list[str]) -> CanaryDecision:
        return CanaryDecision(action, float(weight), float(to), reasons, measured)

    if error_rate is not None and requests >= policy.min_requests and error_rate > policy.max_error_rate:
        return decide(
            "rollback", 0.0, [f"server error rate {error_rate:.4f} > {policy.max_error_rate:.4f} over {requests}"]
        )
    if p99_seconds is not None and requests >= policy.min_requests and p99_seconds > policy.max_p99_seconds:
        return decide(
            "rollback",
            0.0,
            [f"/predict latency p99 {p99_seconds:.3f} s > {policy.max_p99_seconds:.3f} s over {requests} requests"],
        )
    waiting = []
    if challenger["labelled"] < policy.min_labelled:
        waiting.append(f"challenger has {challenger['labelled']} of {policy.min_labelled} labelled outcomes")
    if weight < 100 and champion["labelled"] < policy.min_labelled:
        waiting.append(f"champion has {champion['labelled']} of {policy.min_labelled} labelled outcomes")
    if waiting:
        return decide("wait", weight, waiting)
    breaches = []
    if weight < 100:
        if champion.get("roc_auc") is not None and challenger.get("roc_auc") is not None:
            gap = champion["roc_auc"] - challenger["roc_auc"]
            if gap > policy.max_auc_drop:
                breaches.append(
                    f"challenger ROC AUC {challenger['roc_auc']:.4f} is {gap:.4f} below the champion's "
                    f"{champion['roc_auc']:.4f} (allowed {policy.max_auc_drop:.4f})"
                )
        gap = champion["accuracy"] - challenger["accuracy"]
        if gap > policy.max_accuracy_drop:
            breaches.append(
                f"challenger accuracy {challenger['accuracy']:.4f} is {gap:.4f} below the champion's "
                f"{champion['accuracy']:.4f} (allowed {policy.max_accuracy_drop:.4f})"
            )
    if breaches:
        return decide("rollback", 0.0, breaches)
    to = next_weight(weight, policy.steps)
    held = f"challenger held against the champion over {challenger['labelled']} labelled outcomes"
    if to >= 100.0:
        return decide("promote", 100.0, [held, "next step is 100 %: promote to champion"])
    return decide("step", to, [held])


# -- A/B comparison -------------------------------------------------------------------------------------
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
        la, lb = _labelled(a)["defaulted"], _labelled(b)["defaulted"]
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


# -- service error rate ---------------------------------------------------------------------------------
def predict_request_counts(metrics_text: str, endpoint: str = "/predict") -> tuple[int, int]:
    """(all, 5xx) requests of ``endpoint`` from Prometheus text exposition (``credit_risk_requests_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    from platform_assets import observability as obs

    total = errors = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != obs.REQUESTS_TOTAL.removesuffix("_total"):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total") or sample.labels.get("endpoint") != endpoint:
                continue
            total += sample.value
            if str(sample.labels.get("status", "")).startswith("5"):
                errors += sample.value
    return int(total), int(errors)


def server_error_share(now: tuple[int, int], baseline: tuple[int, int] | None) -> tuple[float | None, int]:
    """5xx share and request count since ``baseline`` (counters from ``predict_request_counts``); a
    counter that went down (service restarted) starts over from zero."""
    total, errors = now
    if baseline is not None and total >= baseline[0] and errors >= baseline[1]:
        total, errors = total - baseline[0], errors - baseline[1]
    return (errors / total if total else None), total


def predict_latency_buckets(metrics_text: str, endpoint: str = "/predict") -> dict[str, float]:
    """Cumulative ``/predict`` latency histogram buckets (``le`` -> count) from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    from platform_assets import observability as obs

    buckets: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != obs.REQUEST_LATENCY_SECONDS:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("endpoint") == endpoint:
                buckets[sample.labels["le"]] = buckets.get(sample.labels["le"], 0.0) + sample.value
    return buckets


def latency_quantile(
    now: Mapping[str, float], baseline: Mapping[str, float] | None, quantile: float = 0.99
) -> float | None:
    """The ``quantile`` latency in seconds since ``baseline`` (both from ``predict_latency_buckets``), as
    the upper bound of the bucket it falls in (so never optimistic); ``None`` without requests. A
    counter that went down (service restarted) starts over from zero."""
    if baseline and all(now.get(le, 0.0) >= count for le, count in baseline.items()):
        counts = {le: now[le] - baseline.get(le, 0.0) for le in now}
    else:
        counts = dict(now)
    total = counts.get("+Inf", 0.0)
    if total <= 0:
        return None
    for le, count in sorted(counts.items(), key=lambda item: float(item[0])):
        if count >= quantile * total:
            return float(le)
    return math.inf
