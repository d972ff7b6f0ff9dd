"""Store faults with real servers: the MLflow server killed while the service serves from it.

A real ``bentoml serve`` polls the production profile's MLflow server (metadata in PostgreSQL, artifacts in
moto S3 behind it) every 0.5 s. The server is SIGKILLed: requests keep being answered by the version already
loaded, with no failure; ``/admin/status`` names the registry error and since when; the failure counter on
``/metrics`` grows. The server restarts on the same port with the same backend store: the error clears and an
alias change made after the restart is served (the poller recovered by itself). The figures are printed
(run with ``-s``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from net_support import wait_for_status
from prod_support import ProdStores

SERVING_TESTS = Path(__file__).resolve().parents[1] / "serving"
sys.path.insert(0, str(SERVING_TESTS))
from serving_support import Api, Server, metric, rows_of  # noqa: E402

from platform_assets.core import observability, registry  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.prod_profile]

#: A model name of its own: the tier's other tests register ``default_risk_model`` on the same server.
MODEL_NAME = "store_faults_model"
#: Seconds the registry stays down while requests flow (dozens of failed polls at 0.5 s).
OUTAGE_SECONDS = 6.0


def register_two_versions(tracking_uri: str) -> dict[str, str]:
    """Two versions of a tiny model registered as ``MODEL_NAME`` on the MLflow server (artifacts to S3 through
    it), v1 the champion; label -> registry version."""
    import mlflow
    import model_support

    from platform_assets.settings import EXPERIMENT_NAME

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)  # register_model_version logs to the active run of the global client
    mlflow.set_registry_uri(tracking_uri)
    try:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        if client.get_experiment_by_name(EXPERIMENT_NAME) is None:
            client.create_experiment(EXPERIMENT_NAME)  # the server's artifact root: S3 behind the server
        mlflow.set_experiment(EXPERIMENT_NAME)
        rows = model_support.synthetic_rows(days=3, rows_per_day=1000, seed=7)
        versions = {}
        with warnings.catch_warnings():  # keras' and mlflow's notices while training and logging
            warnings.simplefilter("ignore")
            # One model registered twice: the alias change needs another version, not another model (and
            # training dominates the test's time on a busy machine).
            tiny = model_support.train_tiny(rows, seed=1, epochs=2, calibration_method="platt")
            for label in ("v1", "v2"):
                registered = model_support.register_tiny(tiny, model_support.keras_inputs(rows), model_name=MODEL_NAME)
                versions[label] = registered.version
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    client.set_registered_model_alias(MODEL_NAME, registry.CHAMPION, versions["v1"])
    return versions


@dataclass
class Load:
    """One client predicting back to back; which version answered each request, and what failed."""

    api: Api
    rows: list[dict[str, int]]
    answered_by: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        for i in range(1_000_000):
            if self.stop.is_set():
                return
            try:
                answer = self.api.post("/predict", {"applications": [self.rows[i % len(self.rows)]]})
            except httpx.HTTPError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if answer.status_code != 200:
                self.failures.append(f"{answer.status_code}: {answer.text[:200]}")
                continue
            self.answered_by[answer.json()["predictions"][0]["model_version"]] += 1

    def sent(self) -> int:
        return sum(self.answered_by.values()) + len(self.failures)


def kill_mlflow(stores: ProdStores) -> None:
    """SIGKILL the MLflow server's whole process group (gunicorn/uvicorn workers too): no goodbye to clients."""
    process = stores.mlflow.server.process
    assert process is not None and process.poll() is None, "the MLflow server is not running"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    stores.mlflow.server.process = None


def test_mlflow_killed_while_serving_keeps_the_loaded_version_and_reports_the_registry(
    stores: ProdStores, tmp_path: Path
) -> None:
    import mlflow
    import model_support

    from platform_assets.core.api_keys import create_key
    from platform_assets.ml import schema

    versions = register_two_versions(stores.mlflow.url)
    keys_file = tmp_path / "api_keys.json"
    keys = {role: create_key(keys_file, [role])[0] for role in ("predict", "admin")}
    env = {
        **os.environ,
        "PLATFORM_ENV": "local",  # unverified models: the fault under test is the registry, not signing
        "PLATFORM_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": stores.mlflow.url,
        "CREDIT_RISK_MODEL_NAME": MODEL_NAME,
        "CREDIT_RISK_API_KEYS_FILE": str(keys_file),
        "CREDIT_RISK_REFRESH_SECONDS": "0.5",
        "CREDIT_RISK_WORKERS": "1",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    server = Server(env, tmp_path / "server.log").start()
    api = Api(server.url, keys)
    rows = rows_of(model_support.synthetic_rows(days=1, rows_per_day=200, seed=99).drop(columns=[schema.TARGET]))
    load = Load(Api(server.url, keys), rows)
    client = threading.Thread(target=load.run, name="predict-load")
    try:
        status = api.status(refresh=False)
        assert status["champion"] == "v1" and status["last_error"] is None, status
        assert status["last_successful_refresh"] is not None and status["registry_error_since"] is None
        failures_before = metric(server, observability.REGISTRY_REFRESH_FAILURES_TOTAL)
        last_success_before = metric(server, observability.REGISTRY_LAST_SUCCESS_TIMESTAMP_SECONDS)
        client.start()
        time.sleep(1)

        down_at = time.monotonic()
        killed_at = time.time()
        kill_mlflow(stores)
        sent_before_outage = load.sent()
        failing = wait_for_status(api, lambda s: s["last_error"] is not None, timeout=30)
        seconds_to_error = time.monotonic() - down_at
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        failures_during = metric(server, observability.REGISTRY_REFRESH_FAILURES_TOTAL)
        last_success_during = metric(server, observability.REGISTRY_LAST_SUCCESS_TIMESTAMP_SECONDS)
        during = api.status(refresh=False)
        outage_requests = load.sent() - sent_before_outage

        stores.mlflow.start()  # same port, same PostgreSQL backend store and S3 artifacts
        up_at = time.monotonic()
        recovered = wait_for_status(api, lambda s: s["last_error"] is None, timeout=60)
        seconds_to_recover = time.monotonic() - up_at
        client_v = mlflow.MlflowClient(tracking_uri=stores.mlflow.url, registry_uri=stores.mlflow.url)
        client_v.set_registered_model_alias(MODEL_NAME, registry.CHAMPION, versions["v2"])
        swapped = wait_for_status(api, lambda s: s["champion"] == "v2", timeout=60)
        seconds_to_alias = time.monotonic() - up_at
        last_success_after = metric(server, observability.REGISTRY_LAST_SUCCESS_TIMESTAMP_SECONDS)
        time.sleep(1)
    finally:
        load.stop.set()
        if client.is_alive():
            client.join(timeout=60)
        if stores.mlflow.server.process is None:
            stores.mlflow.start()  # the session's other tests need it
        server.stop()

    print(
        f"\nMLflow server SIGKILLed for {OUTAGE_SECONDS:.0f} s under load: {outage_requests} requests sent during "
        f"the outage, {len(load.failures)} failed; /admin/status showed the registry error after "
        f"{seconds_to_error:.1f} s; {int(failures_during - failures_before)} failed registry reads counted; "
        f"recovered {seconds_to_recover:.1f} s after the restart, new champion served "
        f"{seconds_to_alias:.1f} s after it; answered by {dict(load.answered_by)}"
    )
    assert load.failures == [], load.failures[:3]
    assert outage_requests > 0, "no request was sent while the registry was down: the test proves nothing"
    # The error, and since when, are on /admin/status; the worker stays ready with what it loaded.
    assert failing["ready"] and failing["not_ready_reasons"] == [] and failing["champion"] == "v1", failing
    assert failing["registry_error_since"] is not None and failing["registry_error_since"] >= killed_at - 1
    assert during["registry_error_since"] == failing["registry_error_since"], "the outage's start moved"
    assert during["registry_refresh_failures"] > failing["registry_refresh_failures"] >= 1
    assert during["last_successful_refresh"] < killed_at + 1
    # The counter grew with the failed polls; the last-success timestamp stood still, then moved on.
    assert failures_during - failures_before >= during["registry_refresh_failures"] - 1 > 0
    assert 0 < last_success_before <= last_success_during < killed_at + 1 < last_success_after
    # Every request until the alias change was answered by v1, the version loaded before the outage.
    assert load.answered_by["v1"] > 0 and set(load.answered_by) <= {"v1", "v2"}
    # Recovery: the error cleared by itself and the alias change made after the restart is served.
    assert recovered["registry_error_since"] is None and recovered["last_successful_refresh"] > killed_at
    assert swapped["champion"] == "v2" and swapped["last_error"] is None
    assert load.answered_by["v2"] > 0, "no request was answered by the new champion"
