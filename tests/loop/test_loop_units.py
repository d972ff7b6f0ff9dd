"""The replay tool, and the monitoring assets on a real inference log and MLflow registry. The pure pieces
they wrap have their own tests: test_loop_live_quality, test_loop_canary, test_loop_ab_comparison and
test_loop_service_metrics."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from loop_support import empty_log, lake_at, log_outcomes, monitoring, publish_validation

from platform_assets.core.registry import MODEL_NAME, RETIRED_TAG
from platform_assets.ml import schema
from platform_assets.replay import apply_shift, replay, synthetic_source


# -- replay ------------------------------------------------------------------------------------------
def test_shift_degrades_the_signal_and_keeps_rows_valid() -> None:
    frame = synthetic_source(2000, 5, date(2027, 1, 1))
    shifted = apply_shift(frame, 0.5, seed=3)
    changed = (shifted["PAY_0"] != frame["PAY_0"]) | (shifted["BILL_AMT1"] != frame["BILL_AMT1"])
    assert 0.4 < changed.mean() <= 0.55
    assert shifted["PAY_0"].between(-2, 8).all() and (shifted[schema.ID] == frame[schema.ID]).all()
    delayed = shifted["PAY_0"] >= 2
    # Among the late payers, the shifted ones default at the base rate: the old signal no longer holds.
    assert shifted.loc[delayed & changed, schema.TARGET].mean() < frame.loc[frame["PAY_0"] >= 2, schema.TARGET].mean()
    assert apply_shift(frame, 0.0).equals(frame)
    with pytest.raises(ValueError, match="0..1"):
        apply_shift(frame, 1.5)


def test_replay_sends_predictions_then_feedback_with_the_right_keys() -> None:
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.path, request.headers["authorization"], body))
        if request.url.path == "/predict":
            apps = body["applications"]
            return httpx.Response(
                200,
                json={
                    "predictions": [
                        {"prediction_id": f"p{a['ID']}", "model_version": "v1", "role": "champion"} for a in apps
                    ]
                },
            )
        return httpx.Response(200, json={"stored": len(body["outcomes"])})

    frame = synthetic_source(25, 1, date(2027, 1, 1))
    client = httpx.Client(base_url="http://service", transport=httpx.MockTransport(handler))
    stats = replay("http://service", frame, "pk", "fk", rate=10_000, batch_size=10, feedback_delay=0.05, client=client)
    assert (stats.sent, stats.predict_failures, stats.feedback_sent, stats.feedback_failures) == (25, 0, 25, 0)
    assert stats.by_version == {"v1": 25}
    assert [p for p, _, _ in seen].count("/predict") == 3
    assert {k for p, k, _ in seen if p == "/predict"} == {"Bearer pk"}
    assert {k for p, k, _ in seen if p == "/feedback"} == {"Bearer fk"}
    outcomes = [o for p, _, b in seen if p == "/feedback" for o in b["outcomes"]]
    expected = dict(zip(frame[schema.ID], frame[schema.TARGET], strict=True))
    assert all(o["defaulted"] == expected[int(o["prediction_id"][1:])] for o in outcomes)
    assert all(schema.TARGET not in a for p, _, b in seen if p == "/predict" for a in b["applications"])


def test_replay_counts_failures_and_is_bounded_in_time() -> None:
    client = httpx.Client(base_url="http://s", transport=httpx.MockTransport(lambda r: httpx.Response(503, text="x")))
    frame = synthetic_source(40, 1, date(2027, 1, 1))
    stats = replay("http://s", frame, "k", "k", rate=20, batch_size=10, max_seconds=0.3, client=client)
    assert stats.sent < 40 and stats.predict_failures == stats.sent and stats.feedback_sent == 0
    assert "/predict 503" in stats.errors[0]


# -- the assets ----------------------------------------------------------------------------------------
def test_live_model_performance_writes_the_lake_document(tmp_path: Path) -> None:
    from platform_assets.defs.monitoring.assets import LIVE_PERFORMANCE_KEY, live_model_performance

    db = f"sqlite:///{tmp_path / 'log.db'}"
    log_outcomes(db, "v1", 300, quality=3.0)
    lake = lake_at(tmp_path / "lake")
    publish_validation(lake, "v1", roc_auc=0.91)
    result = dg.materialize([live_model_performance], resources={"lake": lake, "live_monitoring": monitoring(db)})
    [materialization] = result.asset_materializations_for_node("live_model_performance")
    assert materialization.metadata["labelled"].value == 300
    assert 0.9 < materialization.metadata["v1/roc_auc"].value <= 1.0
    document = json.loads(lake.read_text(LIVE_PERFORMANCE_KEY))
    assert document["versions"]["v1"]["validation_metrics"]["roc_auc"] == 0.91
    assert document["window_hours"] == 24.0


def test_live_model_performance_without_a_log_fails_clearly(tmp_path: Path) -> None:
    from platform_assets.defs.monitoring.assets import live_model_performance

    db = f"sqlite:///{tmp_path / 'missing' / 'log.db'}"
    result = dg.materialize(
        [live_model_performance],
        resources={"lake": lake_at(tmp_path / "lake"), "live_monitoring": monitoring(db)},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "no prediction was logged yet" in failure.step_failure_data.error.message


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    """A real MLflow registry with versions 1..3 (no artifacts: only aliases and tags are exercised)."""
    import mlflow

    from platform_assets.resources.mlflow import ModelRegistry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("default_risk_model")
    for _ in range(3):
        client.create_model_version("default_risk_model", source=(tmp_path / "model").as_uri())
    return ModelRegistry(tracking_uri=uri, model_name="default_risk_model")


def run_canary(tmp_path: Path, db: str, registry: Any, **config: Any) -> dg.ExecuteInProcessResult:
    from platform_assets.defs.monitoring.assets import canary_decision
    from platform_assets.resources.deployer import ServiceDeployer

    resources = {
        "lake": lake_at(tmp_path / "lake"),
        "model_registry": registry,
        "live_monitoring": monitoring(
            db, canary_min_labelled=100, canary_max_auc_drop=0.1, canary_max_accuracy_drop=0.1
        ),
        # No local service to confirm with.
        "deployer": ServiceDeployer(
            target="kubernetes", platform_home=str(tmp_path), tracking_uri=registry.tracking_uri
        ),
    }
    run_config = {"ops": {"canary_decision": {"config": config}}} if config else None
    return dg.materialize([canary_decision], resources=resources, run_config=run_config, raise_on_error=False)


def test_canary_decision_steps_hands_over_and_rolls_back_in_the_registry(tmp_path: Path, registry: Any) -> None:
    from platform_assets.deploy.rollout import RolloutPlan

    db = f"sqlite:///{tmp_path / 'log.db'}"
    empty_log(db)
    registry.apply(RolloutPlan("v1", "v2", 10.0, "canary_started"))
    log_outcomes(db, "v1", 200, quality=2.0, seed=1)
    log_outcomes(db, "v2", 200, quality=2.0, role="challenger", seed=2)

    step = run_canary(tmp_path, db, registry, expected_challenger="v2", expected_weight=10.0)
    [m] = step.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "step" and m.metadata["to_weight_percent"].value == 50.0
    assert m.metadata["thresholds"].value["min_labelled"] == 100
    assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v1", "challenger": "v2"}, 50.0)

    # The step began now (the registry records it): the outcomes logged before it no longer count, so the next
    # run waits.
    started = registry.step_started()
    assert started is not None and (datetime.now(UTC) - started).total_seconds() < 60
    waiting = run_canary(tmp_path, db, registry)
    [m] = waiting.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "wait" and registry.challenger_weight() == 50.0

    # The sensor judged an older state: nothing changes.
    stale = run_canary(tmp_path, db, registry, expected_challenger="v2", expected_weight=10.0)
    [m] = stale.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "none" and registry.challenger_weight() == 50.0

    log_outcomes(db, "v1", 200, quality=2.0, seed=3)
    log_outcomes(db, "v2", 200, quality=2.0, role="challenger", seed=4)
    # The last step held: the canary hands the challenger to the promotion gate and changes nothing itself.
    last = run_canary(tmp_path, db, registry)
    [m] = last.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "wait" and "promotion_job for v2" in m.metadata["reasons"].value[-1]
    assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v1", "challenger": "v2"}, 50.0)
    registry.apply(RolloutPlan("v2", None, 0.0, "replaced"))  # what a passed promotion gate does

    # A worse challenger v3 is rolled back: weight 0, alias removed, champion unchanged, the reason kept.
    registry.apply(RolloutPlan("v2", "v3", 10.0, "canary_started"))
    log_outcomes(db, "v2", 200, quality=3.0, seed=5)
    log_outcomes(db, "v3", 200, quality=0.0, role="challenger", seed=6)
    rollback = run_canary(tmp_path, db, registry)
    [m] = rollback.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "rollback" and "below the champion's" in m.metadata["reasons"].value[0]
    assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v2"}, 0.0)
    assert registry.client().get_model_version(MODEL_NAME, "3").tags.get(RETIRED_TAG), "a rolled-back version retires"
    # The rollout's state is the registry's alone: no challenger, no step; no state file in the lake.
    assert registry.step_started() is None
    assert not lake_at(tmp_path / "lake").exists("monitoring/canary.json")


def test_canary_decision_can_be_forced_by_an_operator(tmp_path: Path, registry: Any) -> None:
    from platform_assets.deploy.rollout import RolloutPlan

    db = f"sqlite:///{tmp_path / 'log.db'}"
    empty_log(db)
    registry.apply(RolloutPlan("v1", "v2", 10.0, "canary_started"))
    bad = run_canary(tmp_path, db, registry, force="maybe")
    assert not bad.success and registry.challenger_weight() == 10.0
    promote = run_canary(tmp_path, db, registry, force="promote")  # only through the promotion gate
    assert not promote.success and registry.aliases() == {"champion": "v1", "challenger": "v2"}
    forced = run_canary(tmp_path, db, registry, force="rollback")
    [m] = forced.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "rollback" and registry.aliases() == {"champion": "v1"}


def test_ab_comparison_report_compares_and_can_end_the_split(tmp_path: Path, registry: Any) -> None:
    from platform_assets.defs.monitoring.assets import AB_REPORT_KEY, ab_comparison_report
    from platform_assets.deploy.rollout import RolloutPlan

    db = f"sqlite:///{tmp_path / 'log.db'}"
    registry.apply(RolloutPlan("v1", "v2", 10.0, "canary_started"))
    log_outcomes(db, "v1", 400, quality=0.5, seed=1)
    log_outcomes(db, "v2", 400, quality=3.0, role="challenger", seed=2)
    lake = lake_at(tmp_path / "lake")
    result = dg.materialize(
        [ab_comparison_report],
        resources={"lake": lake, "model_registry": registry, "live_monitoring": monitoring(db)},
        run_config={"ops": {"ab_comparison_report": {"config": {"end_test": True}}}},
    )
    [m] = result.asset_materializations_for_node("ab_comparison_report")
    assert m.metadata["verdict"].value == "b is better on roc auc (p < 0.05)"
    assert m.metadata["roc_auc_p_value"].value < 0.001 and "| ROC AUC |" in m.metadata["comparison"].value
    report = json.loads(lake.read_text(AB_REPORT_KEY))
    assert report["version_a"] == "v1" and report["version_b"] == "v2" and report["ended"]
    assert registry.aliases() == {"champion": "v1"} and registry.challenger_weight() == 0.0
