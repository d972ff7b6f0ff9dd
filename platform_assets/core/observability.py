"""Names of the Prometheus metrics the platform exports: the one list that the service, the Grafana
dashboards and the alert rules share (a test checks that every query uses only these)."""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "credit_risk"

#: Counter, labels: endpoint, status (HTTP code).
REQUESTS_TOTAL: Final = f"{NAMESPACE}_requests_total"
#: Histogram in seconds, labels: endpoint.
REQUEST_LATENCY_SECONDS: Final = f"{NAMESPACE}_request_latency_seconds"
#: Counter, labels: endpoint, status, reason (a short machine-readable cause).
REQUEST_ERRORS_TOTAL: Final = f"{NAMESPACE}_request_errors_total"
#: Counter, labels: model_version, role (champion|challenger), decision (approve|decline).
PREDICTIONS_TOTAL: Final = f"{NAMESPACE}_predictions_total"
#: Histogram of probabilities of default, labels: model_version, role.
SCORE: Final = f"{NAMESPACE}_score"
#: Counter, labels: known (true|false): whether the prediction/application was found.
FEEDBACK_TOTAL: Final = f"{NAMESPACE}_feedback_total"
#: Gauge, labels: role. The challenger's traffic share 0..1.
TRAFFIC_WEIGHT: Final = f"{NAMESPACE}_traffic_weight"
#: Gauge (info-style, value 1), labels: role, model_version.
MODEL_INFO: Final = f"{NAMESPACE}_model_info"
#: Gauge 0..1, labels: attribute (sex|age_band|marriage|education), group. Declined share of the group
#: over the live bias window (platform_assets/serving/bias.py), as the fairness report's selection rate.
LIVE_SELECTION_RATE: Final = f"{NAMESPACE}_live_selection_rate"
#: Gauge, labels: attribute, group. Predictions of the group in the live bias window.
LIVE_GROUP_PREDICTIONS: Final = f"{NAMESPACE}_live_group_predictions"
#: Gauge 0..1 (NaN when fewer than two groups are measurable), labels: attribute. Lowest group approval
#: rate / highest over the live bias window: the four-fifths rule wants >= 0.8.
LIVE_DISPARATE_IMPACT_RATIO: Final = f"{NAMESPACE}_live_disparate_impact_ratio"
#: The four-fifths rule bound the live-bias alert and dashboard use.
DISPARATE_IMPACT_BOUND: Final = 0.8

#: Latency buckets in seconds, fine enough for a millisecond service.
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
SCORE_BUCKETS: Final = tuple(round(0.05 * i, 2) for i in range(1, 20))

EXPORTED: Final = (
    REQUESTS_TOTAL,
    REQUEST_LATENCY_SECONDS,
    REQUEST_ERRORS_TOTAL,
    PREDICTIONS_TOTAL,
    SCORE,
    FEEDBACK_TOTAL,
    TRAFFIC_WEIGHT,
    MODEL_INFO,
    LIVE_SELECTION_RATE,
    LIVE_GROUP_PREDICTIONS,
    LIVE_DISPARATE_IMPACT_RATIO,
)
