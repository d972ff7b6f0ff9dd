"""The service's ``/predict`` request counts, 5xx share and latency quantile from its ``/metrics`` text.

Pure functions (no Dagster, no I/O): ``LiveMonitoring`` fetches the Prometheus text exposition; the canary
compares two readings (at the start of a step and now).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from platform_assets.core import observability as obs


def predict_request_counts(metrics_text: str, endpoint: str = "/predict") -> tuple[int, int]:
    """(all, 5xx) requests of ``endpoint`` from Prometheus text exposition (``credit_risk_requests_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

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
