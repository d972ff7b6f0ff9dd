"""The credit-risk service's Grafana dashboard, as code: one function per panel, RED method first.

    python grafana/dashboards.py            # (re)writes grafana/dashboards/credit_risk_service.json
    python grafana/dashboards.py --check    # exit 1 if the committed JSON is not what this file generates

(``python grafana/generate.py`` writes it together with the Prometheus rules and the canary analysis.)
Thresholds come from platform_assets.core.slo, the same values the alerts and the canary gate use.

The JSON is deterministic (sorted keys, panel ids in layout order, a fixed uid), so it is committed and
tests/ops checks that it is exactly what this module generates. Every metric name comes from
platform_assets.observability, the contract the service exports; tests/ops checks every query against it.
Import the JSON in Grafana (or provision the folder) and pick the Prometheus data source.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from platform_assets.core import observability as obs
from platform_assets.core import slo

JSON = dict[str, Any]

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "credit_risk_service.json"
UID = "credit-risk-service"
TITLE = "Credit-risk service"

DATASOURCE: JSON = {"type": "prometheus", "uid": "${datasource}"}
#: Grafana picks a window of at least four scrape intervals for rate().
RATE_WINDOW = "$__rate_interval"
#: Filters every service series by the job variable (the Prometheus scrape job).
JOB = 'job=~"$job"'
#: ... and, for the series that carry it, by the selected model versions.
VERSION = 'model_version=~"$model_version"'
SERVER_ERROR = 'status=~"5.."'
PREDICT = 'endpoint="/predict"'
#: The endpoints the latency objective covers (slo.SERVICE), as the rules select them.
SLO_ENDPOINTS = f'endpoint=~"{"|".join(slo.SERVICE.latency_endpoints)}"'
DECLINE = 'decision="decline"'
#: The roles that answered the traffic (a shadow's predictions re-score applications another role answered).
SERVED = obs.SERVED_ROLES
SHADOW = f'role="{obs.SHADOW_ROLE}"'
#: The objectives the alerts use (CreditRiskHighLatencyP99, CreditRiskHighErrorRatio): seconds, a ratio.
LATENCY_SLO_SECONDS = slo.SERVICE.latency_p99_seconds
ERROR_RATIO_SLO = slo.SERVICE.error_ratio

GRID_WIDTH = 24


def _rate(metric: str, *matchers: str) -> str:
    """`rate(metric{job=~"$job", *matchers}[$__rate_interval])`."""
    selector = ", ".join((JOB, *matchers))
    return f"rate({metric}{{{selector}}}[{RATE_WINDOW}])"


def _target(expr: str, legend: str, ref_id: str, *, instant: bool = False, fmt: str = "time_series") -> JSON:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref_id,
    }


def _thresholds(*steps: tuple[float | None, str]) -> JSON:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def _timeseries(
    title: str,
    description: str,
    targets: list[JSON],
    *,
    unit: str,
    stacked: bool = False,
    thresholds: JSON | None = None,
    max_value: float | None = None,
) -> JSON:
    custom: JSON = {
        "drawStyle": "line",
        "fillOpacity": 25 if stacked else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
        "thresholdsStyle": {"mode": "line" if thresholds else "off"},
    }
    defaults: JSON = {
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "min": 0,
        "thresholds": thresholds or _thresholds((None, "green")),
        "unit": unit,
    }
    if max_value is not None:
        defaults["max"] = max_value
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"calcs": ["mean", "max"], "displayMode": "table", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
        "title": title,
        "type": "timeseries",
    }


def _stat(title: str, description: str, target: JSON, *, unit: str, thresholds: JSON) -> JSON:
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {
            "defaults": {"color": {"mode": "thresholds"}, "thresholds": thresholds, "unit": unit},
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
        "targets": [target],
        "title": title,
        "type": "stat",
    }


# --- Rate ----------------------------------------------------------------------------------------------


def request_rate_panel() -> JSON:
    expr = f"sum by (endpoint) ({_rate(obs.REQUESTS_TOTAL)})"
    return _timeseries(
        "Request rate by endpoint",
        "Requests per second the service answered, any status (RED: rate).",
        [_target(expr, "{{endpoint}}", "A")],
        unit="reqps",
        stacked=True,
    )


def service_up_panel() -> JSON:
    return _stat(
        "Instances up",
        "Scrape targets of the job that answered the last scrape (`up`).",
        _target(f"sum(up{{{JOB}}})", "up", "A", instant=True),
        unit="none",
        thresholds=_thresholds((None, "red"), (1, "green")),
    )


# --- Errors --------------------------------------------------------------------------------------------


def error_rate_by_status_panel() -> JSON:
    expr = f"sum by (status, reason) ({_rate(obs.REQUEST_ERRORS_TOTAL)})"
    return _timeseries(
        "Errors by status and reason",
        "Failed requests per second by HTTP status and machine-readable reason (RED: errors). "
        "4xx are the callers' mistakes; the alerts count 5xx only.",
        [_target(expr, "{{status}} {{reason}}", "A")],
        unit="reqps",
        stacked=True,
    )


def error_ratio_panel() -> JSON:
    requests = f"sum({_rate(obs.REQUESTS_TOTAL)})"
    errors = f"sum({_rate(obs.REQUEST_ERRORS_TOTAL, SERVER_ERROR)})"
    expr = f"({errors} or {requests} * 0) / {requests}"
    return _stat(
        "5xx ratio",
        f"Share of requests answered with a server error; CreditRiskHighErrorRatio fires above {ERROR_RATIO_SLO:.0%}.",
        _target(expr, "5xx ratio", "A"),
        unit="percentunit",
        thresholds=_thresholds((None, "green"), (ERROR_RATIO_SLO / 2, "orange"), (ERROR_RATIO_SLO, "red")),
    )


# --- Duration ------------------------------------------------------------------------------------------


def latency_panel() -> JSON:
    buckets = f"sum by (le) ({_rate(obs.BENTOML_REQUEST_DURATION_SECONDS + '_bucket', SLO_ENDPOINTS)})"
    targets = [
        _target(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}", ref_id)
        for q, ref_id in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]
    return _timeseries(
        "Latency p50 / p95 / p99",
        f"Request latency quantiles of /predict and /feedback from BentoML's own histogram (RED: duration); "
        f"the line is the {LATENCY_SLO_SECONDS * 1000:.0f} ms p99 objective of CreditRiskHighLatencyP99.",
        targets,
        unit="s",
        thresholds=_thresholds((None, "green"), (LATENCY_SLO_SECONDS, "red")),
    )


def latency_p99_by_endpoint_panel() -> JSON:
    buckets = f"sum by (endpoint, le) ({_rate(obs.BENTOML_REQUEST_DURATION_SECONDS + '_bucket', SLO_ENDPOINTS)})"
    return _timeseries(
        "p99 latency by endpoint",
        "99th percentile of request latency per endpoint (BentoML's histogram).",
        [_target(f"histogram_quantile(0.99, {buckets})", "{{endpoint}}", "A")],
        unit="s",
        thresholds=_thresholds((None, "green"), (LATENCY_SLO_SECONDS, "red")),
    )


def latency_p99_by_version_panel() -> JSON:
    buckets = f"sum by (model_version, role, le) ({_rate(obs.REQUEST_LATENCY_SECONDS + '_bucket', PREDICT)})"
    return _timeseries(
        "/predict p99 latency by model version",
        "99th percentile of /predict latency per model version and role (the service's own histogram): the "
        "canary's latency gate compares the challenger's with the champion's.",
        [_target(f"histogram_quantile(0.99, {buckets})", "{{model_version}} {{role}}", "A")],
        unit="s",
        thresholds=_thresholds((None, "green"), (LATENCY_SLO_SECONDS, "red")),
    )


# --- Models --------------------------------------------------------------------------------------------


def predictions_panel() -> JSON:
    expr = f"sum by (model_version, decision) ({_rate(obs.PREDICTIONS_TOTAL, VERSION, SERVED)})"
    return _timeseries(
        "Predictions by model version and decision",
        "Answered applications per second, by the model version that answered them and its decision (a shadow's "
        "scores are on the shadow panel).",
        [_target(expr, "v{{model_version}} {{decision}}", "A")],
        unit="reqps",
        stacked=True,
    )


def decline_share_panel() -> JSON:
    by_version = f"sum by (model_version) ({_rate(obs.PREDICTIONS_TOTAL, VERSION)})"
    declines = f"sum by (model_version) ({_rate(obs.PREDICTIONS_TOTAL, VERSION, DECLINE)})"
    return _timeseries(
        "Decline share by model version",
        "Share of applications each model version declines: a challenger or shadow far from the champion deserves "
        "a look.",
        [_target(f"{declines} / {by_version}", "v{{model_version}}", "A")],
        unit="percentunit",
        max_value=1,
    )


def score_distribution_panel() -> JSON:
    expr = f"sum by (le) (increase({obs.SCORE}_bucket{{{JOB}, {VERSION}}}[{RATE_WINDOW}]))"
    panel = {
        "datasource": DATASOURCE,
        "description": "Distribution of the predicted probability of default of the selected model versions "
        "(histogram buckets over time).",
        "fieldConfig": {"defaults": {"custom": {"scaleDistribution": {"type": "linear"}}}, "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "legend": {"show": True},
            "tooltip": {"show": True, "yHistogram": True},
            "yAxis": {"unit": "percentunit"},
        },
        "targets": [_target(expr, "{{le}}", "A", fmt="heatmap")],
        "title": "Score distribution",
        "type": "heatmap",
    }
    return panel


def score_by_version_panel() -> JSON:
    buckets = f"sum by (model_version, le) ({_rate(obs.SCORE + '_bucket', VERSION)})"
    mean = (
        f"sum by (model_version) ({_rate(obs.SCORE + '_sum', VERSION)}) / "
        f"sum by (model_version) ({_rate(obs.SCORE + '_count', VERSION)})"
    )
    return _timeseries(
        "Score by model version",
        "Mean and 90th percentile of the predicted probability of default, per model version: a shift between "
        "champion and challenger shows here first (CreditRiskScoreShift).",
        [
            _target(mean, "v{{model_version}} mean", "A"),
            _target(f"histogram_quantile(0.9, {buckets})", "v{{model_version}} p90", "B"),
        ],
        unit="percentunit",
        max_value=1,
    )


def traffic_weight_panel() -> JSON:
    configured = f"max by (role) ({obs.TRAFFIC_WEIGHT}{{{JOB}}})"
    predictions = f"sum by (role) ({_rate(obs.PREDICTIONS_TOTAL)})"
    observed = f"{predictions} / ignoring (role) group_left () sum({_rate(obs.PREDICTIONS_TOTAL, SERVED)})"
    return _timeseries(
        "Traffic weight per role",
        "Configured share per role (the gauge) against the share of the answered applications each role actually "
        "scored: champion and challenger split them, the shadow re-scores its share of them.",
        [_target(configured, "{{role}} configured", "A"), _target(observed, "{{role}} observed", "B")],
        unit="percentunit",
        max_value=1,
    )


def shadow_panel() -> JSON:
    scored = f"sum by (model_version) ({_rate(obs.PREDICTIONS_TOTAL, VERSION, SHADOW)})"
    not_scored = f"sum by (model_version, reason) ({_rate(obs.SHADOW_FAILURES_TOTAL, VERSION)})"
    return _timeseries(
        "Shadow scoring",
        "Applications per second the shadow scored off the response path, and those it was to score and did not, "
        "by reason (error: its scoring raised; queue_full: it is slower than the traffic). Never a response error.",
        [
            _target(scored, "v{{model_version}} scored", "A"),
            _target(not_scored, "v{{model_version}} not scored: {{reason}}", "B"),
        ],
        unit="reqps",
    )


def feedback_rate_panel() -> JSON:
    expr = f"sum by (known) ({_rate(obs.FEEDBACK_TOTAL)})"
    return _timeseries(
        "Feedback rate",
        "Outcome feedback per second; known=false means the prediction/application it refers to was not found.",
        [_target(expr, "known={{known}}", "A")],
        unit="reqps",
        stacked=True,
    )


def registry_staleness_panel() -> JSON:
    stale = slo.REGISTRY.max_staleness_seconds
    expr = f"time() - max by (instance) ({obs.REGISTRY_LAST_SUCCESS_TIMESTAMP_SECONDS}{{{JOB}}})"
    return _timeseries(
        "Model registry staleness",
        "Seconds since each replica last read the MLflow registry successfully. The loaded versions keep serving "
        f"while it grows, but alias changes (promotions, rollbacks) do not arrive; over {stale:g} s it alerts.",
        [_target(expr, "{{instance}}", "A")],
        unit="s",
        thresholds=_thresholds((None, "green"), (stale, "red")),
    )


def registry_failures_panel() -> JSON:
    expr = f"sum by (instance) ({_rate(obs.REGISTRY_REFRESH_FAILURES_TOTAL)})"
    return _timeseries(
        "Model registry read failures",
        "Failed registry polls per second by replica (MLflow unreachable or failing); /admin/status says why.",
        [_target(expr, "{{instance}}", "A")],
        unit="ops",
    )


def model_info_panel() -> JSON:
    # The service keeps a replaced version's series at 0: only the value-1 ones are live.
    expr = f"max by (role, model_version) ({obs.MODEL_INFO}{{{JOB}}} == 1)"
    return {
        "datasource": DATASOURCE,
        "description": "The model versions the service has loaded now, by role.",
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"cellHeight": "sm", "showHeader": True, "sortBy": [{"desc": False, "displayName": "role"}]},
        "targets": [_target(expr, "", "A", instant=True, fmt="table")],
        "title": "Live models",
        "transformations": [
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True, "Value": True}, "indexByName": {}, "renameByName": {}},
            }
        ],
        "type": "table",
    }


# --- Fairness (live) ------------------------------------------------------------------------------------


def live_disparate_impact_panel() -> JSON:
    expr = f"min by (attribute) ({obs.LIVE_DISPARATE_IMPACT_RATIO}{{{JOB}}})"
    return _timeseries(
        "Live disparate impact ratio",
        f"Lowest group approval rate / highest, per protected attribute, over the last "
        f"{slo.FAIRNESS.live_window_minutes} minutes of decisions of every pod (recorded by the Prometheus rules). "
        "Below the line the four-fifths rule fails (alert CreditRiskLiveDisparateImpactLow). Gaps: fewer than two "
        f"groups with {slo.FAIRNESS.live_min_group_decisions} decisions.",
        [_target(expr, "{{attribute}}", "A")],
        unit="percentunit",
        max_value=1,
        thresholds=_thresholds((None, "red"), (slo.FAIRNESS.min_disparate_impact_ratio, "green")),
    )


def live_approval_rate_panel() -> JSON:
    expr = f"max by (attribute, group) ({obs.LIVE_GROUP_APPROVAL_RATIO}{{{JOB}}})"
    return _timeseries(
        "Live approval rate by protected group",
        f"Share of each group's applications approved over the last {slo.FAIRNESS.live_window_minutes} minutes "
        "(recorded); the ratio above is the lowest of these over the highest. Compare with the model card.",
        [_target(expr, "{{attribute}}={{group}}", "A")],
        unit="percentunit",
        max_value=1,
    )


def live_group_decisions_panel() -> JSON:
    expr = f"sum by (attribute, group) ({obs.LIVE_GROUP_DECISIONS}{{{JOB}}})"
    return _timeseries(
        "Live bias window: decisions per group",
        f"Decisions per protected group over the last {slo.FAIRNESS.live_window_minutes} minutes (recorded). "
        f"Groups under {slo.FAIRNESS.live_min_group_decisions} are left out of the disparate impact ratio.",
        [_target(expr, "{{attribute}}={{group}}", "A")],
        unit="none",
    )


def decline_share_by_group_panel() -> JSON:
    by_group = f"sum by (attribute, group, model_version) ({_rate(obs.GROUP_DECISIONS_TOTAL, VERSION)})"
    declines = f"sum by (attribute, group, model_version) ({_rate(obs.GROUP_DECISIONS_TOTAL, VERSION, DECLINE)})"
    return _timeseries(
        "Decline share by protected group and model version",
        "Share of each group's applications a model version declines (the fairness report's selection rate): "
        "a challenger that treats a group differently from the champion shows here.",
        [_target(f"{declines} / {by_group}", "{{model_version}} {{attribute}}={{group}}", "A")],
        unit="percentunit",
        max_value=1,
    )


# --- Layout --------------------------------------------------------------------------------------------

#: (row title, [(panel function, width, height), ...]); panels fill each row left to right.
LAYOUT: list[tuple[str, list[tuple[Callable[[], JSON], int, int]]]] = [
    (
        "Service (RED)",
        [
            (service_up_panel, 4, 8),
            (error_ratio_panel, 4, 8),
            (request_rate_panel, 16, 8),
            (error_rate_by_status_panel, 12, 8),
            (latency_panel, 12, 8),
            (latency_p99_by_endpoint_panel, 12, 7),
            (latency_p99_by_version_panel, 12, 7),
        ],
    ),
    (
        "Models",
        [
            (model_info_panel, 8, 8),
            (traffic_weight_panel, 16, 8),
            (predictions_panel, 12, 8),
            (decline_share_panel, 12, 8),
            (score_distribution_panel, 12, 9),
            (score_by_version_panel, 12, 9),
            (shadow_panel, 12, 7),
            (feedback_rate_panel, 12, 7),
            (registry_staleness_panel, 12, 7),
            (registry_failures_panel, 12, 7),
        ],
    ),
    (
        "Fairness (live)",
        [
            (live_disparate_impact_panel, 8, 8),
            (live_approval_rate_panel, 8, 8),
            (live_group_decisions_panel, 8, 8),
            (decline_share_by_group_panel, 24, 8),
        ],
    ),
]


def _row(title: str) -> JSON:
    return {"collapsed": False, "panels": [], "title": title, "type": "row"}


def panels() -> list[JSON]:
    """All panels with ids (1, 2, ... in layout order) and grid positions."""
    out: list[JSON] = []
    y = 0
    for row_title, row_panels in LAYOUT:
        out.append({**_row(row_title), "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}})
        y += 1
        x, row_height = 0, 0
        for panel_fn, width, height in row_panels:
            if x + width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            out.append({**panel_fn(), "gridPos": {"h": height, "w": width, "x": x, "y": y}})
            x += width
            row_height = max(row_height, height)
        y += row_height
    for panel_id, panel in enumerate(out, start=1):
        panel["id"] = panel_id
    return out


def _query_variable(name: str, label: str, query: str, *, multi: bool) -> JSON:
    return {
        "current": {},
        "datasource": DATASOURCE,
        "definition": query,
        "includeAll": multi,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "sort": 3 if name == "model_version" else 1,
        "type": "query",
        **({"allValue": ".*"} if multi else {}),
    }


def templating() -> JSON:
    return {
        "list": [
            {
                "current": {},
                "hide": 0,
                "includeAll": False,
                "label": "Data source",
                "multi": False,
                "name": "datasource",
                "options": [],
                "query": "prometheus",
                "refresh": 1,
                "regex": "",
                "type": "datasource",
            },
            _query_variable("job", "Job", f"label_values({obs.REQUESTS_TOTAL}, job)", multi=False),
            _query_variable(
                "model_version", "Model version", f"label_values({obs.MODEL_INFO}, model_version)", multi=True
            ),
        ]
    }


def dashboard() -> JSON:
    return {
        "annotations": {"list": []},
        "description": "RED metrics, model versions, traffic split, scores and feedback of the credit-risk "
        "BentoML service. Generated by grafana/dashboards.py: edit that, not this JSON.",
        "editable": True,
        "graphTooltip": 1,
        "links": [],
        "panels": panels(),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["credit-risk", "red", "generated"],
        "templating": templating(),
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": TITLE,
        "uid": UID,
        "version": 1,
    }


def render() -> str:
    """The dashboard as the exact text committed in grafana/dashboards/."""
    return json.dumps(dashboard(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the file differs from what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `python grafana/dashboards.py`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
