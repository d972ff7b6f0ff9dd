"""The three sensors with ``build_sensor_context``: fire, no fire, cursor, minimum sample, unreachable source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from loop_support import FakeRegistry, empty_log, lake_at, log_outcomes, monitoring, publish_validation
from sensor_support import evaluate_sensor

from platform_assets.definitions import defs
from platform_assets.defs.monitoring.sensors import accuracy_drop_sensor, canary_sensor, drift_sensor
from platform_assets.partitions import model_versions
from platform_assets.resources.lake import LakeStorage


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'inference_log.db'}"
    empty_log(url)
    return url


@pytest.fixture
def lake(tmp_path: Path) -> LakeStorage:
    return lake_at(tmp_path / "lake")


@pytest.fixture
def instance() -> Any:
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def evaluate(sensor: Any, instance: Any, cursor: str | None = None, **resources: Any) -> Any:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor.evaluate_tick(context)


def requests(result: Any) -> list[dg.RunRequest]:
    return list(result.run_requests or [])


# -- accuracy_drop_sensor ------------------------------------------------------------------------------
def drop_resources(db: str, lake: LakeStorage, **overrides: Any) -> dict[str, Any]:
    registry = overrides.pop("registry", FakeRegistry(current={"champion": "v1"}))
    return {"live_monitoring": monitoring(db, **overrides), "model_registry": registry, "lake": lake}


def test_accuracy_drop_fires_once_per_drop(db: str, lake: LakeStorage, instance: Any) -> None:
    publish_validation(lake, "v1", roc_auc=0.80)
    log_outcomes(db, "v1", 300, quality=0.0)  # live ROC AUC about 0.5
    resources = drop_resources(db, lake)
    first = evaluate(accuracy_drop_sensor, instance, **resources)
    [request] = requests(first)
    assert request.job_name in (None, "retrain_and_deploy_job")
    assert request.tags["loop/trigger"] == "accuracy_drop" and request.tags["loop/model_version"] == "v1"
    assert "below validation 0.8000" in request.tags["loop/reason"]
    assert json.loads(first.cursor)["model_version"] == "v1"

    again = evaluate(accuracy_drop_sensor, instance, cursor=first.cursor, **resources)
    assert not requests(again)
    assert "already requested" in again.skip_message

    # A new champion that drops as well is a new drop: one more request.
    publish_validation(lake, "v2", roc_auc=0.80)
    log_outcomes(db, "v2", 300, quality=0.0, seed=1)
    resources["model_registry"] = FakeRegistry(current={"champion": "v2"})
    assert len(requests(evaluate(accuracy_drop_sensor, instance, cursor=first.cursor, **resources))) == 1


def test_accuracy_drop_does_not_fire_while_quality_holds(db: str, lake: LakeStorage, instance: Any) -> None:
    publish_validation(lake, "v1", roc_auc=0.90)
    log_outcomes(db, "v1", 400, quality=3.0)
    result = evaluate(accuracy_drop_sensor, instance, **drop_resources(db, lake))
    assert not requests(result)
    assert "holds over 400 labelled outcomes" in result.skip_message


def test_accuracy_drop_waits_for_the_minimum_sample(db: str, lake: LakeStorage, instance: Any) -> None:
    publish_validation(lake, "v1", roc_auc=0.80)
    log_outcomes(db, "v1", 500, quality=0.0, labelled=150)  # many predictions, few outcomes so far
    result = evaluate(accuracy_drop_sensor, instance, **drop_resources(db, lake))
    assert not requests(result)
    assert "only 150 of the 200 labelled outcomes" in result.skip_message


def test_accuracy_drop_absolute_floor(db: str, lake: LakeStorage, instance: Any) -> None:
    log_outcomes(db, "v1", 300, quality=3.0)  # good ranking (accuracy about 0.93), no info.json needed
    resources = drop_resources(db, lake, drop_mode="absolute", accuracy_floor=0.97)
    [request] = requests(evaluate(accuracy_drop_sensor, instance, **resources))
    assert "< floor 0.9700" in request.tags["loop/reason"]
    resources = drop_resources(db, lake, drop_mode="absolute", accuracy_floor=0.85)
    assert not requests(evaluate(accuracy_drop_sensor, instance, **resources))


def test_accuracy_drop_skips_with_reason_when_sources_are_unreachable(
    tmp_path: Path, lake: LakeStorage, instance: Any
) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'inference_log.db'}"
    result = evaluate(accuracy_drop_sensor, instance, **drop_resources(missing, lake))
    assert "inference log unreachable" in result.skip_message and "does not exist" in result.skip_message
    broken = drop_resources(missing, lake, registry=FakeRegistry(broken=True))
    assert "model registry unreachable" in evaluate(accuracy_drop_sensor, instance, **broken).skip_message
    no_champion = drop_resources(missing, lake, registry=FakeRegistry())
    assert "no champion" in evaluate(accuracy_drop_sensor, instance, **no_champion).skip_message


def test_accuracy_drop_relative_needs_the_validation_metrics(db: str, lake: LakeStorage, instance: Any) -> None:
    log_outcomes(db, "v1", 300, quality=0.0)
    result = evaluate(accuracy_drop_sensor, instance, **drop_resources(db, lake))
    assert "validation metrics" in result.skip_message


# -- drift_sensor ------------------------------------------------------------------------------------
def report_drift(instance: Any, share: float, overlap: bool = False, version: str = "v1") -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="data_drift_report",
            metadata={"drift_share": share, "model_version": version, "window_overlaps_training": overlap},
        )
    )


def test_drift_fires_once_per_report(db: str, instance: Any) -> None:
    resources = {"live_monitoring": monitoring(db, drift_share=0.5)}
    assert "no data_drift_report" in evaluate(drift_sensor, instance, **resources).skip_message
    report_drift(instance, 0.7)
    first = evaluate(drift_sensor, instance, **resources)
    [request] = requests(first)
    assert request.tags["loop/trigger"] == "drift" and request.tags["loop/drift_share"] == "0.7000"
    again = evaluate(drift_sensor, instance, cursor=first.cursor, **resources)
    assert not requests(again) and "no data_drift_report since" in again.skip_message

    report_drift(instance, 0.2)  # a new report within the threshold: no request, but it is consumed
    calm = evaluate(drift_sensor, instance, cursor=first.cursor, **resources)
    assert not requests(calm) and "within the threshold" in calm.skip_message
    assert json.loads(calm.cursor)["storage_id"] > json.loads(first.cursor)["storage_id"]

    report_drift(instance, 0.9, overlap=True)  # drift in data the model was trained on: no retrain
    overlapping = evaluate(drift_sensor, instance, cursor=calm.cursor, **resources)
    assert not requests(overlapping) and "already in v1's training data" in overlapping.skip_message


def test_drift_skips_with_reason_when_the_event_log_is_unreachable(
    db: str, instance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(*args: Any, **kwargs: Any) -> Any:
        raise OSError("database is locked")

    monkeypatch.setattr(instance, "fetch_materializations", locked)
    result = evaluate(drift_sensor, instance, live_monitoring=monitoring(db))
    assert "Dagster event log unreachable" in result.skip_message and "database is locked" in result.skip_message


# -- canary_sensor -----------------------------------------------------------------------------------
def canary_resources(db: str, weight: float, **overrides: Any) -> dict[str, Any]:
    """The canary sensor's resources: its whole state is the registry's (no lake)."""
    registry = FakeRegistry(current={"champion": "v1", "challenger": "v2"}, weight=weight)
    return {"live_monitoring": monitoring(db, **overrides), "model_registry": registry}


def test_canary_steps_once_per_step_and_promotes_at_the_last(db: str, lake: LakeStorage, instance: Any) -> None:
    log_outcomes(db, "v1", 300, quality=2.0, seed=1)
    log_outcomes(db, "v2", 300, quality=2.0, role="challenger", seed=2)
    resources = canary_resources(db, weight=10.0, canary_max_auc_drop=0.05, canary_max_accuracy_drop=0.05)
    first = evaluate(canary_sensor, instance, **resources)
    [request] = requests(first)
    assert request.job_name == "canary_job"
    assert (request.tags["loop/action"], request.tags["loop/from_weight"], request.tags["loop/to_weight"]) == (
        "step",
        "10",
        "50",
    )
    config = request.run_config["ops"]["canary_decision"]["config"]
    assert config == {"expected_challenger": "v2", "expected_weight": 10.0}
    again = evaluate(canary_sensor, instance, cursor=first.cursor, **resources)
    assert not requests(again) and "already requested" in again.skip_message

    at_fifty = canary_resources(db, weight=50.0, canary_max_auc_drop=0.05, canary_max_accuracy_drop=0.05)
    # A request for a version's partition is checked against the definitions and the instance's partitions.
    instance.add_dynamic_partitions(model_versions.name, ["v2"])
    handed_over = evaluate_sensor(canary_sensor, defs(), instance, first.cursor, at_fifty)
    [promote] = requests(handed_over)
    assert promote.tags["loop/action"] == "promote" and promote.tags["loop/to_weight"] == "100"
    # The step to champion is the promotion gate's: promotion_job for the challenger, at its canary stage.
    assert (promote.job_name, promote.partition_key) == ("promotion_job", "v2")
    assert promote.run_config["ops"]["promotion_decision"]["config"] == {"expected_stage": "canary_to_champion"}


def test_canary_rolls_back_a_worse_challenger(db: str, lake: LakeStorage, instance: Any) -> None:
    log_outcomes(db, "v1", 300, quality=3.0, seed=1)
    log_outcomes(db, "v2", 300, quality=0.0, role="challenger", seed=2)
    [request] = requests(evaluate(canary_sensor, instance, **canary_resources(db, weight=10.0)))
    assert request.tags["loop/action"] == "rollback" and request.tags["loop/to_weight"] == "0"


def test_canary_waits_for_the_minimum_sample(db: str, lake: LakeStorage, instance: Any) -> None:
    log_outcomes(db, "v1", 300, quality=3.0, seed=1)
    log_outcomes(db, "v2", 300, quality=0.0, role="challenger", seed=2, labelled=40)
    result = evaluate(canary_sensor, instance, **canary_resources(db, weight=10.0))
    assert not requests(result)
    assert "challenger has 40 of 200 labelled outcomes" in result.skip_message


def test_canary_skips_without_a_challenger_or_a_reachable_source(
    tmp_path: Path, db: str, lake: LakeStorage, instance: Any
) -> None:
    none = {"live_monitoring": monitoring(db), "model_registry": FakeRegistry(current={"champion": "v1"})}
    assert "no canary in progress" in evaluate(canary_sensor, instance, **none).skip_message
    broken = {**none, "model_registry": FakeRegistry(broken=True)}
    assert "model registry unreachable" in evaluate(canary_sensor, instance, **broken).skip_message
    # The service's /metrics (error rate) is down: skip, do not guess.
    log_outcomes(db, "v1", 300, quality=2.0, seed=1)
    log_outcomes(db, "v2", 300, quality=2.0, role="challenger", seed=2)
    down = canary_resources(db, weight=10.0, service_url="http://127.0.0.1:9")
    result = evaluate(canary_sensor, instance, **down)
    assert not requests(result) and "inference log or service unreachable" in result.skip_message


def test_ab_mode_holds_the_split_then_requests_the_report_once(db: str, lake: LakeStorage, instance: Any) -> None:
    running = canary_resources(db, weight=10.0, mode="ab", ab_hours=24.0)
    first = evaluate(canary_sensor, instance, **running)
    assert not requests(first) and "A/B test v1 vs v2 at 10 % runs until" in first.skip_message
    ended = canary_resources(db, weight=10.0, mode="ab", ab_hours=0.0)
    done = evaluate(canary_sensor, instance, cursor=first.cursor, **ended)
    [request] = requests(done)
    assert request.job_name == "ab_report_job"
    assert request.run_config["ops"]["ab_comparison_report"]["config"] == {"version_b": "v2", "end_test": True}
    assert not requests(evaluate(canary_sensor, instance, cursor=done.cursor, **ended))
