"""One definition of every SLO and gate threshold (platform_assets/core/slo.py): the committed Prometheus rules,
Argo canary analysis and Grafana dashboard are what grafana/generate.py makes of it, each threshold in them is
the slo value, and the Dagster resources and loop policies default to it."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest
from ops_support import DASHBOARD_JSON, GRAFANA, K8S, OVERLAYS, REPO, alerting_rules, kustomize_build, load_yaml

from platform_assets.core import observability, slo


def _generator(name: str) -> ModuleType:
    """A grafana/ generator module, imported as `python grafana/generate.py` does (grafana/ on the path)."""
    if str(GRAFANA) not in sys.path:
        sys.path.insert(0, str(GRAFANA))
    return importlib.import_module(name)


def _alert(name: str) -> dict[str, Any]:
    return next(rule for rule in alerting_rules() if rule["alert"] == name)


def _number_after(pattern: str, text: str) -> float:
    """The number the regex `pattern` (with one group) finds in `text`; fails when there is not exactly one."""
    found = re.findall(pattern, text)
    assert len(found) == 1, f"{pattern!r} matches {found} in {text!r}"
    return float(found[0])


NUMBER = r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)"


# --- the generated files are committed as generated --------------------------------------------------------


def test_committed_files_are_what_the_generator_writes() -> None:
    generate = _generator("generate")
    assert {path.relative_to(REPO).as_posix() for path, _ in generate.GENERATED} == {
        "grafana/dashboards/credit_risk_service.json",
        "grafana/prometheus/rules.yml",
        "k8s/base/analysis-template.yaml",
    }
    for path, render in generate.GENERATED:
        assert path.read_text(encoding="utf-8") == render(), (
            f"stale {path.relative_to(REPO)}: run `.venv/bin/python grafana/generate.py` and commit"
        )
        assert render() == render(), f"{path.name} is not deterministic"


def test_generate_check_mode_passes_on_the_committed_files() -> None:
    script = str(GRAFANA / "generate.py")
    result = subprocess.run([sys.executable, script, "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- each threshold in the outputs is the slo value --------------------------------------------------------


def test_alert_thresholds_are_the_slo() -> None:
    expr = {rule["alert"]: rule["expr"] for rule in alerting_rules()}
    assert _number_after(rf"ratio_rate5m > {NUMBER}", expr["CreditRiskHighErrorRatio"]) == slo.SERVICE.error_ratio
    assert _number_after(rf"p99_5m > {NUMBER}", expr["CreditRiskHighLatencyP99"]) == slo.SERVICE.latency_p99_seconds
    assert (
        _number_after(rf"\+ {NUMBER}", expr["CreditRiskChallengerErrorRatioWorse"])
        == slo.CHALLENGER_ALERTS.max_error_ratio_excess
    )
    assert (
        _number_after(rf"\({NUMBER} \* max\(", expr["CreditRiskChallengerPredictionShortfall"])
        == slo.CHALLENGER_ALERTS.min_prediction_share_of_weight
    )
    assert _number_after(rf"\) > {NUMBER}", expr["CreditRiskScoreShift"]) == slo.CHALLENGER_ALERTS.max_mean_score_shift
    assert (
        _number_after(rf"< {NUMBER}", expr["CreditRiskLiveDisparateImpactLow"])
        == slo.FAIRNESS.min_disparate_impact_ratio
    )


def test_alert_texts_quote_the_slo() -> None:
    errors = _alert("CreditRiskHighErrorRatio")["annotations"]["description"]
    assert _number_after(rf"More than {NUMBER} %", errors) / 100 == pytest.approx(slo.SERVICE.error_ratio)
    latency = _alert("CreditRiskHighLatencyP99")["annotations"]
    for text in (latency["summary"], latency["description"]):
        milliseconds = _number_after(rf"{NUMBER} ms", text)
        assert milliseconds / 1000 == pytest.approx(slo.SERVICE.latency_p99_seconds)


def _template_thresholds(template: dict[str, Any]) -> dict[str, float]:
    return {arg["name"]: float(arg["value"]) for arg in template["spec"]["args"] if arg["name"].startswith("max-")}


def test_canary_analysis_thresholds_are_the_slo() -> None:
    template = load_yaml(K8S / "base" / "analysis-template.yaml")
    assert _template_thresholds(template) == {
        "max-error-ratio": slo.CANARY.max_error_rate,
        "max-p99-seconds": slo.CANARY.max_p99_seconds,
    }


@pytest.mark.parametrize("path", ("base", *(f"overlays/{name}" for name in OVERLAYS)))
def test_no_overlay_or_rollout_overrides_the_canary_thresholds(path: str) -> None:
    rendered = kustomize_build(K8S / path)
    [template] = [obj for obj in rendered if obj["kind"] == "AnalysisTemplate"]
    assert _template_thresholds(template) == {
        "max-error-ratio": slo.CANARY.max_error_rate,
        "max-p99-seconds": slo.CANARY.max_p99_seconds,
    }
    [rollout] = [obj for obj in rendered if obj["kind"] == "Rollout"]
    for step in rollout["spec"]["strategy"]["canary"]["steps"]:
        passed = {arg["name"] for arg in step.get("analysis", {}).get("args", [])}
        assert not {name for name in passed if name.startswith("max-")}, f"{path} passes its own thresholds"


def _panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    return next(panel for panel in dashboard["panels"] if panel["title"] == title)


def _step(panel: dict[str, Any], color: str) -> float:
    [value] = [
        step["value"] for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"] if step["color"] == color
    ]
    return float(value)


def test_dashboard_thresholds_are_the_slo() -> None:
    dashboard = json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))
    assert _step(_panel(dashboard, "5xx ratio"), "red") == slo.SERVICE.error_ratio
    for title in ("Latency p50 / p95 / p99", "p99 latency by endpoint"):
        assert _step(_panel(dashboard, title), "red") == slo.SERVICE.latency_p99_seconds
    disparate_impact = _panel(dashboard, "Live disparate impact ratio")
    assert _step(disparate_impact, "green") == slo.FAIRNESS.min_disparate_impact_ratio


# --- one value where two places disagreed -------------------------------------------------------------------


def test_the_canary_is_held_to_the_service_objectives() -> None:
    assert slo.CANARY.max_error_rate == slo.SERVICE.error_ratio
    assert slo.CANARY.max_p99_seconds == slo.SERVICE.latency_p99_seconds


def test_the_promotion_gate_keeps_the_fairness_gates_floor() -> None:
    assert slo.PROMOTION.min_disparate_impact == slo.FAIRNESS.min_disparate_impact_ratio


def test_the_service_reports_the_live_bias_bound_of_the_fairness_gate() -> None:
    assert observability.DISPARATE_IMPACT_BOUND == slo.FAIRNESS.min_disparate_impact_ratio


# --- the Dagster resources and the loop's policies default to the slo ---------------------------------------


def test_resources_and_policies_default_to_the_slo(monkeypatch: pytest.MonkeyPatch) -> None:
    from platform_assets.ml.canary import CanaryPolicy
    from platform_assets.ml.live_quality import DropPolicy
    from platform_assets.resources.gates import ModelGates
    from platform_assets.resources.governance_gates import FairnessGates
    from platform_assets.resources.monitoring import LiveMonitoring

    assert CanaryPolicy() == CanaryPolicy(**vars(slo.CANARY))
    drop = vars(slo.ACCURACY_DROP)
    assert DropPolicy() == DropPolicy(**{k: v for k, v in drop.items() if k != "retrigger_hours"})
    gates = ModelGates()
    assert (gates.auc_floor, gates.baseline_margin, gates.max_quarantine_share) == (
        slo.MODEL_QUALITY.auc_floor,
        slo.MODEL_QUALITY.baseline_margin,
        slo.MODEL_QUALITY.max_quarantine_share,
    )
    fairness = FairnessGates()
    assert (fairness.min_disparate_impact_ratio, fairness.max_equal_opportunity_difference) == (
        slo.FAIRNESS.min_disparate_impact_ratio,
        slo.FAIRNESS.max_equal_opportunity_difference,
    )
    from platform_assets.ml import population_stability, promotion_stats

    assert inspect.signature(promotion_stats.promotion_gate).parameters["policy"].default is slo.PROMOTION
    for function in (population_stability.psi_alarm_threshold, population_stability.csi):
        assert inspect.signature(function).parameters["confidence"].default == slo.DRIFT.psi_confidence
    for name in [name for name in os.environ if name.startswith("PLATFORM_LOOP_")]:
        monkeypatch.delenv(name)
    from platform_assets import settings
    from platform_assets.defs.resources import live_monitoring

    config = settings.load()
    for monitoring in (LiveMonitoring(), live_monitoring(config, settings.topology(config))):
        assert monitoring.drop_policy() == DropPolicy()
        assert monitoring.canary_policy() == CanaryPolicy()
        assert monitoring.retrigger_hours == slo.ACCURACY_DROP.retrigger_hours
        assert monitoring.drift_share == slo.DRIFT.drift_share


def test_slo_module_is_dagster_free() -> None:
    code = (
        "import sys; import platform_assets.core.slo; "
        "print(sorted(m for m in ('dagster', 'bentoml', 'pandas', 'numpy', 'pydantic') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
