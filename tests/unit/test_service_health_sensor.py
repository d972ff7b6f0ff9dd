"""service_health_sensor: reports what it finds and restores a local service that is down (the restore
itself runs real processes in tests/serving/test_service_faults.py)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from sensor_support import evaluate_sensor

from platform_assets.defs.serving.sensors import service_health_sensor
from platform_assets.deploy.local import DeploymentFailed, ServiceState
from platform_assets.resources.deployer import ServiceDeployer


def tick(deployer: ServiceDeployer) -> str:
    definitions = dg.Definitions(sensors=[service_health_sensor], resources={"deployer": deployer})
    with dg.DagsterInstance.ephemeral() as instance:
        result = evaluate_sensor(service_health_sensor, definitions, instance, resources={"deployer": deployer})
    assert not result.run_requests
    return str(result.skip_message)


@pytest.fixture
def deployer(tmp_path: Path) -> ServiceDeployer:
    return ServiceDeployer(platform_home=str(tmp_path), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def test_nothing_deployed_is_left_alone(deployer: ServiceDeployer) -> None:
    assert tick(deployer) == "local service: retired"


def test_a_down_service_is_restored(deployer: ServiceDeployer, monkeypatch: pytest.MonkeyPatch) -> None:
    deployer.state_dir().mkdir(parents=True)
    (deployer.state_dir() / "desired.json").write_text(json.dumps({"bento": "credit_risk:abc"}))
    calls: list[str] = []

    def restore(self: ServiceDeployer) -> ServiceState:
        calls.append(self.local_manager().health())
        return ServiceState(4242, "credit_risk:abc", "127.0.0.1", 3001, "now", "log")

    monkeypatch.setattr(ServiceDeployer, "restore_local", restore)
    assert tick(deployer) == "local service was down: restored credit_risk:abc (supervisor pid 4242)"
    assert calls == ["down"]


def test_a_failed_restore_is_reported_and_retried(deployer: ServiceDeployer, monkeypatch: pytest.MonkeyPatch) -> None:
    deployer.state_dir().mkdir(parents=True)
    (deployer.state_dir() / "desired.json").write_text(json.dumps({"bento": "credit_risk:abc"}))

    def restore(self: ServiceDeployer) -> ServiceState:
        raise DeploymentFailed("service credit_risk:abc exited during start-up")

    monkeypatch.setattr(ServiceDeployer, "restore_local", restore)
    message = tick(deployer)
    assert message.startswith("local service down; restoring it failed (will retry)") and "start-up" in message


def test_kubernetes_is_the_probes_job(tmp_path: Path) -> None:
    deployer = ServiceDeployer(target="kubernetes", platform_home=str(tmp_path), tracking_uri="http://mlflow:5000")
    assert "probes" in tick(deployer)
