"""platform_assets.ml.service_metrics: one model version's /predict requests, 5xx share and p99 from /metrics."""

from __future__ import annotations

from platform_assets.ml import service_metrics
from platform_assets.ml.service_metrics import ServedHealth

# As the service's /metrics writes them (labels sorted): champion v1 and challenger v2 in one process.
METRICS_TEXT = """# HELP credit_risk_requests_total Requests handled
# TYPE credit_risk_requests_total counter
credit_risk_requests_total{endpoint="/predict",model_version="v1",role="champion",status="200"} 95.0
credit_risk_requests_total{endpoint="/predict",model_version="v1",role="champion",status="503"} 1.0
credit_risk_requests_total{endpoint="/predict",model_version="v2",role="challenger",status="200"} 6.0
credit_risk_requests_total{endpoint="/predict",model_version="v2",role="challenger",status="500"} 4.0
credit_risk_requests_total{endpoint="/predict",model_version="none",role="none",status="422"} 9.0
credit_risk_requests_total{endpoint="/feedback",model_version="none",role="none",status="500"} 7.0
# HELP credit_risk_request_latency_seconds latency
# TYPE credit_risk_request_latency_seconds histogram
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="0.005",model_version="v1",role="champion"} 90.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="0.05",model_version="v1",role="champion"} 96.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="+Inf",model_version="v1",role="champion"} 96.0
credit_risk_request_latency_seconds_count{endpoint="/predict",model_version="v1",role="champion"} 96.0
credit_risk_request_latency_seconds_sum{endpoint="/predict",model_version="v1",role="champion"} 0.5
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="0.005",model_version="v2",role="challenger"} 2.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="0.05",model_version="v2",role="challenger"} 2.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="+Inf",model_version="v2",role="challenger"} 10.0
credit_risk_request_latency_seconds_count{endpoint="/predict",model_version="v2",role="challenger"} 10.0
credit_risk_request_latency_seconds_sum{endpoint="/predict",model_version="v2",role="challenger"} 9.0
"""


def test_each_role_is_read_apart() -> None:
    champion = service_metrics.served_health(METRICS_TEXT, "v1", "champion")
    challenger = service_metrics.served_health(METRICS_TEXT, "v2", "challenger")
    assert champion == ServedHealth(requests=96, server_errors=1, p99_seconds=0.05)
    assert challenger == ServedHealth(requests=10, server_errors=4, p99_seconds=float("inf"))
    assert challenger.error_rate == 0.4
    # A version that never answered in that role (e.g. v1 as challenger) has nothing yet.
    assert service_metrics.served_health(METRICS_TEXT, "v1", "challenger") == ServedHealth(0, 0, None)
    assert ServedHealth(0, 0, None).error_rate is None


def test_latency_quantile_is_the_bucket_bound() -> None:
    assert service_metrics.latency_quantile({"0.005": 90.0, "0.05": 98.0, "1.0": 100.0, "+Inf": 100.0}) == 1.0
    assert service_metrics.latency_quantile({"0.005": 90.0, "+Inf": 90.0}) == 0.005
    assert service_metrics.latency_quantile({"+Inf": 0.0}) is None
