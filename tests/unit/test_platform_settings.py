"""The control plane's configuration: one typed settings object, one table per environment."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from platform_assets import settings
from platform_assets.defs.resources import resources_for
from platform_assets.resources.lake import LocalLake, S3Lake

CREDENTIALS = {
    "PLATFORM_SIGNING_KEY_FILE": "/run/secrets/signing/ed25519.pem",
    "PLATFORM_VERIFY_KEY_FILE": "/run/secrets/verify/ed25519.pub.pem",
    "PLATFORM_INFERENCE_DB_PASSWORD": "s3cret-pw",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("PLATFORM_", "MLFLOW_", "CREDIT_RISK_", "SPARK_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_prod_table_names_the_cluster_topology_with_only_credentials_set(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PLATFORM_ENV", "prod")
    for name, value in CREDENTIALS.items():
        clean_env.setenv(name, value)
    config = settings.load()
    settings.require_secrets(config)
    table = settings.render(config)
    assert "deploy_target              kubernetes" in table
    assert "s3://credit-risk-lake/prod" in table
    assert "postgresql+psycopg2://credit_risk@postgres.credit-risk-prod.svc.cluster.local:5432/inference_log" in table
    assert "http://mlflow.credit-risk-prod.svc.cluster.local:5000" in table
    assert "s3cret-pw" not in table, "the table shows no secret"

    bound = resources_for(config)
    assert bound["deployer"].target == "kubernetes" and bound["deployer"].k8s_overlay == "k8s/overlays/prod"
    assert isinstance(bound["lake"], S3Lake) and (bound["lake"].bucket, bound["lake"].prefix) == (
        "credit-risk-lake",
        "prod",
    )
    assert bound["model_registry"].tracking_uri == "http://mlflow.credit-risk-prod.svc.cluster.local:5000"
    monitoring = bound["live_monitoring"]
    assert monitoring.inference_db.startswith("postgresql+psycopg2://")
    # The password is a dg.EnvVar: the UI shows its name, a run resolves it.
    assert isinstance(monitoring.inference_db_password, dg.EnvVar)
    assert monitoring.inference_db_password.env_var_name == "PLATFORM_INFERENCE_DB_PASSWORD"
    assert settings.inference_db_url(config).endswith(
        "credit_risk:s3cret-pw@postgres.credit-risk-prod.svc.cluster.local:5432/inference_log"
    )


def test_local_table_keeps_everything_under_the_home(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("PLATFORM_HOME", str(tmp_path))
    config = settings.load()
    settings.require_secrets(config)  # nothing is required locally
    bound = resources_for(config)
    assert isinstance(bound["lake"], LocalLake) and bound["lake"].root == str(tmp_path / "lake")
    assert bound["deployer"].target == "local" and bound["deployer"].platform_home == str(tmp_path)
    assert bound["model_registry"].tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    # The service's own SQLite log under the home: monitoring reads what the local service writes.
    assert bound["live_monitoring"].database() == f"sqlite:///{tmp_path / 'serving' / 'inference_log.db'}"
    assert bound["live_monitoring"].inference_db_password == ""


def test_an_override_beats_the_table(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PLATFORM_ENV", "staging")
    clean_env.setenv("PLATFORM_LAKE_URI", "s3://other-bucket/lake")
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    top = settings.topology(settings.load())
    assert (top.lake_uri, top.mlflow_tracking_uri, top.deploy_target) == (
        "s3://other-bucket/lake",
        "http://mlflow.example:5000",
        "kubernetes",
    )


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("PLATFORM_ENV", "qa", "PLATFORM_ENV"),
        ("PLATFORM_ROWS_PER_DAY", "many", "PLATFORM_ROWS_PER_DAY"),
        ("SPARK_UI_ENABLED", "maybe", "SPARK_UI_ENABLED"),
        ("PLATFORM_LOOP_CANARY_STEPS", "50,10", "PLATFORM_LOOP_CANARY_STEPS"),
        ("PLATFORM_SENSOR_INTERVALS", "canary_sensor=0", "PLATFORM_SENSOR_INTERVALS"),
        ("PLATFORM_SENSOR_INTERVALS", "canary_sensor", "PLATFORM_SENSOR_INTERVALS"),
    ],
)
def test_a_bad_value_names_its_variable(clean_env: pytest.MonkeyPatch, variable: str, value: str, named: str) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(settings.SettingsError, match=named) as error:
        settings.load()
    assert repr(value) in str(error.value)


def test_a_cluster_environment_without_credentials_fails_before_any_work(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PLATFORM_ENV", "staging")
    clean_env.setenv("PLATFORM_VERIFY_KEY_FILE", CREDENTIALS["PLATFORM_VERIFY_KEY_FILE"])
    from platform_assets.definitions import defs

    with pytest.raises(Exception, match="resources.py") as error:
        defs()
    cause: BaseException | None = error.value
    while cause is not None and not isinstance(cause, settings.SettingsError):
        cause = cause.__cause__
    assert cause is not None, "the load failure carries the SettingsError"
    message = str(cause)
    assert "PLATFORM_SIGNING_KEY_FILE" in message and "PLATFORM_INFERENCE_DB_PASSWORD" in message
    assert "PLATFORM_VERIFY_KEY_FILE" not in message


def test_sensor_intervals_override_the_sensors_own_when_the_code_location_loads(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from platform_assets.definitions import defs

    clean_env.setenv("PLATFORM_HOME", str(tmp_path))
    sensors = {s.name: s for s in defs().sensors or []}
    own = {name: s.minimum_interval_seconds for name, s in sensors.items()}
    assert own["accuracy_drop_sensor"] == 300 and own["canary_sensor"] == 60
    clean_env.setenv("PLATFORM_SENSOR_INTERVALS", " accuracy_drop_sensor=30, canary_sensor=20 ")
    assert settings.load().sensor_interval_overrides() == {"accuracy_drop_sensor": 30, "canary_sensor": 20}
    loaded = {s.name: s for s in defs().sensors or []}
    assert {name: s.minimum_interval_seconds for name, s in loaded.items()} == {
        **own,
        "accuracy_drop_sensor": 30,
        "canary_sensor": 20,
    }
    # The copy is the same sensor otherwise.
    copy, original = loaded["canary_sensor"], sensors["canary_sensor"]
    assert [job.name for job in copy.jobs] == [job.name for job in original.jobs]
    for attribute in ("description", "default_status", "required_resource_keys"):
        assert getattr(copy, attribute) == getattr(original, attribute)
    clean_env.setenv("PLATFORM_SENSOR_INTERVALS", "acuracy_drop_sensor=30")
    with pytest.raises(settings.SettingsError, match=r"PLATFORM_SENSOR_INTERVALS names no sensor.*acuracy_drop_sensor"):
        defs()
