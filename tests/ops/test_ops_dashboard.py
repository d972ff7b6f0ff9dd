"""grafana/dashboards/credit_risk_service.json is exactly what grafana/dashboards.py generates, and sane."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest
from ops_support import DASHBOARD_JSON, GRAFANA, REPO


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("credit_risk_dashboards", GRAFANA / "dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dashboards = _load_generator()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))


def test_committed_json_is_what_the_generator_writes() -> None:
    generated = dashboards.render()
    committed = DASHBOARD_JSON.read_text(encoding="utf-8")
    assert committed == generated, "stale dashboard JSON: run `.venv/bin/python grafana/dashboards.py` and commit"


def test_generation_is_deterministic() -> None:
    assert dashboards.render() == dashboards.render()
    assert dashboards.render() == json.dumps(json.loads(dashboards.render()), indent=2, sort_keys=True) + "\n"


def test_script_check_mode(tmp_path: Any) -> None:
    script = str(GRAFANA / "dashboards.py")
    ok = subprocess.run([sys.executable, script, "--check"], cwd=REPO, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "stale.json"
    stale.write_text("{}\n", encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, script, "--check", "--output", str(stale)], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "stale" in bad.stderr
    written = tmp_path / "out" / "dashboard.json"
    subprocess.run([sys.executable, script, "--output", str(written)], cwd=REPO, check=True, capture_output=True)
    assert written.read_text(encoding="utf-8") == DASHBOARD_JSON.read_text(encoding="utf-8")


def test_panel_ids_are_stable_and_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert ids == list(range(1, len(ids) + 1))
    assert dashboard["uid"] == "credit-risk-service"


def test_one_function_per_panel() -> None:
    functions = [fn for _, row in dashboards.LAYOUT for fn, _, _ in row]
    assert len(functions) == len(set(functions))
    assert all(fn.__name__.endswith("_panel") for fn in functions)
    defined = {name for name in vars(dashboards) if name.endswith("_panel") and not name.startswith("_")}
    assert defined == {fn.__name__ for fn in functions}, "a panel function is defined but not laid out"


def test_panels_tile_the_grid_without_overlap(dashboard: dict[str, Any]) -> None:
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells


def test_every_panel_queries_the_selected_prometheus(dashboard: dict[str, Any]) -> None:
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert 'job=~"$job"' in target["expr"], target["expr"]


def test_red_and_model_panels_are_present(dashboard: dict[str, Any]) -> None:
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {
        "Request rate by endpoint",
        "Errors by status and reason",
        "Latency p50 / p95 / p99",
        "Predictions by model version and decision",
        "Score distribution",
        "Score by model version",
        "Traffic weight per role",
        "Shadow scoring",
        "Feedback rate",
        "Live models",
    } <= titles
    latency = next(panel for panel in dashboard["panels"] if panel["title"] == "Latency p50 / p95 / p99")
    exprs = [target["expr"] for target in latency["targets"]]
    assert [expr.split(",")[0] for expr in exprs] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    ]


def test_variables(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "model_version"}
    assert variables["model_version"]["multi"] and variables["model_version"]["includeAll"]
