"""grafana/prometheus: promtool accepts the rules and their unit tests pass; every alert has a runbook
section and both a firing and a quiet test case."""

from __future__ import annotations

import pytest
from ops_support import (
    PROMETHEUS_DIR,
    RULES,
    RULES_TEST,
    alerting_rules,
    load_yaml,
    promtool,
    recording_rules,
    run,
    runbook_anchors,
)

from platform_assets.core import observability, slo


def test_promtool_check_rules() -> None:
    result = run([promtool(), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = run([promtool(), "test", "rules", str(RULES_TEST)], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_local_prometheus_config_is_valid_and_scrapes_the_local_service() -> None:
    config = PROMETHEUS_DIR / "prometheus.yml"
    result = run([promtool(), "check", "config", str(config)], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in load_yaml(config)["scrape_configs"]}
    # The alerts select up{job="credit-risk-service"}; later integration tests run the service on :3001.
    assert jobs["credit-risk-service"]["static_configs"] == [{"targets": ["127.0.0.1:3001"]}]
    assert load_yaml(config)["rule_files"] == ["rules.yml"]


def test_names_are_unique() -> None:
    records = [rule["record"] for rule in recording_rules()]
    alerts = [rule["alert"] for rule in alerting_rules()]
    assert len(set(records)) == len(records)
    assert len(set(alerts)) == len(alerts)


def test_the_alerts_asked_for_exist() -> None:
    alerts = {rule["alert"] for rule in alerting_rules()}
    assert {
        "CreditRiskHighErrorRatio",
        "CreditRiskHighLatencyP99",
        "CreditRiskServiceDown",
        "CreditRiskNoPredictions",
        "CreditRiskChallengerErrorRatioWorse",
    } <= alerts
    latency = next(rule for rule in alerting_rules() if rule["alert"] == "CreditRiskHighLatencyP99")
    assert latency["for"] == "5m" and f"> {slo.SERVICE.latency_p99_seconds}" in latency["expr"]


def test_recording_rules_cover_rate_error_ratio_and_p99_per_model_version_and_role() -> None:
    records = {rule["record"]: rule["expr"] for rule in recording_rules()}
    per_version = (
        "model_version_role:credit_risk_requests:rate5m",
        "model_version_role:credit_risk_request_errors:ratio_rate5m",
        "model_version_role:credit_risk_request_latency_seconds:p99_5m",
    )
    assert set(per_version) <= set(records)
    # Read from the request metrics' own labels, not joined on which champion a pod serves.
    assert all("model_info" not in records[name] for name in per_version)
    assert all("by (job, model_version, role" in records[name] for name in per_version)


def test_live_bias_is_recorded_from_counters_with_the_slo_window() -> None:
    records = {rule["record"]: rule["expr"] for rule in recording_rules()}
    assert set(observability.RECORDED) <= set(records)
    window = f"[{slo.FAIRNESS.live_window_minutes}m]"
    assert f"increase({observability.GROUP_DECISIONS_TOTAL}{window})" in records[observability.LIVE_GROUP_DECISIONS]
    assert f">= {slo.FAIRNESS.live_min_group_decisions}" in records[observability.LIVE_DISPARATE_IMPACT_RATIO]
    alert = next(rule for rule in alerting_rules() if rule["alert"] == "CreditRiskLiveDisparateImpactLow")
    assert alert["expr"] == f"{observability.LIVE_DISPARATE_IMPACT_RATIO} < {slo.FAIRNESS.min_disparate_impact_ratio}"


def test_the_latency_objective_reads_bentomls_histogram_on_the_callers_endpoints() -> None:
    records = {rule["record"]: rule["expr"] for rule in recording_rules()}
    p99 = records["job:bentoml_service_request_duration_seconds:p99_5m"]
    assert f"{observability.BENTOML_REQUEST_DURATION_SECONDS}_bucket" in p99
    assert all(endpoint in p99 for endpoint in slo.SERVICE.latency_endpoints) and "/metrics" not in p99


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_alert_links_to_its_runbook_section(rule: dict) -> None:
    url = rule["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path == "grafana/RUNBOOK.md"
    assert anchor == rule["alert"].lower(), "the section is named after the alert"
    assert anchor in runbook_anchors(), f"grafana/RUNBOOK.md has no heading for #{anchor}"
    assert {"severity", "service"} <= set(rule["labels"])
    assert rule["annotations"].get("summary") and rule["annotations"].get("description")


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_firing_and_quiet_cases(rule: dict) -> None:
    cases = [
        case
        for test in load_yaml(RULES_TEST)["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == rule["alert"]
    ]
    assert any(case.get("exp_alerts") for case in cases), f"no case where {rule['alert']} fires"
    assert any(not case.get("exp_alerts") for case in cases), f"no case where {rule['alert']} stays quiet"


def test_rules_test_loads_exactly_rules_yml() -> None:
    assert load_yaml(RULES_TEST)["rule_files"] == ["rules.yml"]
