"""The local deployer hands its service the stores of the environment's table: the inference log the control
plane reads (with its password as PGPASSWORD), the registry, the environment and the manifest verify key."""

from __future__ import annotations

from pathlib import Path

import pytest

from platform_assets.core.inference_log.schema import inference_db_under
from platform_assets.defs.resources import resources_for
from platform_assets.settings import PlatformSettings

PASSWORD = "not-a-real-password"  # pragma: allowlist secret


def _service_env(config: PlatformSettings, home: Path) -> dict[str, str]:
    deployer = resources_for(config)["deployer"].process_config_and_initialize()
    return deployer.service_env(home / "bentoml")


def test_prod_table_stores_reach_the_local_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg2://credit_risk@127.0.0.1:5433/inference_log"
    for name, value in {  # the aliased settings are read from their variables
        "PLATFORM_INFERENCE_DB_PASSWORD": PASSWORD,
        "PLATFORM_INFERENCE_DB": url,
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CREDIT_RISK_INFERENCE_DB", raising=False)  # it would win over PLATFORM_INFERENCE_DB
    config = PlatformSettings(
        env="prod", home=tmp_path, deploy_target="local", verify_key_file=str(tmp_path / "verify_key.pem")
    )
    env = _service_env(config, tmp_path)
    assert env["CREDIT_RISK_INFERENCE_DB"] == url and env["PGPASSWORD"] == PASSWORD
    assert env["PLATFORM_ENV"] == "prod" and env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert env["CREDIT_RISK_VERIFY_KEY_FILE"] == str(tmp_path / "verify_key.pem")


def test_local_table_gives_the_service_its_own_sqlite_log_and_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PLATFORM_INFERENCE_DB", "CREDIT_RISK_INFERENCE_DB", "MLFLOW_TRACKING_URI", "PLATFORM_ENV"):
        monkeypatch.delenv(name, raising=False)
    env = _service_env(PlatformSettings(home=tmp_path), tmp_path)
    assert env["CREDIT_RISK_INFERENCE_DB"] == inference_db_under(tmp_path.resolve())
    assert "PGPASSWORD" not in env and "CREDIT_RISK_VERIFY_KEY_FILE" not in env
    assert env["PLATFORM_ENV"] == "local"
