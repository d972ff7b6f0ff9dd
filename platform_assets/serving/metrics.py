"""The service's Prometheus metrics, named and labelled exactly as ``platform_assets.observability`` says.

They live in prometheus_client's default registry. Under ``bentoml serve`` every worker writes them
to ``PROMETHEUS_MULTIPROC_DIR`` and BentoML's ``/metrics`` merges the workers, so gauges declare how
to combine processes (the most recent value among live workers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from platform_assets.core import observability as obs

#: Roles a loaded model can have; the ``role`` label takes only these values.
ROLES = ("champion", "challenger", obs.SHADOW_ROLE)

REQUESTS = Counter(
    obs.REQUESTS_TOTAL.removesuffix("_total"),
    "Requests handled, by endpoint, HTTP status and the model version and role that answered.",
    ["endpoint", "status", "model_version", "role"],
)
LATENCY = Histogram(
    obs.REQUEST_LATENCY_SECONDS,
    "Request latency in seconds, from the first byte in to the last byte out, by endpoint, model version and role.",
    ["endpoint", "model_version", "role"],
    buckets=obs.LATENCY_BUCKETS,
)
ERRORS = Counter(
    obs.REQUEST_ERRORS_TOTAL.removesuffix("_total"),
    "Requests answered with an error status, by endpoint, status, short cause, model version and role.",
    ["endpoint", "status", "reason", "model_version", "role"],
)
PREDICTIONS = Counter(
    obs.PREDICTIONS_TOTAL.removesuffix("_total"),
    "Scored applications, by model version, role and decision.",
    ["model_version", "role", "decision"],
)
SCORE = Histogram(
    obs.SCORE, "Probability of default of scored applications.", ["model_version", "role"], buckets=obs.SCORE_BUCKETS
)
FEEDBACK = Counter(
    obs.FEEDBACK_TOTAL.removesuffix("_total"),
    "Outcome records stored, by whether their prediction/application was found.",
    ["known"],
)
TRAFFIC_WEIGHT = Gauge(
    obs.TRAFFIC_WEIGHT, "Share of traffic routed to each role, 0..1.", ["role"], multiprocess_mode="livemostrecent"
)
MODEL_INFO = Gauge(
    obs.MODEL_INFO,
    "1 for the model version serving each role, 0 for versions it served before.",
    ["role", "model_version"],
    multiprocess_mode="livemostrecent",
)


def observe_many(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for every value, with one increment per touched bucket instead of one
    per value (each increment is a lock and a write to the multiprocess file).

    Exactly ``observe``'s bucketing: a value lands in the first bucket whose upper bound is >= it.
    Relies on prometheus_client's ``Histogram`` child layout (``_upper_bounds``, ``_buckets``, ``_sum``);
    falls back to ``observe`` per value if that ever changes.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(values) < 8:
        for value in values:
            histogram.observe(value)
        return
    histogram._raise_if_not_observable()
    array = np.asarray(values, dtype="float64")
    total.inc(float(array.sum()))
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype="float64"), array, side="left"))
    for index in np.flatnonzero(counts[: len(buckets)]).tolist():
        buckets[index].inc(int(counts[index]))


def observe_predictions(model_version: str, role: str, probabilities: list[float], decisions: list[str]) -> None:
    """Count one model's share of a batch (one label lookup per batch, not per row)."""
    observe_many(SCORE.labels(model_version=model_version, role=role), probabilities)
    declines = decisions.count("decline")
    if declines:
        PREDICTIONS.labels(model_version=model_version, role=role, decision="decline").inc(declines)
    if len(decisions) - declines:
        PREDICTIONS.labels(model_version=model_version, role=role, decision="approve").inc(len(decisions) - declines)


def publish_models(current: dict[str, tuple[str, float]], previous: dict[str, str]) -> None:
    """Set the info and weight gauges: ``current`` maps role -> (version, traffic share; the shadow's: the share
    of the answered applications it scores)."""
    for role in ROLES:
        old = previous.get(role)
        new = current.get(role)
        if old is not None and (new is None or new[0] != old):
            MODEL_INFO.labels(role=role, model_version=old).set(0)
        if new is not None:
            MODEL_INFO.labels(role=role, model_version=new[0]).set(1)
        TRAFFIC_WEIGHT.labels(role=role).set(new[1] if new is not None else 0.0)


REGISTRY_REFRESH_FAILURES = Counter(
    obs.REGISTRY_REFRESH_FAILURES_TOTAL.removesuffix("_total"),
    "Registry (MLflow) reads that failed; the loaded model versions keep serving meanwhile.",
)
#: ``livemax``: the registry is one server for every worker, so the freshest worker speaks for the replica (a
#: process that imported this module and never polled shows 0, which ``livemin`` would report as "never").
REGISTRY_LAST_SUCCESS = Gauge(
    obs.REGISTRY_LAST_SUCCESS_TIMESTAMP_SECONDS,
    "Unix time (seconds) of the last successful registry read.",
    multiprocess_mode="livemax",
)
SHADOW_FAILURES = Counter(
    obs.SHADOW_FAILURES_TOTAL.removesuffix("_total"),
    "Applications the shadow was to score and did not, by its model version and why (never a response error).",
    ["model_version", "reason"],
)
GROUP_DECISIONS = Counter(
    obs.GROUP_DECISIONS_TOTAL.removesuffix("_total"),
    "Scored applications that carried a protected attribute, by attribute, group, decision and model version.",
    ["attribute", "group", "decision", "model_version"],
)
_group_children: dict[tuple[str, str, str, str], Any] = {}


def observe_group_decisions(counts: Mapping[tuple[str, str, str, str], int]) -> None:
    """Add ``(attribute, group, decision, model_version) -> applications`` (``bias.group_decisions``)."""
    for key, n in counts.items():
        child = _group_children.get(key)
        if child is None:  # a label lookup costs more than the increment: once per label set
            attribute, group, decision, model_version = key
            child = _group_children[key] = GROUP_DECISIONS.labels(
                attribute=attribute, group=group, decision=decision, model_version=model_version
            )
        child.inc(n)
