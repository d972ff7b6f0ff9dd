"""The rendered overlay against a real PostgreSQL server (the Debian PostgreSQL the machine has, a throwaway
cluster on loopback that asks TCP clients for their password): the `dagster-instance-migrate` Job's command,
with the rendered dagster.yaml and the pipeline ConfigMap's DAGSTER_PG_* settings, creates Dagster's run,
event and schedule storage, and running it again (an upgrade with nothing to do) succeeds too; the service
opens the inference log with its rendered URL and the password in PGPASSWORD, and not without it, once the
`inference-log-migrate` Job's command (the pipeline's settings and the service's password Secret) has
brought its schema to the service's revision."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_support import K8S, env_value, kustomize_build, one
from prod_support import Postgres, postgres_server

PASSWORD = "migrate-test"
IN_POD_CLI = (
    "import sys, kubernetes.config; kubernetes.config.load_incluster_config = lambda *a, **k: None; "
    "from dagster._cli import main; sys.argv[0] = 'dagster'; sys.exit(main())"
)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster on 127.0.0.1: password (SCRAM) over TCP, trust on its Unix socket."""
    with postgres_server() as server:
        yield server


def _sql(server: Postgres, statement: str, *, user: str = "postgres", db: str = "postgres") -> list[tuple[Any, ...]]:
    return server.sql(statement, db=db, user=user, password=None if user == "postgres" else PASSWORD)


def test_the_migrate_job_creates_and_upgrades_dagster_storage(postgres: Postgres, tmp_path: Path) -> None:
    rendered = kustomize_build(K8S / "overlays" / "prod")
    job = one(rendered, "Job", "dagster-instance-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    pipeline_env = one(rendered, "ConfigMap", "credit-risk-pipeline-env")["data"]
    instance = one(rendered, "ConfigMap", "dagster-instance")["data"]["dagster.yaml"]
    # The database step of k8s/README.md.
    user, database = pipeline_env["DAGSTER_PG_USERNAME"], pipeline_env["DAGSTER_PG_DB"]
    _sql(postgres, f"CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}'")
    _sql(postgres, f"CREATE DATABASE {database} OWNER {user}")
    # The pod: dagster.yaml at $DAGSTER_HOME, the ConfigMap's variables, the Secret's password; the server's
    # address is this test's instead of the `postgres` Service.
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PLATFORM_"))}
    env |= pipeline_env | {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_PASSWORD": PASSWORD,
        "DAGSTER_K8S_JOB_NAMESPACE": job["metadata"]["namespace"],
    }
    assert yaml.safe_load(instance)["storage"]["postgres"]["postgres_db"]["db_name"] == {"env": "DAGSTER_PG_DB"}
    # The Job's command is the dagster CLI. Loading the instance builds its K8sRunLauncher, which loads the
    # in-cluster config from the pod's service-account token; no cluster here, so only that call is stubbed.
    assert container["command"][0] == "dagster"
    command = [sys.executable, "-c", IN_POD_CLI, *container["command"][1:]]
    for attempt in ("first install", "upgrade with nothing to do"):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, f"{attempt}: {result.stdout}\n{result.stderr}"
    tables = {
        row[0]
        for row in _sql(postgres, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", user=user, db=database)
    }
    assert {"runs", "event_logs", "alembic_version", "jobs", "instance_info"} <= tables


def test_the_inference_log_job_migrates_what_the_service_then_opens_with_its_rendered_url_and_pgpassword(
    postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from platform_assets.core.inference_log import migrate
    from platform_assets.core.inference_log.schema import make_engine

    rendered = kustomize_build(K8S / "overlays" / "prod")
    rollout = one(rendered, "Rollout", "credit-risk-service")
    (container,) = rollout["spec"]["template"]["spec"]["containers"]
    ref = env_value(container, "CREDIT_RISK_INFERENCE_DB")["valueFrom"]["configMapKeyRef"]
    url = make_url(one(rendered, "ConfigMap", ref["name"])["data"][ref["key"]])
    assert url.password is None
    job_spec = one(rendered, "Job", "inference-log-migrate")["spec"]["template"]["spec"]
    (job,) = job_spec["containers"]
    pipeline_env = one(rendered, "ConfigMap", "credit-risk-pipeline-env")["data"]
    password_ref = env_value(job, "PLATFORM_INFERENCE_DB_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert password_ref == env_value(container, "PGPASSWORD")["valueFrom"]["secretKeyRef"]  # one secret, both sides
    # The database step of k8s/README.md, then the pod's URL with this server's address.
    _sql(postgres, f"CREATE ROLE {url.username} LOGIN PASSWORD '{PASSWORD}'")
    _sql(postgres, f"CREATE DATABASE {url.database} OWNER {url.username}")
    local = url.set(host="127.0.0.1", port=postgres.port).render_as_string(hide_password=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(sa.exc.OperationalError, match="password"):
        make_engine(local).connect().close()
    engine = make_engine(local)
    try:
        monkeypatch.setenv("PGPASSWORD", PASSWORD)  # what the Rollout and the Job set from credit-risk-inference-db
        problem = migrate.schema_problem(engine)
        assert problem is not None and migrate.COMMAND in problem  # the service stays not ready, saying why
        # The Job's command with the pod's environment: the pipeline's ConfigMap (PLATFORM_ENV=prod: the table
        # names the database) and the Secret's password; only the server's address is this test's.
        assert job["command"][:3] == ["python", "-m", "platform_assets.migrate"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "CREDIT_RISK_", "MLFLOW_", "PG"))}
        env |= pipeline_env | {"PLATFORM_INFERENCE_DB": local, "PLATFORM_INFERENCE_DB_PASSWORD": PASSWORD}
        assert pipeline_env["PLATFORM_ENV"] == "prod" and "PLATFORM_INFERENCE_DB" not in pipeline_env
        for attempt in ("first install", "upgrade with nothing to do"):
            result = subprocess.run(
                [sys.executable, *job["command"][1:]], env=env, capture_output=True, text=True, timeout=120, check=False
            )
            assert result.returncode == 0, f"{attempt}: {result.stdout}\n{result.stderr}"
        assert migrate.schema_problem(engine) is None
    finally:
        engine.dispose()
