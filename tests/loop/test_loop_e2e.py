"""The closed loop with real processes: a served model degrades on shifted traffic, the accuracy-drop sensor
requests a retrain, the retrain is released as the shadow, the promotion sensor gathers its evidence (shadow
pairs, both versions' portfolio scores) and its gate starts the canary, the canary sensor steps it and hands it to
the gate again, which holds until a named person approves and then promotes it; a deliberately worse version is
stopped at the shadow gate while requests keep flowing, none failing and none decided by it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from loop_support import local_service_replay_key
from net_support import free_port
from sensor_support import evaluate_sensor

from platform_assets.core.registry import MODEL_NAME, RETIRED_TAG
from platform_assets.definitions import defs
from platform_assets.defs.monitoring.sensors import accuracy_drop_sensor, canary_sensor
from platform_assets.defs.promotion.sensors import promotion_sensor
from platform_assets.defs.training.sensors import model_version_sensor
from platform_assets.demo import run_pipeline
from platform_assets.replay import apply_shift, replay, synthetic_source

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PARTITIONS = ["2026-10-05", "2026-10-06"]


def training(seed: int, **overrides: Any) -> dict[str, Any]:
    return {"ops": {"default_risk_model": {"config": {"epochs": 4, "patience": 2, "seed": seed, **overrides}}}}


@pytest.fixture
def loop_env(platform_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from local_service_replay_key(
        monkeypatch,
        {
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
            # The canary's p99 gate is the service's 25 ms SLO; this test is about quality, not the test
            # machine's speed.
            "PLATFORM_LOOP_CANARY_MAX_P99_SECONDS": "5",
            # The promotion gate on this test's small traffic: 300 labelled pairs, a 0.05 AUC margin; the local
            # auto-approval off, so the step to champion waits for a named approver.
            "PLATFORM_PROMOTION_MIN_LABELLED": "300",
            "PLATFORM_PROMOTION_SHADOW_MIN_PREDICTIONS": "300",
            "PLATFORM_PROMOTION_AUC_MARGIN": "0.05",
            "PLATFORM_PROMOTION_MAX_APPROVAL_RATE_CHANGE": "0.25",
            "PLATFORM_AUTO_APPROVE_LOCAL": "false",
        },
        "loop test replay",
    )


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


def run_requested(definitions: dg.Definitions, instance: Any, result: Any) -> list[dg.RunRequest]:
    """What the daemon does with a sensor's requests: each job run in process; returns the requests."""
    requests = list(result.run_requests or [])
    for request in requests:
        job = definitions.resolve_job_def(request.job_name)
        run = job.execute_in_process(
            instance=instance, run_config=request.run_config, tags=request.tags, partition_key=request.partition_key
        )
        assert run.success, f"{request.job_name} [{request.partition_key}] failed"
    return requests


def last_decision(instance: Any, version: str) -> dict[str, Any]:
    """The newest promotion_decision of ``version``: its metadata as plain values."""
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("promotion_decision"), asset_partitions=[version]), limit=1
    ).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def figures(decision: dict[str, Any]) -> str:
    """A gate's numbers as the README quotes them."""
    inputs, auc = decision["inputs"], decision["inputs"]["auc"]
    return (
        f"{inputs['predictions']} pairs, {inputs['labelled']} labelled; ROC AUC {auc['auc_challenger']:.4f} vs "
        f"{auc['auc_champion']:.4f}, difference {auc['difference']:+.4f} "
        f"[{auc['ci_low']:+.4f}, {auc['ci_high']:+.4f}]; "
        f"approval rate {inputs['approval_rate_challenger']:.3f} vs {inputs['approval_rate_champion']:.3f} -> "
        f"{decision['verdict']}"
    )


def gate(definitions: dg.Definitions, instance: Any, cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
    """One promotion_sensor tick, its requested runs executed."""
    result = evaluate(promotion_sensor, definitions, instance, cursor)
    assert result.run_requests, result.skip_message
    return run_requested(definitions, instance, result), result.cursor


def step_canary(definitions: dg.Definitions, instance: Any, cursor: str | None) -> tuple[dg.RunRequest, str]:
    result = evaluate(canary_sensor, definitions, instance, cursor)
    assert result.run_requests, result.skip_message
    [request] = result.run_requests
    run = definitions.resolve_job_def(request.job_name).execute_in_process(
        instance=instance, run_config=request.run_config, tags=request.tags
    )
    assert run.success
    return request, result.cursor


def test_drop_retrain_shadow_gate_canary_approval_promote_then_a_worse_one_stopped_in_shadow(
    loop_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
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

        # The requested retrain is released as the shadow: it scores, decides nobody.
        monkeypatch.setenv("PLATFORM_ROLLOUT_STRATEGY", "canary")
        definitions = defs()
        versions_cursor = json.dumps({"storage_id": latest_storage_id(instance)})
        versions_cursor = retrain_and_release(definitions, instance, training(seed=2), retrain.tags, versions_cursor)
        assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v1", "shadow": "v2"}, 0.0)
        waiting = evaluate(promotion_sensor, definitions, instance)
        scored = [r for r in waiting.run_requests or [] if r.job_name == "portfolio_scoring_job"]
        assert {(r.tags["loop/model_version"], r.partition_key_range) for r in scored} == {
            (v, dg.PartitionKeyRange(PARTITIONS[0], PARTITIONS[-1])) for v in ("v1", "v2")
        }, "both versions' portfolio scores of the newest days are requested, once: one run per version"
        assert not [r for r in waiting.run_requests or [] if r.job_name == "promotion_job"]
        run_requested(definitions, instance, waiting)

        # Shadow traffic with outcomes: the gate passes and starts the canary at 10 %.
        send(url, key, 1500, date(2027, 1, 2))
        requested, gate_cursor = gate(definitions, instance, waiting.cursor)
        assert [r.job_name for r in requested] == ["promotion_job"]
        decision = last_decision(instance, "v2")
        assert (decision["stage"], decision["verdict"], decision["action"]) == (
            "shadow_to_canary",
            "pass",
            "canary_started",
        ), decision["reasons"]
        assert decision["inputs"]["auc"]["method"] == "delong_paired" and decision["thresholds"]["auc_margin"] == 0.05
        print(f"\nshadow gate of v2: {figures(decision)}")
        [comparison] = instance.fetch_materializations(dg.AssetKey("shadow_comparison"), limit=1).records
        compared = comparison.asset_materialization.metadata
        assert compared["shadow_pairs"].value >= 1500 and "portfolio/auc_difference" in compared
        assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v1", "challenger": "v2"}, 10.0)

        send(url, key, 2500, date(2027, 1, 3))
        request, cursor = step_canary(definitions, instance, None)
        assert request.tags["loop/action"] == "step" and registry.challenger_weight() == 50.0
        send(url, key, 600, date(2027, 1, 4))

        # The last step held: the canary hands v2 to the promotion gate, which holds for want of an approval.
        request, cursor = step_canary(definitions, instance, cursor)
        assert (request.job_name, request.tags["loop/stage"]) == ("promotion_job", "canary_to_champion")
        decision = last_decision(instance, "v2")
        assert (decision["verdict"], decision["action"]) == ("hold", "held"), decision["reasons"]
        assert any("awaiting a valid approval" in r for r in decision["reasons"]), decision["reasons"]
        assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v1", "challenger": "v2"}, 50.0)

        # A named person who did not launch the training approves; the gate promotes v2 and retires v1.
        approved = subprocess.run(
            [
                sys.executable,
                "-m",
                "platform_assets.approve",
                "v2",
                "--by",
                "Rita Risk",
                "--reason",
                "shadow and canary held",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert approved.returncode == 0, approved.stderr
        job = definitions.resolve_job_def("promotion_job")
        assert job.execute_in_process(instance=instance, run_config=request.run_config, partition_key="v2").success
        decision = last_decision(instance, "v2")
        assert (decision["verdict"], decision["action"]) == ("pass", "promoted"), decision["reasons"]
        assert decision["approval"]["approval"]["approved_by"] == "Rita Risk"
        assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v2"}, 0.0)
        assert registry.client().get_model_version(MODEL_NAME, "1").tags.get(RETIRED_TAG)

        # A deliberately worse version (gradient ascent) is stopped at the shadow gate while requests keep flowing:
        # it never decided an application.
        bad = training(seed=3, learning_rate=-0.003, epochs=2)
        retrain_and_release(definitions, instance, bad, {}, versions_cursor)
        assert registry.aliases() == {"champion": "v2", "shadow": "v3"}
        statuses: list[int] = []
        deciders: set[str] = set()
        stop = threading.Event()

        def traffic() -> None:
            rows = synthetic_source(20, 12, date(2027, 1, 5)).drop(columns=["default payment next month"])
            body = {"applications": rows.to_dict(orient="records")}
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                while not stop.is_set():
                    response = client.post("/predict", json=body)
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        deciders.update(p["model_version"] for p in response.json()["predictions"])

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            send(url, key, 1500, date(2027, 1, 6))
            first = evaluate(promotion_sensor, definitions, instance, gate_cursor)
            run_requested(definitions, instance, first)
            if not [r for r in first.run_requests or [] if r.job_name == "promotion_job"]:
                gate(definitions, instance, first.cursor)
        finally:
            stop.set()
            thread.join(30)
        decision = last_decision(instance, "v3")
        assert (decision["stage"], decision["verdict"], decision["action"]) == (
            "shadow_to_canary",
            "fail",
            "retired",
        ), decision["reasons"]
        assert any("worse beyond" in r for r in decision["reasons"]), decision["reasons"]
        print(f"shadow gate of v3 (gradient ascent): {figures(decision)}")
        assert registry.aliases() == {"champion": "v2"}
        assert registry.client().get_model_version(MODEL_NAME, "3").tags.get(RETIRED_TAG)
        assert statuses and set(statuses) == {200}, f"{len([s for s in statuses if s != 200])} failed requests"
        assert deciders == {"v2"}, "a shadow decides nobody"
