"""The closed loop with real processes: a served model degrades on shifted traffic, the accuracy-drop sensor
requests a retrain, the retrain deploys a shadow that (as a passed shadow gate would) becomes the challenger, the
canary sensor steps it to promotion; then a deliberately worse challenger is rolled back while requests keep
flowing, none failing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from net_support import free_port
from sensor_support import evaluate_sensor

from platform_assets.core.api_keys import create_key
from platform_assets.definitions import defs
from platform_assets.defs.monitoring.sensors import accuracy_drop_sensor, canary_sensor
from platform_assets.defs.resources import resources
from platform_assets.defs.training.sensors import model_version_sensor
from platform_assets.demo import run_pipeline
from platform_assets.deploy.rollout import start_canary
from platform_assets.replay import apply_shift, replay, synthetic_source

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PARTITIONS = ["2026-10-05", "2026-10-06"]


def training(seed: int, **overrides: Any) -> dict[str, Any]:
    return {"ops": {"default_risk_model": {"config": {"epochs": 4, "patience": 2, "seed": seed, **overrides}}}}


@pytest.fixture
def loop_env(platform_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {
        "PLATFORM_ROWS_PER_DAY": "700",
        "PLATFORM_AUC_FLOOR": "0.0",  # the worse challenger must pass the gates to reach the canary
        "PLATFORM_BASELINE_MARGIN": "1.0",
        "PLATFORM_MIN_DISPARATE_IMPACT": "0.0",
        "PLATFORM_MAX_EQUAL_OPPORTUNITY_DIFF": "1.0",
        "PLATFORM_SERVICE_PORT": str(free_port()),
        "PLATFORM_LOOP_WINDOW_HOURS": "1",
        "PLATFORM_LOOP_MIN_LABELLED": "200",
        "PLATFORM_LOOP_CANARY_MIN_LABELLED": "150",
        "PLATFORM_LOOP_CANARY_MAX_AUC_DROP": "0.15",
        "PLATFORM_LOOP_CANARY_MAX_ACCURACY_DROP": "0.10",
        # The canary's p99 gate is the service's 25 ms SLO; this test is about quality, not the test machine's speed.
        "PLATFORM_LOOP_CANARY_MAX_P99_SECONDS": "5",
    }.items():
        monkeypatch.setenv(name, value)
    deployer = resources().resources["deployer"]
    key, _ = create_key(deployer.api_keys_file(), ["predict", "feedback"], note="loop test replay")
    yield key
    state = deployer.local_manager().current()
    if state is not None:
        deployer.local_manager().stop(state)


def latest_storage_id(instance: Any) -> int:
    records = instance.fetch_materializations(dg.AssetKey("default_risk_model"), limit=1).records
    return records[0].storage_id if records else 0


def evaluate(sensor: Any, definitions: dg.Definitions, instance: Any, cursor: str | None = None) -> Any:
    names = ("live_monitoring", "model_registry", "lake")
    return evaluate_sensor(sensor, definitions, instance, cursor, {n: definitions.resources[n] for n in names})


def send(url: str, key: str, rows: int, day: date, shift: float = 0.0) -> None:
    frame = apply_shift(synthetic_source(rows, 11, day), shift, seed=day.toordinal())
    stats = replay(url, frame, key, key, rate=5000, batch_size=100, feedback_delay=0.2, max_seconds=120)
    assert stats.predict_failures == 0 and stats.feedback_failures == 0, stats.errors
    assert stats.feedback_sent == rows


def retrain_and_release(
    definitions: dg.Definitions, instance: Any, run_config: dict[str, Any], tags: dict[str, str], cursor: str | None
) -> str | None:
    """What the daemon does: retrain_and_deploy_job, then the release_job model_version_sensor requests for the
    version it trained; returns the sensor's cursor."""
    job = definitions.resolve_job_def("retrain_and_deploy_job")
    assert job.execute_in_process(instance=instance, run_config=run_config, tags=tags).success
    handed_on = evaluate(model_version_sensor, definitions, instance, cursor)
    [request] = handed_on.run_requests
    assert request.job_name == "release_job", request
    release = definitions.resolve_job_def("release_job")
    assert release.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags).success
    return handed_on.cursor


def start_the_canary(definitions: dg.Definitions) -> None:
    """What a passed shadow gate does: the shadow becomes the challenger at the first canary weight, and every
    worker of the service routes by it."""
    registry, deployer = definitions.resources["model_registry"], definitions.resources["deployer"]
    plan = start_canary(registry.state(), deployer.first_canary_weight)
    registry.apply(plan)
    deployer.wait_for_models(deployer.local_manager().current(), plan)


def step_canary(definitions: dg.Definitions, instance: Any, cursor: str | None) -> tuple[dg.RunRequest, str]:
    result = evaluate(canary_sensor, definitions, instance, cursor)
    assert result.run_requests, result.skip_message
    [request] = result.run_requests
    run = definitions.resolve_job_def(request.job_name).execute_in_process(
        instance=instance, run_config=request.run_config, tags=request.tags
    )
    assert run.success
    return request, result.cursor


def test_drop_retrain_canary_promote_then_rollback(loop_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key = loop_env
    run_pipeline(PARTITIONS, training(seed=1), deploy=True)
    definitions = defs()
    registry = definitions.resources["model_registry"]
    url = definitions.resources["deployer"].local_manager().current().url
    assert registry.aliases() == {"champion": "v1"}

    with dg.DagsterInstance.get() as instance:
        # Shifted traffic: the champion's live ROC AUC falls well below its validation ROC AUC.
        send(url, key, 400, date(2027, 1, 1), shift=0.7)
        fired = evaluate(accuracy_drop_sensor, definitions, instance)
        assert fired.run_requests, fired.skip_message
        [retrain] = fired.run_requests
        assert retrain.tags["loop/model_version"] == "v1"
        again = evaluate(accuracy_drop_sensor, definitions, instance, fired.cursor)
        assert not again.run_requests and "already requested" in again.skip_message

        # The requested retrain, rolled out as a canary: first the shadow, then the challenger at 10 %.
        monkeypatch.setenv("PLATFORM_ROLLOUT_STRATEGY", "canary")
        definitions = defs()
        versions_cursor = json.dumps({"storage_id": latest_storage_id(instance)})
        versions_cursor = retrain_and_release(definitions, instance, training(seed=2), retrain.tags, versions_cursor)
        assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v1", "shadow": "v2"}, 0.0)
        start_the_canary(definitions)
        assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v1", "challenger": "v2"}, 10.0)

        waiting = evaluate(canary_sensor, definitions, instance)
        assert not waiting.run_requests and "waiting" in waiting.skip_message

        send(url, key, 2500, date(2027, 1, 2))
        request, cursor = step_canary(definitions, instance, waiting.cursor)
        assert request.tags["loop/action"] == "step" and registry.challenger_weight() == 50.0
        send(url, key, 600, date(2027, 1, 3))
        request, cursor = step_canary(definitions, instance, cursor)
        assert request.tags["loop/action"] == "promote"
        assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v2"}, 0.0)

        # A deliberately worse challenger (gradient ascent) is rolled back while requests keep flowing.
        bad = training(seed=3, learning_rate=-0.003, epochs=2)
        retrain_and_release(definitions, instance, bad, {}, versions_cursor)
        assert registry.aliases() == {"champion": "v2", "shadow": "v3"}
        start_the_canary(definitions)
        assert registry.aliases() == {"champion": "v2", "challenger": "v3"}
        send(url, key, 2500, date(2027, 1, 4))
        statuses: list[int] = []
        stop = threading.Event()

        def traffic() -> None:
            rows = synthetic_source(20, 12, date(2027, 1, 5)).drop(columns=["default payment next month"])
            body = {"applications": rows.to_dict(orient="records")}
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                while not stop.is_set():
                    statuses.append(client.post("/predict", json=body).status_code)

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            request, _ = step_canary(definitions, instance, cursor)
        finally:
            stop.set()
            thread.join(30)
        assert request.tags["loop/action"] == "rollback"
        assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v2"}, 0.0)
        assert statuses and set(statuses) == {200}, f"{len([s for s in statuses if s != 200])} failed requests"
        [decision] = instance.fetch_materializations(dg.AssetKey("canary_decision"), limit=1).records
        reasons = decision.asset_materialization.metadata["reasons"].value
        assert any("below the champion's" in r for r in reasons), reasons
