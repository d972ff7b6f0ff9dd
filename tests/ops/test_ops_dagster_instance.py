"""k8s/dagster/dagster.yaml is a valid Dagster instance config for this project's Dagster release, and its
run launcher config is valid for the installed dagster-k8s K8sRunLauncher."""

from __future__ import annotations

from pathlib import Path

import pytest
from ops_support import K8S, load_yaml

INSTANCE = K8S / "dagster" / "dagster.yaml"
ENV = {
    "DAGSTER_K8S_JOB_NAMESPACE": "credit-risk-staging",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
    "DAGSTER_PG_HOST": "dagster-postgresql",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_PORT": "5432",
}


@pytest.fixture
def instance_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.usefixtures("instance_env")
def test_instance_config_validates(tmp_path: Path) -> None:
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text(INSTANCE.read_text(encoding="utf-8"), encoding="utf-8")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert "postgres" in config["storage"]


@pytest.mark.usefixtures("instance_env")
@pytest.mark.parametrize("section", ["run_launcher", "run_coordinator", "scheduler"])
def test_configurable_class_config_is_valid(section: str) -> None:
    """Dagster checks these sections' own config only when it first builds the class: check it now."""
    import importlib

    from dagster._config import process_config

    data = load_yaml(INSTANCE)[section]
    cls = getattr(importlib.import_module(data["module"]), data["class"])
    result = process_config(cls.config_type(), data.get("config", {}))
    assert result.success, [error.message for error in result.errors or []]


@pytest.mark.usefixtures("instance_env")
def test_run_launcher_config_is_valid_for_k8s_run_launcher() -> None:
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    launcher = load_yaml(INSTANCE)["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, [error.message for error in result.errors or []]
    assert result.value is not None
    assert result.value["job_namespace"] == ENV["DAGSTER_K8S_JOB_NAMESPACE"]
    assert result.value["load_incluster_config"] is True


@pytest.mark.usefixtures("instance_env")
def test_postgres_storage_config_is_valid_for_dagster_postgres() -> None:
    """The storage the Kubernetes deployment uses comes from the installed dagster-postgres (a project
    dependency, pinned with the Dagster family) and its config is valid for it."""
    from importlib.metadata import version

    from dagster._config import process_config
    from dagster_postgres import DagsterPostgresStorage

    assert version("dagster-postgres") == version("dagster-k8s")
    result = process_config(DagsterPostgresStorage.config_type(), load_yaml(INSTANCE)["storage"]["postgres"])
    assert result.success, [error.message for error in result.errors or []]
    assert result.value is not None
    assert result.value["postgres_db"]["hostname"] == ENV["DAGSTER_PG_HOST"]
    assert result.value["postgres_db"]["port"] == int(ENV["DAGSTER_PG_PORT"])
