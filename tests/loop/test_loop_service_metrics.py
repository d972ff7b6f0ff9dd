"""platform_assets.ml.service_metrics: the canary's 5xx share and latency p99 from the service's /metrics text."""

from __future__ import annotations

from platform_assets.ml import service_metrics

METRICS_TEXT = """# HELP credit_risk_requests_total Requests handled
# TYPE credit_risk_requests_total counter
credit_risk_requests_total{endpoint="/predict",status="200"} 95.0
credit_risk_requests_total{endpoint="/predict",status="503"} 4.0
credit_risk_requests_total{endpoint="/predict",status="422"} 1.0
credit_risk_requests_total{endpoint="/feedback",status="500"} 7.0
"""


def test_server_error_share_from_metrics() -> None:
    counts = service_metrics.predict_request_counts(METRICS_TEXT)
    assert counts == (100, 4)
    assert service_metrics.server_error_share(counts, None) == (0.04, 100)
    assert service_metrics.server_error_share(counts, (80, 4)) == (0.0, 20)
    assert service_metrics.server_error_share(counts, (500, 9)) == (0.04, 100)  # restarted: counters reset
    assert service_metrics.server_error_share((0, 0), None) == (None, 0)


LATENCY_METRICS_TEXT = """# HELP credit_risk_request_latency_seconds latency
# TYPE credit_risk_request_latency_seconds histogram
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="0.005"} 90.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="0.05"} 98.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="1.0"} 100.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="+Inf"} 100.0
credit_risk_request_latency_seconds_count{endpoint="/predict"} 100.0
credit_risk_request_latency_seconds_sum{endpoint="/predict"} 2.0
credit_risk_request_latency_seconds_bucket{endpoint="/feedback",le="+Inf"} 7.0
"""


def test_latency_p99_is_read_from_the_histogram_since_the_step_began() -> None:
    now = service_metrics.predict_latency_buckets(LATENCY_METRICS_TEXT)
    assert now["+Inf"] == 100.0 and "/feedback" not in str(now)
    assert service_metrics.latency_quantile(now, None) == 1.0  # 98 of 100 under 50 ms: the 99th is in (0.05, 1]
    baseline = {"0.005": 50.0, "0.05": 50.0, "1.0": 50.0, "+Inf": 50.0}
    assert service_metrics.latency_quantile(now, baseline) == 1.0
    fast = {"0.005": 90.0, "0.05": 90.0, "1.0": 90.0, "+Inf": 90.0}
    assert service_metrics.latency_quantile(fast, None) == 0.005
    assert service_metrics.latency_quantile(fast, fast) is None, "no requests since the baseline"
