"""Materializing credit_risk_deployment leaves a healthy endpoint; after a retrain it serves the new version
without restarting the process (a model-only change moves registry aliases)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import bentoml
import httpx
import pytest
from net_support import free_port

from platform_assets.core.api_keys import create_key
from platform_assets.core.approval import AUTO_APPROVER
from platform_assets.defs.resources import resources
from platform_assets.demo import run_pipeline
from platform_assets.ml import schema, synthetic

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PARTITIONS = ["2026-10-05", "2026-10-06"]


def fast(seed: int) -> dict[str, object]:
    return {"ops": {"default_risk_model": {"config": {"epochs": 3, "patience": 2, "seed": seed}}}}


@pytest.fixture
def deployment_env(platform_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A predict key and an admin key of the local service."""
    monkeypatch.setenv("PLATFORM_ROWS_PER_DAY", "500")
    monkeypatch.setenv("PLATFORM_AUC_FLOOR", "0.5")
    monkeypatch.setenv("PLATFORM_BASELINE_MARGIN", "0.5")  # a 3-epoch CNN on 700 rows: mechanics, not quality
    monkeypatch.setenv("PLATFORM_SERVICE_PORT", str(free_port()))
    deployer = resources().resources["deployer"]
    key, _ = create_key(deployer.api_keys_file(), ["predict"], note="test client")
    admin_key, _ = create_key(deployer.api_keys_file(), ["admin"], note="test operator")
    yield key, admin_key
    state = deployer.local_manager().current()
    if state is not None:
        deployer.local_manager().stop(state)


def predict(url: str, key: str) -> list[dict[str, object]]:
    rows = synthetic.generate_partition(date(2026, 12, 1), 5, 99)
    applications = rows.drop(columns=[schema.TARGET]).to_dict(orient="records")
    response = httpx.post(
        f"{url}/predict", json={"applications": applications}, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_deployment_serves_and_moves_traffic_to_the_retrained_version(deployment_env: tuple[str, str]) -> None:
    key, admin_key = deployment_env
    deployer = resources().resources["deployer"]

    run_pipeline(PARTITIONS, fast(seed=1), deploy=True)
    first = deployer.local_manager().current()
    assert first is not None, "the deployment left no running service"
    assert httpx.get(f"{first.url}/readyz", timeout=5).status_code == 200
    assert {p["model_version"] for p in predict(first.url, key)} == {"v1"}
    # The local demo records the labelled auto-approval after the release; the service shows it, verified.
    operator = {"Authorization": f"Bearer {admin_key}"}
    status = httpx.post(f"{first.url}/admin/status", json={"refresh": True}, headers=operator, timeout=30).json()
    approval = status["models"]["champion"]["approval"]
    assert approval["state"] == "valid", approval
    assert approval["approval"]["approved_by"] == AUTO_APPROVER and approval["approval"]["auto"] is True
    # The README's Python client call.
    application = synthetic.generate_partition(date(2026, 12, 2), 1, 7).drop(columns=[schema.TARGET])
    with bentoml.SyncHTTPClient(first.url, token=key) as client:
        result = client.predict(applications=application.to_dict(orient="records"))
    [prediction] = result["predictions"]
    assert 0.0 <= prediction["probability_of_default"] <= 1.0 and prediction["decision"] in {"approve", "decline"}

    run_pipeline(PARTITIONS, fast(seed=2), deploy=True)
    second = deployer.local_manager().current()
    assert second is not None and second.pid == first.pid, "a model-only change must not restart the service"
    predictions = predict(second.url, key)
    assert {p["model_version"] for p in predictions} == {"v2"}
    assert all(p["role"] == "champion" for p in predictions)
