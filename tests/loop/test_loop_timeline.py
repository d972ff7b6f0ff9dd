"""The loop's timeline: sensor-requested runs, failures and the loop assets' materializations read from a real
(ephemeral) Dagster instance, registry moves read from a real MLflow registry, and when the rollout is decided."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from platform_assets.loop_timeline import (
    RegistryState,
    Timeline,
    partitions_of,
    read_events,
    read_registry,
    registry_change,
    run_table,
    runs_in_progress,
    sensor_waits,
)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def materialize(instance: dg.DagsterInstance, key: str, partition: str | None = None, **metadata: Any) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition, metadata=metadata))


@dg.op
def succeed() -> None:
    pass


@dg.op
def fail() -> None:
    raise RuntimeError("the gate failed")


def run(instance: dg.DagsterInstance, op: Any, name: str, tags: dict[str, str]) -> None:
    job = dg.GraphDefinition(name=name, node_defs=[op]).to_job()
    job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)


def test_sensor_requests_failures_and_loop_materializations_in_order(instance: dg.DagsterInstance) -> None:
    materialize(instance, "default_risk_model", model_version="v1")  # before onset: not shown
    time.sleep(0.01)
    onset = datetime.now(UTC)
    run(
        instance,
        succeed,
        "retrain_and_deploy_job",
        {"dagster/sensor_name": "accuracy_drop_sensor", "loop/trigger": "accuracy_drop", "loop/model_version": "v1"},
    )
    materialize(instance, "default_risk_model", model_version="v2", validation_roc_auc=0.7712345, best_epoch=3)
    materialize(instance, "credit_risk_deployment", "v2", model_version="v2", action="shadow_started", champion="v1")
    materialize(
        instance, "shadow_comparison", "v2", model_version="v2", live_verdict="pass", shadow_pairs=1200, champion="v1"
    )
    materialize(
        instance,
        "promotion_decision",
        "v2",
        model_version="v2",
        verdict="pass",
        stage="shadow_to_canary",
        reasons=dg.MetadataValue.json(["ROC AUC non-inferior", "approval rate within 0.10"]),
        approval=dg.MetadataValue.json({"state": "missing", "valid": False, "approval": None}),
        action=dg.MetadataValue.json(None),  # a null entry is left out
    )
    materialize(
        instance,
        "promotion_decision",
        "v2",
        model_version="v2",
        stage="canary_to_champion",
        verdict="pass",
        approval=dg.MetadataValue.json({"state": "valid", "approval": {"approved_by": "auto-approval (local demo)"}}),
    )
    materialize(instance, "canary_decision", action="step", from_weight_percent=10.0, to_weight_percent=50.0)
    materialize(instance, "live_model_performance", labelled=400)  # not a loop step
    run(instance, succeed, "daily_ingest_job", {})  # nobody's request and no failure: not shown
    run(
        instance,
        fail,
        "release_job",
        {
            "dagster/sensor_name": "model_version_sensor",
            "dagster/partition": "v3",
            "platform/training_run_id": "0123456789abcdef",
            "loop/trigger": "accuracy_drop",  # handed on from the training run: not this request's reason
        },
    )

    events = read_events(instance, onset)
    titles = [e.title for e in events]
    assert titles == [
        "accuracy_drop_sensor requested retrain_and_deploy_job",
        "version trained: default_risk_model",
        "deployed: credit_risk_deployment [v2]",
        "shadow report: shadow_comparison [v2]",
        "promotion decision: promotion_decision [v2]",
        "promotion decision: promotion_decision [v2]",
        "canary decision: canary_decision",
        "model_version_sensor requested release_job [v3]",
        "release_job [v3] failure",
    ]
    by_title = {e.title: e for e in events}
    promoted = by_title.pop("promotion decision: promotion_decision [v2]")  # the later of the two
    assert promoted.detail == (
        "model_version=v2, stage=canary_to_champion, verdict=pass, approval=valid (auto-approval (local demo))"
    )
    [by_title["promotion decision: promotion_decision [v2]"]] = [
        e for e in events if e.title == "promotion decision: promotion_decision [v2]" and e is not promoted
    ]
    assert by_title["accuracy_drop_sensor requested retrain_and_deploy_job"].detail == (
        "model_version=v1, trigger=accuracy_drop"
    )
    trained = by_title["version trained: default_risk_model"]
    assert (trained.model_version, trained.detail) == (
        "v2",
        "model_version=v2, validation_roc_auc=0.7712, best_epoch=3",
    )
    assert by_title["shadow report: shadow_comparison [v2]"].detail == (
        "model_version=v2, live_verdict=pass, shadow_pairs=1200"
    )
    assert by_title["promotion decision: promotion_decision [v2]"].detail == (
        "model_version=v2, stage=shadow_to_canary, verdict=pass, approval=missing, "
        "reasons=ROC AUC non-inferior; approval rate within 0.10"
    )
    assert (
        by_title["canary decision: canary_decision"].detail
        == "action=step, from_weight_percent=10, to_weight_percent=50"
    )
    assert by_title["model_version_sensor requested release_job [v3]"].detail == "the version of training run 01234567"
    assert all(e.at >= onset for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)

    timeline = Timeline(onset)
    assert len(timeline.poll(instance)) == len(events)
    assert timeline.poll(instance) == []  # read again: nothing new
    assert timeline.candidates == {"v2"}
    outcome = timeline.outcome()
    assert outcome is not None and outcome.result == "failed" and outcome.reason == "release_job [v3] failure"
    assert runs_in_progress(instance) == []
    table = run_table(instance, onset).splitlines()
    assert table[0] == "| run | requested by | queued s | ran s | status |"
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| retrain_and_deploy_job",
        "| daily_ingest_job",
        "| release_job [v3]",
    ]
    assert table[2].startswith("| retrain_and_deploy_job | accuracy_drop_sensor | ") and table[2].endswith(" success |")
    assert table[4].startswith("| release_job [v3] | model_version_sensor | ") and table[4].endswith(" failure |")
    queued, ran = (float(v) for v in table[2].split(" | ")[2:4])
    assert queued >= 0 and ran >= 0
    assert "accuracy_drop_sensor requested retrain_and_deploy_job" in timeline.render()


def state(weight: float = 0.0, **aliases: str) -> RegistryState:
    return RegistryState(aliases, {"challenger_weight": repr(weight)})


def test_registry_moves_and_a_promotion_decided_only_once_no_run_is_in_progress(instance: dg.DagsterInstance) -> None:
    onset = datetime.now(UTC)
    timeline = Timeline(onset, state(champion="v1"))
    steps = [
        state(champion="v1", shadow="v2"),
        state(10.0, champion="v1", challenger="v2"),
        state(50.0, champion="v1", challenger="v2"),
        state(champion="v2"),
    ]
    moves = []
    for i, step in enumerate(steps):
        [move] = timeline.poll(instance, step, onset + timedelta(seconds=10 * (i + 1)))
        moves.append(move.title)
        if i < len(steps) - 1:
            assert timeline.outcome() is None
    assert moves == [
        "registry: shadow none -> v2",
        "registry: challenger none -> v2; shadow v2 -> none; challenger weight 0 -> 10 %",
        "registry: challenger weight 10 -> 50 %",
        "registry: challenger v2 -> none; champion v1 -> v2; challenger weight 50 -> 0 %",
    ]
    assert timeline.outcome(in_progress=["promotion_job [v2]"]) is None
    outcome = timeline.outcome()
    assert outcome is not None and (outcome.result, outcome.version) == ("promoted", "v2")
    assert [timeline.seconds(e) for e in timeline.events] == [10.0, 20.0, 30.0, 40.0]


def test_a_candidate_that_leaves_every_role_is_retired(instance: dg.DagsterInstance) -> None:
    timeline = Timeline(datetime.now(UTC), state(champion="v1"))
    timeline.poll(instance, state(champion="v1", shadow="v2"))
    assert timeline.outcome() is None
    timeline.poll(instance, state(champion="v1"))
    outcome = timeline.outcome()
    assert outcome is not None and (outcome.result, outcome.version) == ("retired", "v2")
    assert "v1 is still champion" in outcome.reason
    # Without a candidate ever in a role nothing is decided, however long it waits.
    quiet = Timeline(datetime.now(UTC), state(champion="v1"))
    quiet.poll(instance, state(champion="v1"))
    assert quiet.outcome() is None


def test_registry_change_names_each_move() -> None:
    at = datetime(2027, 1, 1, tzinfo=UTC)
    assert registry_change(state(champion="v1"), state(champion="v1"), at) is None
    move = registry_change(state(champion="v1"), state(champion="v1", shadow="v2"), at)
    assert move is not None and move.title == "registry: shadow none -> v2"
    assert move.detail == "champion v1, shadow v2"


def test_read_registry_reads_a_real_mlflow_registry(tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert read_registry(uri) == RegistryState()  # no registered model yet
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("default_risk_model")
    for _ in range(2):
        client.create_model_version("default_risk_model", source=(tmp_path / "model").as_uri())
    client.set_registered_model_alias("default_risk_model", "champion", "1")
    client.set_registered_model_alias("default_risk_model", "challenger", "2")
    client.set_registered_model_tag("default_risk_model", "challenger_weight", "10.0")
    client.set_registered_model_tag("default_risk_model", "unrelated", "x")
    seen = read_registry(uri)
    assert seen == RegistryState({"champion": "v1", "challenger": "v2"}, {"challenger_weight": "10.0"})
    assert seen.role_of("v2") == "challenger" and seen.role_of("v3") is None
    assert seen.describe() == "challenger v2, champion v1; challenger weight 10 %"


def test_sensor_waits_are_each_sensors_newest_tick_since_onset(tmp_path: Path) -> None:
    # The daemon's records, written as it writes them: each sensor's state and its ticks.
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, TickData, TickStatus
    from dagster._utils.error import SerializableErrorInfo

    location = GrpcServerCodeLocationOrigin(host="localhost", port=4000, location_name="platform_assets")
    repository = RemoteRepositoryOrigin(location, "__repository__")
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:

        def tick(name: str, at: float, reason: str | None = None, error: str | None = None) -> None:
            state = InstigatorState(
                RemoteInstigatorOrigin(repository, name), InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE
            )
            if instance.get_instigator_state(state.instigator_origin_id, state.selector_id) is None:
                instance.add_instigator_state(state)
            instance.create_tick(
                TickData(
                    instigator_origin_id=state.instigator_origin_id,
                    instigator_name=name,
                    instigator_type=InstigatorType.SENSOR,
                    status=TickStatus.FAILURE if error else TickStatus.SKIPPED,
                    timestamp=at,
                    selector_id=state.selector_id,
                    skip_reason=reason,
                    error=SerializableErrorInfo(error, [], "OSError") if error else None,
                )
            )

        onset = datetime.now(UTC)
        now = onset.timestamp()
        tick("model_version_sensor", now - 60, "no new model version")  # before onset: not shown
        tick("canary_sensor", now + 1, "canary v2 at 10 %: waiting (only 40 of 200 labelled)")
        tick("canary_sensor", now + 2, "canary v2 at 10 %: waiting (only 90 of 200 labelled)")
        tick("accuracy_drop_sensor", now + 3, error="OSError: database is locked\nTraceback ...")
        assert sensor_waits(instance, onset) == {
            "canary_sensor": "canary v2 at 10 %: waiting (only 90 of 200 labelled)",
            "accuracy_drop_sensor": "tick failed: OSError: database is locked",
        }


def test_a_range_run_is_named_by_its_first_and_last_partition() -> None:
    start, end = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
    assert partitions_of({start: "2026-10-02", end: "2026-10-04"}) == "2026-10-02...2026-10-04"
    assert partitions_of({start: "2026-10-02", end: "2026-10-02"}) == "2026-10-02"
    assert partitions_of({"dagster/partition": "v3"}) == "v3"
    assert partitions_of({}) is None
