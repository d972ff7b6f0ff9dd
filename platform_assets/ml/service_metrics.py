"""One model version's ``/predict`` requests, 5xx share and latency p99 from the service's ``/metrics`` text.

Pure functions (no Dagster, no I/O): ``LiveMonitoring`` fetches the Prometheus text exposition. The request
metrics carry the ``model_version`` and ``role`` that answered each request (``serving.engine.answered_by``),
so the canary reads the challenger's and the champion's numbers apart. A version's series start when it first
answers in that role, so a challenger's counters cover its canary and nothing before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from platform_assets.core import observability as obs


@dataclass(frozen=True)
class ServedHealth:
    """What one model version answered in one role: requests, of which 5xx, and the p99 latency (seconds,
    the upper bound of its histogram bucket; None without requests)."""

    requests: int
    server_errors: int
    p99_seconds: float | None

    @property
    def error_rate(self) -> float | None:
        """5xx share of the requests; None without requests."""
        return self.server_errors / self.requests if self.requests else None


def served_health(metrics_text: str, model_version: str, role: str, endpoint: str = "/predict") -> ServedHealth:
    """``model_version`` in ``role`` on ``endpoint``, summed over the text's samples (workers are already merged
    by the service's ``/metrics``)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"endpoint": endpoint, "model_version": model_version, "role": role}
    requests = errors = 0.0
    buckets: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name not in (obs.REQUESTS_TOTAL.removesuffix("_total"), obs.REQUEST_LATENCY_SECONDS):
            continue
        for sample in family.samples:
            if any(sample.labels.get(k) != v for k, v in wanted.items()):
                continue
            if sample.name == obs.REQUESTS_TOTAL:
                requests += sample.value
                if str(sample.labels.get("status", "")).startswith("5"):
                    errors += sample.value
            elif sample.name == obs.REQUEST_LATENCY_SECONDS + "_bucket":
                buckets[sample.labels["le"]] = buckets.get(sample.labels["le"], 0.0) + sample.value
    return ServedHealth(int(requests), int(errors), latency_quantile(buckets))


def latency_quantile(buckets: Mapping[str, float], quantile: float = 0.99) -> float | None:
    """The ``quantile`` latency in seconds from cumulative histogram buckets (``le`` -> count), as the upper
    bound of the bucket it falls in (so never optimistic); ``None`` without requests."""
    total = buckets.get("+Inf", 0.0)
    if total <= 0:
        return None
    for le, count in sorted(buckets.items(), key=lambda item: float(item[0])):
        if count >= quantile * total:
            return float(le)
    return math.inf
