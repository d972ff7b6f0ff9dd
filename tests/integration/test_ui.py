"""What ``make demo`` ends with: a real ``dagster dev`` listing every asset materialized, with lineage."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from net_support import dagster_webserver

from platform_assets.demo import run_pipeline

pytestmark = [pytest.mark.spark, pytest.mark.slow]

#: What ``run_pipeline`` without deployment materializes: ingest, features, training and governance.
PIPELINE_ASSETS = {
    "raw_credit_applications",
    "credit_history_tensors",
    "default_risk_model",
    "baseline_models",
    "model_evaluation",
    "fairness_report",
    "data_drift_report",
    "model_performance_report",
    "model_manifest",
    "model_card",
}

QUERY = """
{ assetNodes { assetKey { path } dependencyKeys { path } groupName
    assetMaterializations(limit: 1) { runId } } }
"""


@pytest.fixture
def dagster_dev(platform_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("PLATFORM_ROWS_PER_DAY", "400")
    # A 2-epoch model on 800 rows: this test is about the UI, not about passing the quality gate.
    monkeypatch.setenv("PLATFORM_AUC_FLOOR", "0.5")
    monkeypatch.setenv("PLATFORM_BASELINE_MARGIN", "0.5")
    run_pipeline(["2026-10-10", "2026-10-11"], {"ops": {"default_risk_model": {"config": {"epochs": 2}}}})
    with dagster_webserver(os.environ.copy(), tmp_path / "dagster_dev.log", dev=True, timeout=120) as url:
        yield url


def test_ui_lists_every_asset_materialized_with_lineage(dagster_dev: str) -> None:
    deadline = time.monotonic() + 60
    while True:  # the code location loads in the background after the server answers
        response = httpx.post(f"{dagster_dev}/graphql", json={"query": QUERY}, timeout=30)
        nodes = response.json().get("data", {}).get("assetNodes") or []
        if nodes or time.monotonic() > deadline:
            break
        time.sleep(2)
    assets = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert set(assets) >= PIPELINE_ASSETS | {"credit_risk_bento", "credit_risk_deployment"}
    for name in PIPELINE_ASSETS:
        assert assets[name]["assetMaterializations"], f"{name} is not materialized"
    deps = {name: {"/".join(d["path"]) for d in node["dependencyKeys"]} for name, node in assets.items()}
    assert deps["credit_history_tensors"] == {"raw_credit_applications"}
    assert deps["default_risk_model"] == {"credit_history_tensors"}
    assert deps["model_evaluation"] == {"default_risk_model", "baseline_models"}
    assert "default_risk_model" in deps["fairness_report"]
    # The Bento is built only behind the evaluation gate and the signed manifest.
    assert deps["credit_risk_bento"] == {"model_evaluation", "model_manifest"}
    assert deps["credit_risk_deployment"] == {"credit_risk_bento"}
