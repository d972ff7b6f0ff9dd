"""The closed loop on the production profile: PostgreSQL (Dagster's storage and the inference log), an MLflow
server (metadata in PostgreSQL, artifacts in S3), the lake in S3 (moto), signed manifests required, and two
replicas of the service sharing the inference log and the registry.

The control plane runs with ``PLATFORM_ENV=prod``; its table's stores are pointed at these loopback servers
through the settings' own overrides (``PLATFORM_LAKE_URI``, ``MLFLOW_TRACKING_URI``, ``PLATFORM_INFERENCE_DB``,
``PLATFORM_S3_ENDPOINT``). The deploy target is the local deployer (``PLATFORM_DEPLOY_TARGET=local``): no
kube-apiserver runs here. It starts replica A; replica B is a second ``bentoml serve`` of the same Bento,
environment and registry, started by another ``LocalServiceManager`` on its own port.

Then the faults: with PostgreSQL and the MLflow server down, a new replica starts not-ready and says why in
``/readyz`` and ``/admin/status``, and becomes ready when both are back; a replica whose verify key does not
match the manifests never serves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from net_support import free_port
from prod_support import ProdStores
from sensor_support import evaluate_sensor

from platform_assets.core import signing
from platform_assets.core.api_keys import create_key
from platform_assets.deploy.local import LocalServiceManager, ServiceState
from platform_assets.replay import apply_shift, replay, synthetic_source
from platform_assets.settings import PlatformSettings, topology

pytestmark = [pytest.mark.spark]

PARTITIONS = ["2026-10-05", "2026-10-06"]
TRAINING = {"ops": {"default_risk_model": {"config": {"epochs": 3, "patience": 2, "seed": 1}}}}
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass
class Platform:
    home: Path
    config: PlatformSettings
    definitions: dg.Definitions
    instance: dg.DagsterInstance
    key: str  # roles predict, feedback, admin
    replicas: dict[str, ServiceState]
    service_env: dict[str, str]
    bento: str


@pytest.fixture(scope="module")
def platform(stores: ProdStores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("prod_platform")
    managers: list[LocalServiceManager] = []
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(("PLATFORM_", "MLFLOW_", "CREDIT_RISK_", "AWS_", "PG")) and name != "PLATFORM_UCI_CSV":
                env.delenv(name)
        env.chdir(home)  # a store that falls back to "the current folder" would land here, and be seen
        for name, value in {
            **stores.platform_env(home / "platform_home"),
            "PLATFORM_DEPLOY_TARGET": "local",
            "PLATFORM_SERVICE_PORT": str(free_port()),
            "PLATFORM_SERVICE_WORKERS": "1",  # two replicas of one worker each: enough for two on 2 cores
            "PLATFORM_ROWS_PER_DAY": "700",
            "PLATFORM_AUC_FLOOR": "0.0",
            "PLATFORM_BASELINE_MARGIN": "1.0",
            "PLATFORM_MIN_DISPARATE_IMPACT": "0.0",
            "PLATFORM_MAX_EQUAL_OPPORTUNITY_DIFF": "1.0",
            "PLATFORM_LOOP_WINDOW_HOURS": "1",
            "PLATFORM_LOOP_MIN_LABELLED": "200",
            "SPARK_MASTER": "local[2]",
        }.items():
            env.setenv(name, value)
        from platform_assets.definitions import bound_to
        from platform_assets.demo import CONSOLE, train_and_release

        config = PlatformSettings()
        table = topology(config)
        assert (config.env.value, table.deploy_target, table.signing_keys_required) == ("prod", "local", True)
        assert table.inference_db.startswith("postgresql") and table.lake_uri.startswith("s3://")
        definitions = bound_to(config)
        # Resolved as a run resolves it: the inference log's password is a dg.EnvVar.
        deployer = definitions.resources["deployer"].process_config_and_initialize()
        key, _ = create_key(deployer.api_keys_file(), ["predict", "feedback", "admin"], note="prod profile test")
        # The admin's step before a first release: the service only checks the inference log's schema.
        from platform_assets import migrate

        assert migrate.main(["upgrade"]) == 0
        with dg.DagsterInstance.get() as instance:
            try:
                for partition in PARTITIONS:
                    ingest = definitions.resolve_job_def("daily_ingest_job")
                    run = ingest.execute_in_process(instance=instance, partition_key=partition, run_config=CONSOLE)
                    assert run.success, f"daily_ingest_job {partition} failed"
                version = train_and_release(definitions, instance, TRAINING, deploy=True)
                assert version == "v1"
                replica_a = deployer.local_manager()
                managers.append(replica_a)
                state_a = replica_a.current()
                assert state_a is not None, "the deployment left no service running"
                service_env = deployer.service_env(deployer.bentoml_home())
                replica_b = LocalServiceManager(home / "replica_b", port=free_port())
                managers.append(replica_b)
                state_b, _ = replica_b.deploy(state_a.bento, service_env, timeout=240)
                yield Platform(
                    home, config, definitions, instance, key, {"a": state_a, "b": state_b}, service_env, state_a.bento
                )
            finally:
                for manager in managers:
                    state = manager.current()
                    if state is not None:
                        manager.stop(state)


def _client(state: ServiceState, key: str) -> httpx.Client:
    return httpx.Client(base_url=state.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _applications(rows: int, seed: int) -> list[dict[str, int]]:
    frame = synthetic_source(rows, seed, date(2027, 1, 1)).drop(columns=["default payment next month"])
    return [{k: int(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _sqlite_files(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(16) == SQLITE_HEADER:
                    found.append(path)
    return found


def test_the_loop_runs_on_shared_stores_through_two_replicas(platform: Platform, stores: ProdStores) -> None:
    a, b = platform.replicas["a"], platform.replicas["b"]
    for state in (a, b):
        with _client(state, platform.key) as client:
            status = client.post("/admin/status", json={"refresh": True}).json()
        assert status["ready"] and status["champion"] == "v1", status
        verify_key = signing.key_id(signing.load_public_key_file(platform.config.verify_key_file or ""))
        assert status["verify_key"]["key_id"] == verify_key
        assert status["models"]["champion"]["signature"].startswith(f"verified (Ed25519, key {verify_key}"), status

    # Each replica scores its own applications; the outcomes of A's predictions are posted to B and B's to A.
    ids: dict[str, list[str]] = {}
    for name, state, seed in (("a", a, 21), ("b", b, 22)):
        with _client(state, platform.key) as client:
            response = client.post("/predict", json={"applications": _applications(40, seed)})
            assert response.status_code == 200, response.text
            ids[name] = [p["prediction_id"] for p in response.json()["predictions"]]
    for target, source in ((b, "a"), (a, "b")):
        with _client(target, platform.key) as client:
            outcomes = [{"prediction_id": i, "defaulted": n % 2} for n, i in enumerate(ids[source])]
            response = client.post("/feedback", json={"outcomes": outcomes})
            assert response.status_code == 200, response.text
            assert response.json()["known"] == len(outcomes), response.json()
    logged = {
        row[0]
        for row in stores.postgres.sql(
            "SELECT prediction_id FROM predictions",
            db="inference_log",
            user="credit_risk",
            password=stores.inference_db_password,
        )
    }
    assert set(ids["a"]) <= logged and set(ids["b"]) <= logged

    # Shifted traffic through both replicas: the live quality of v1 falls, the accuracy-drop sensor asks for
    # a retrain of exactly v1.
    for n, state in enumerate((a, b)):
        frame = apply_shift(synthetic_source(250, 30 + n, date(2027, 1, 2)), 0.7, seed=n)
        stats = replay(state.url, frame, platform.key, platform.key, rate=5000, batch_size=50, feedback_delay=0.2)
        assert stats.predict_failures == 0 and stats.feedback_failures == 0, stats.errors
    definitions, instance = platform.definitions, platform.instance
    live = definitions.resolve_job_def("live_performance_job").execute_in_process(instance=instance)
    assert live.success
    [materialization] = live.asset_materializations_for_node("live_model_performance")
    assert materialization.metadata["labelled"].value >= 580  # 80 + 500 outcomes, from both replicas
    from platform_assets.defs.monitoring.sensors import accuracy_drop_sensor

    names = ("live_monitoring", "model_registry", "lake")
    fired = evaluate_sensor(
        accuracy_drop_sensor, definitions, instance, None, {n: definitions.resources[n] for n in names}
    )
    assert fired.run_requests, fired.skip_message
    assert fired.run_requests[0].tags["loop/model_version"] == "v1"

    # Nothing of the profile fell back to an embedded store.
    for root in (platform.home, stores.root):
        assert not [p for p in root.rglob("*") if p.name in ("mlruns", "mlflow.db", "inference_log.db")]
        assert _sqlite_files(root) == []
    (runs,) = stores.postgres.sql("SELECT count(*) FROM runs", db="dagster")
    assert runs[0] >= 4  # ingest x2, retrain_and_deploy_job, release_job, live_performance_job


def _readyz(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=10)


def _wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while (response := _readyz(url)).status_code != 200:
        assert time.monotonic() < deadline, f"{url} not ready within {timeout} s: {response.text}"
        time.sleep(1)


def test_stores_down_at_start_mean_not_ready_with_the_reason_until_they_return(
    platform: Platform, stores: ProdStores
) -> None:
    replica = LocalServiceManager(platform.home / "replica_c", port=free_port())
    stores.postgres.stop()
    stores.mlflow.stop()
    state = None
    try:
        state = replica.start(platform.bento, platform.service_env)
        deadline = time.monotonic() + 180
        while True:  # live (answers) but not ready, once the first checks of both stores have failed
            try:
                response = _readyz(state.url)
                if response.status_code == 503 and "registry" in response.text and "inference log" in response.text:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no not-ready answer naming both stores; log: {state.log_file}"
            time.sleep(1)
        assert "unreachable" in response.text and stores.mlflow.url in response.text, response.text
        with _client(state, platform.key) as client:
            status = client.post("/admin/status", json={"refresh": False}).json()
            assert status["ready"] is False and status["inference_log_ready"] is False
            assert len(status["not_ready_reasons"]) == 2, status["not_ready_reasons"]
            refused = client.post("/predict", json={"applications": _applications(1, 5)})
            assert refused.status_code == 503 and "inference log" in refused.json()["error"], refused.text
    finally:
        stores.postgres.start()
        stores.mlflow.start()
    try:
        _wait_ready(state.url)
        with _client(state, platform.key) as client:
            status = client.post("/admin/status", json={"refresh": False}).json()
            assert status["ready"] and status["not_ready_reasons"] == [] and status["champion"] == "v1", status
            assert status["models"]["champion"]["signature"].startswith("verified (Ed25519"), status
            assert client.post("/predict", json={"applications": _applications(3, 6)}).status_code == 200
    finally:
        if state is not None:
            replica.stop(state)


def test_a_replica_never_serves_a_model_it_could_not_verify(platform: Platform) -> None:
    stranger = platform.home / "stranger_key"
    _, other_public = signing.write_key_pair(stranger)
    replica = LocalServiceManager(platform.home / "replica_d", port=free_port())
    state = replica.start(platform.bento, {**platform.service_env, "CREDIT_RISK_VERIFY_KEY_FILE": str(other_public)})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                response = _readyz(state.url)
                if "refused" in response.text:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no refusal in /readyz; log: {state.log_file}"
            time.sleep(1)
        assert response.status_code == 503 and "no verified champion" in response.text, response.text
        with _client(state, platform.key) as client:
            assert client.post("/predict", json={"applications": _applications(1, 7)}).status_code == 503
            status: dict[str, Any] = client.post("/admin/status", json={"refresh": True}).json()
        assert status["champion"] is None and "v1" in status["refused"], status
    finally:
        replica.stop(state)
