"""Every metric name a query uses (alert and recording rules, dashboard panels and variables, the canary
AnalysisTemplate) is one the service exports: platform_assets.observability.EXPORTED."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from ops_support import (
    DASHBOARD_JSON,
    K8S,
    alerting_rules,
    exported_name,
    load_yaml,
    metric_names,
    recording_rules,
    rules,
    unknown_names,
)

from platform_assets.core import observability


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))
    queries = [
        (f"panel {panel['id']} {panel['title']}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append((f"variable {variable['name']}", variable["query"]["query"]))
            queries.append((f"variable {variable['name']} definition", variable["definition"]))
    return queries


def _analysis_queries() -> list[tuple[str, str]]:
    template = load_yaml(K8S / "base" / "analysis-template.yaml")
    return [(metric["name"], metric["provider"]["prometheus"]["query"]) for metric in template["spec"]["metrics"]]


# --- the name extractor itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(a_bucket{job=~"$job", le="0.5"}[$__rate_interval]))', {"a_bucket"}),
        (
            "sum by (model_version) (rate(x_total[5m]) * on (job, instance) group_left (model_version) "
            'topk by (job, instance) (1, info{role="champion"}))',
            {"x_total", "info"},
        ),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[2m]))) > 2.5e-2", {"h_bucket"}),
        ('absent(up{job="svc"}) or sum(up) == 0 unless on () vector(1)', {"up"}),
        ("abs(rec:x:mean{role=\"a\"} - ignoring (role) rec:x:mean{role='b'}) > bool 0.1", {"rec:x:mean"}),
        ("label_values(some_info, model_version)", {"some_info"}),
        ("rate(c_total[5m] offset 1h) / -inf", {"c_total"}),
    ],
)
def test_metric_names_extracts_metrics_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_name_outside_the_contract_is_caught() -> None:
    assert unknown_names("sum(rate(credit_risk_requests[5m]))") == {"credit_risk_requests"}
    assert unknown_names("rate(credit_risk_score_bucket[5m]) + credit_risk_scores_sum") == {"credit_risk_scores_sum"}
    assert unknown_names(f"rate({observability.REQUESTS_TOTAL}[5m]) and up") == set()


# --- the files ---------------------------------------------------------------------------------------------


def test_recording_rules_read_only_exported_metrics() -> None:
    for rule in recording_rules():
        earlier = {r["record"] for r in recording_rules()} - {rule["record"]}
        assert not unknown_names(rule["expr"], earlier), f"{rule['record']}: {unknown_names(rule['expr'], earlier)}"


def test_alerts_read_only_exported_metrics_and_recorded_series() -> None:
    recorded = {rule["record"] for rule in recording_rules()}
    for rule in alerting_rules():
        assert not unknown_names(rule["expr"], recorded), f"{rule['alert']}: {unknown_names(rule['expr'], recorded)}"


def test_recorded_series_derive_from_exported_metrics() -> None:
    """Each recording rule, expanded through the rules it reads, reaches only EXPORTED metrics (and up)."""
    records = {rule["record"]: rule["expr"] for rule in recording_rules()}

    def leaves(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        assert name not in seen, f"recording rules loop through {name}"
        out: set[str] = set()
        for used in metric_names(records[name]):
            out |= leaves(used, seen | {name}) if used in records else {used}
        return out

    for name in records:
        assert all(exported_name(leaf) for leaf in leaves(name)), f"{name} reads {leaves(name)}"


def test_every_rule_uses_some_metric() -> None:
    for rule in rules():
        assert metric_names(rule["expr"]), rule


def test_dashboard_queries_use_only_exported_metrics_and_recorded_series() -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 10
    recorded = {rule["record"] for rule in recording_rules()}
    assert set(observability.RECORDED) <= recorded
    for where, expr in queries:
        assert metric_names(expr), f"{where}: no metric in {expr!r}"
        assert not unknown_names(expr, recorded), f"{where}: {unknown_names(expr, recorded)} not in the contract"


def test_live_bias_panels_read_the_recorded_series() -> None:
    used = {name for _, expr in _dashboard_queries() for name in metric_names(expr)}
    assert set(observability.RECORDED) <= used


def test_dashboard_shows_every_exported_metric() -> None:
    used = {exported_name(name) for _, expr in _dashboard_queries() for name in metric_names(expr)}
    assert set(observability.EXPORTED) <= used, f"not on the dashboard: {set(observability.EXPORTED) - used}"


def test_analysis_template_queries_use_only_exported_metrics() -> None:
    queries = _analysis_queries()
    assert {name for name, _ in queries} == {"error-ratio", "p99-latency"}
    for name, query in queries:
        assert not unknown_names(query), f"{name}: {unknown_names(query)}"
    used = {exported_name(n) for _, query in queries for n in metric_names(query)}
    assert {
        observability.REQUEST_ERRORS_TOTAL,
        observability.REQUESTS_TOTAL,
        observability.BENTOML_REQUEST_DURATION_SECONDS,
    } <= used


def test_analysis_template_reads_only_the_canary_pods_not_a_model_version() -> None:
    for name, query in _analysis_queries():
        assert re.search(r'rollouts_pod_template_hash="\{\{args\.canary-hash\}\}"', query), name
        assert "model_version" not in query, name


def _hpa_custom_metrics() -> list[dict[str, Any]]:
    hpa = load_yaml(K8S / "base" / "hpa.yaml")
    return [metric for metric in hpa["spec"]["metrics"] if metric["type"] != "Resource"]


def test_hpa_custom_metrics_come_from_exported_counters() -> None:
    """A Pods metric, if any, is what prometheus-adapter derives from an exported counter (`X_total` -> `X`)."""
    for metric in _hpa_custom_metrics():
        name = metric[metric["type"].lower()]["metric"]["name"]
        assert f"{name}_total" in observability.EXPORTED, name
