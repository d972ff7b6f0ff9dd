"""Names of the Prometheus metrics the platform exports: the one list that the service, the Grafana
dashboards and the alert rules share (a test checks that every query uses only these)."""

from __future__ import annotations

from typing import Final

from platform_assets.core.registry import SHADOW

NAMESPACE: Final = "credit_risk"

#: The request metrics' ``model_version`` and ``role`` when no model answered (bad key, bad input before
#: routing, /feedback, /admin). On /predict the pair is the model that answered: the challenger's when any
#: row of the request went to it, else the champion's (``serving.engine.answered_by``).
NO_MODEL: Final = "none"
#: Counter, labels: endpoint, status (HTTP code), model_version, role (champion|challenger|none).
REQUESTS_TOTAL: Final = f"{NAMESPACE}_requests_total"
#: Histogram in seconds, labels: endpoint, model_version, role.
REQUEST_LATENCY_SECONDS: Final = f"{NAMESPACE}_request_latency_seconds"
#: Counter, labels: endpoint, status, reason (a short machine-readable cause), model_version, role.
REQUEST_ERRORS_TOTAL: Final = f"{NAMESPACE}_request_errors_total"
#: Counter, labels: model_version, role (champion|challenger|shadow), decision (approve|decline). The shadow's
#: applications were also scored by the role that answered them: a sum of the traffic answered selects
#: ``SERVED_ROLES``.
PREDICTIONS_TOTAL: Final = f"{NAMESPACE}_predictions_total"
#: Histogram of probabilities of default, labels: model_version, role (champion|challenger|shadow).
SCORE: Final = f"{NAMESPACE}_score"
#: Counter, labels: known (true|false): whether the prediction/application was found.
FEEDBACK_TOTAL: Final = f"{NAMESPACE}_feedback_total"
#: Gauge, labels: role. Each role's share of the answered traffic 0..1; the shadow's: the share of the answered
#: applications it scores.
TRAFFIC_WEIGHT: Final = f"{NAMESPACE}_traffic_weight"
#: Gauge (info-style, value 1), labels: role, model_version.
MODEL_INFO: Final = f"{NAMESPACE}_model_info"
#: Counter, labels: attribute (sex|age_band|marriage|education), group (the fairness report's label),
#: decision (approve|decline), model_version. One increment per scored application that carried the
#: attribute: the recording rules below turn it into per-group approval rates and the disparate impact
#: ratio, summed over workers and pods.
GROUP_DECISIONS_TOTAL: Final = f"{NAMESPACE}_group_decisions_total"
#: Counter, labels: model_version (the shadow's), reason (error|queue_full|missing_input|shutdown). Applications
#: the shadow was to score and did not: its scoring raised, its queue was full (it is slower than the traffic),
#: the model needs a protected attribute the application did not carry, or the worker stopped first. Never
#: an error of the response, which the champion (or challenger) gave already.
SHADOW_FAILURES_TOTAL: Final = f"{NAMESPACE}_shadow_failures_total"
#: Counter, no labels: registry (MLflow) reads of a worker's poller that failed (server unreachable, an error
#: answer, a version that could not be downloaded). The loaded versions keep serving meanwhile.
REGISTRY_REFRESH_FAILURES_TOTAL: Final = f"{NAMESPACE}_registry_refresh_failures_total"
#: Gauge, Unix time in seconds, no labels: when the replica last read the registry successfully (the most recent
#: among its live workers; 0 before the first). ``time() - it`` is how stale its view of the aliases is.
REGISTRY_LAST_SUCCESS_TIMESTAMP_SECONDS: Final = f"{NAMESPACE}_registry_last_success_timestamp_seconds"
#: The role label of a shadow's series, and a matcher for the roles that answered the traffic.
SHADOW_ROLE: Final = SHADOW
SERVED_ROLES: Final = f'role!="{SHADOW_ROLE}"'

#: BentoML's own request histogram (``metrics`` in the ``@bentoml.service`` decorator, namespace below),
#: seconds, labels: endpoint (the path), service_name, service_version, http_response_code. The service's
#: latency objective reads it: it covers everything the framework does for a request, not only our handler.
BENTOML_METRICS_NAMESPACE: Final = "bentoml_service"
BENTOML_REQUEST_DURATION_SECONDS: Final = f"{BENTOML_METRICS_NAMESPACE}_request_duration_seconds"

# --- series Prometheus records from the ones above (grafana/prometheus/rules.yml); never exported ----------
#: Decisions per (job, attribute, group) over the live bias window (``slo.FAIRNESS.live_window_minutes``).
LIVE_GROUP_DECISIONS: Final = "job_attribute_group:credit_risk_group_decisions:increase_window"
#: Approved share per (job, attribute, group) over the live bias window, 0..1.
LIVE_GROUP_APPROVAL_RATIO: Final = "job_attribute_group:credit_risk_group_approvals:ratio_window"
#: Per (job, attribute): lowest group approval rate / highest over the window, among the groups with at
#: least ``slo.FAIRNESS.live_min_group_decisions`` decisions; absent with fewer than two such groups, NaN
#: when no group was approved at all. The four-fifths rule wants >= 0.8.
LIVE_DISPARATE_IMPACT_RATIO: Final = "job_attribute:credit_risk_disparate_impact:ratio_window"
RECORDED: Final = (LIVE_GROUP_DECISIONS, LIVE_GROUP_APPROVAL_RATIO, LIVE_DISPARATE_IMPACT_RATIO)

#: The four-fifths rule bound the live-bias alert and dashboard use.
DISPARATE_IMPACT_BOUND: Final = 0.8

#: Latency buckets in seconds, fine enough for a millisecond service (ours and BentoML's histogram).
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
    GROUP_DECISIONS_TOTAL,
    SHADOW_FAILURES_TOTAL,
    REGISTRY_REFRESH_FAILURES_TOTAL,
    REGISTRY_LAST_SUCCESS_TIMESTAMP_SECONDS,
    BENTOML_REQUEST_DURATION_SECONDS,
)
#: The exported metrics that have series only while a shadow runs (and fails).
SHADOW_ONLY: Final = (SHADOW_FAILURES_TOTAL,)
