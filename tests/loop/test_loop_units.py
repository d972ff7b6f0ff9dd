"""Pure pieces of the loop: live metrics, the drop test, canary stepping/rollback, the A/B statistics, the
replay tool; and the monitoring assets on a real inference log and MLflow registry."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest
from loop_support import empty_log, lake_at, log_outcomes, monitoring, publish_validation

from platform_assets.ml import live_metrics, schema
from platform_assets.ml.live_metrics import CanaryPolicy, DropPolicy, canary_decision, quality_breach
from platform_assets.replay import apply_shift, replay, synthetic_source
from platform_assets.serving.inference_log import read_predictions

GOOD = {"labelled": 300, "accuracy": 0.82, "roc_auc": 0.78, "brier": 0.14}


def q(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


# -- live metrics ------------------------------------------------------------------------------------
def test_live_performance_per_version_role_and_group(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    log_outcomes(db, "v1", 400, quality=3.0, seed=1)
    log_outcomes(db, "v2", 200, quality=0.0, role="challenger", labelled=120, seed=2)
    document = live_metrics.live_performance(read_predictions(db), min_group_size=30)
    v1, v2 = document["versions"]["v1"], document["versions"]["v2"]
    assert (document["predictions"], document["labelled"]) == (600, 520)
    assert (v1["labelled"], v2["labelled"], v2["predictions"]) == (400, 120, 200)
    assert v1["roc_auc"] > 0.9 > 0.65 > v2["roc_auc"]
    assert v1["accuracy"] > v2["accuracy"] and 0 <= v1["brier"] < v2["brier"]
    assert set(v2["roles"]) == {"challenger"} and v2["roles"]["challenger"]["labelled"] == 120
    assert set(v1["groups"]) == {"sex", "education", "marriage", "age"}
    assert set(v1["groups"]["sex"]) == {"male", "female"}
    assert all(g["labelled"] >= 30 for g in v1["groups"]["age"].values())
    assert "| v1 | champion | 400 | 400 |" in live_metrics.versions_table(document)


def test_quality_of_one_class_has_no_auc() -> None:
    result = live_metrics.quality(np.zeros(5), np.full(5, 0.1), np.zeros(5, dtype=bool))
    assert result["roc_auc"] is None and result["accuracy"] == 1.0
    assert live_metrics.quality(np.array([]), np.array([]), np.array([]))["labelled"] == 0


# -- the drop test -----------------------------------------------------------------------------------
def test_relative_drop_against_validation() -> None:
    policy = DropPolicy()
    assert quality_breach(q(roc_auc=0.76), {"roc_auc": 0.80, "accuracy": 0.82}, policy) == []
    [reason] = quality_breach(q(roc_auc=0.70), {"roc_auc": 0.80, "accuracy": 0.82}, policy)
    assert "0.1000 below validation 0.8000" in reason
    with pytest.raises(ValueError, match="validation metrics"):
        quality_breach(q(), None, policy)
    with pytest.raises(ValueError, match="only 100 of the 200"):
        quality_breach(q(labelled=100), {"roc_auc": 0.8}, policy)


def test_absolute_floor_and_either() -> None:
    assert quality_breach(q(accuracy=0.80), None, DropPolicy(mode="absolute")) == [
        "live accuracy 0.8000 < floor 0.8500"
    ]
    assert quality_breach(q(accuracy=0.90), None, DropPolicy(mode="absolute")) == []
    both = quality_breach(q(accuracy=0.60, roc_auc=0.6), {"roc_auc": 0.8, "accuracy": 0.82}, DropPolicy(mode="either"))
    assert len(both) == 3
    with pytest.raises(ValueError, match="drop mode"):
        DropPolicy(mode="sometimes")  # type: ignore[arg-type]


# -- canary stepping and rollback ---------------------------------------------------------------------
def test_canary_steps_10_50_then_promotes() -> None:
    policy = CanaryPolicy()
    at_10 = canary_decision(10, q(), q(roc_auc=0.77), policy)
    assert (at_10.action, at_10.from_weight, at_10.to_weight) == ("step", 10.0, 50.0)
    at_50 = canary_decision(50, q(), q(), policy)
    assert (at_50.action, at_50.to_weight) == ("promote", 100.0)
    assert at_50.measured["challenger_labelled"] == 300
    # A weight already at 100 % (set by hand): the champion gets no traffic, so only the challenger counts.
    assert canary_decision(100, q(labelled=0), q(), policy).action == "promote"
    custom = CanaryPolicy(steps=(5.0, 25.0, 75.0))
    assert [live_metrics.next_weight(w, custom.steps) for w in (0, 5, 25, 75)] == [5.0, 25.0, 75.0, 100.0]


def test_canary_waits_for_both_samples() -> None:
    wait = canary_decision(10, q(labelled=150), q(labelled=20), CanaryPolicy())
    assert wait.action == "wait" and wait.to_weight == 10
    assert wait.reasons == [
        "challenger has 20 of 200 labelled outcomes",
        "champion has 150 of 200 labelled outcomes",
    ]


@pytest.mark.parametrize(
    ("challenger", "error_rate", "requests", "why"),
    [
        (q(roc_auc=0.70), None, 0, "ROC AUC 0.7000 is 0.0800 below the champion's"),
        (q(accuracy=0.75), None, 0, "accuracy 0.7500 is 0.0700 below the champion's"),
        (q(), 0.05, 400, "server error rate 0.0500 > 0.0100 over 400"),
        (q(labelled=3), 0.5, 100, "server error rate"),  # errors need no labelled sample
    ],
)
def test_canary_rolls_back_on_a_breach(challenger: dict[str, Any], error_rate: Any, requests: int, why: str) -> None:
    decision = canary_decision(50, q(), challenger, CanaryPolicy(), error_rate, requests)
    assert (decision.action, decision.to_weight) == ("rollback", 0.0)
    assert why in decision.reasons[0]


def test_canary_ignores_error_rate_of_too_few_requests() -> None:
    assert canary_decision(10, q(), q(), CanaryPolicy(), error_rate=1.0, requests=3).action == "step"


def test_canary_policy_validates_steps() -> None:
    for steps in ((), (50.0, 10.0), (10.0, 150.0), (0.0, 50.0)):
        with pytest.raises(ValueError, match="canary steps"):
            CanaryPolicy(steps=steps)


# -- A/B statistics and /metrics ---------------------------------------------------------------------
def test_compare_versions_finds_a_clearly_better_version(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    log_outcomes(db, "v1", 500, quality=0.5, seed=1)
    log_outcomes(db, "v2", 500, quality=3.0, role="challenger", seed=2)
    frame = read_predictions(db)
    result = live_metrics.compare_versions(frame[frame.model_version == "v1"], frame[frame.model_version == "v2"])
    assert result["roc_auc_difference"] > 0.2 and result["roc_auc_p_value"] < 1e-6
    assert result["verdict"] == "b is better on roc auc (p < 0.05)"
    same = live_metrics.compare_versions(frame[frame.model_version == "v1"], frame[frame.model_version == "v1"])
    assert same["verdict"] == "no significant difference" and same["roc_auc_p_value"] == pytest.approx(1.0)


def test_hanley_mcneil_standard_error() -> None:
    # Hanley & McNeil (1982), table: AUC 0.8 with 50 positives and 50 negatives -> SE about 0.044.
    assert live_metrics.auc_standard_error(0.8, 50, 50) == pytest.approx(0.0438, abs=0.001)


METRICS_TEXT = """# HELP credit_risk_requests_total Requests handled
# TYPE credit_risk_requests_total counter
credit_risk_requests_total{endpoint="/predict",status="200"} 95.0
credit_risk_requests_total{endpoint="/predict",status="503"} 4.0
credit_risk_requests_total{endpoint="/predict",status="422"} 1.0
credit_risk_requests_total{endpoint="/feedback",status="500"} 7.0
"""


def test_server_error_share_from_metrics() -> None:
    counts = live_metrics.predict_request_counts(METRICS_TEXT)
    assert counts == (100, 4)
    assert live_metrics.server_error_share(counts, None) == (0.04, 100)
    assert live_metrics.server_error_share(counts, (80, 4)) == (0.0, 20)
    assert live_metrics.server_error_share(counts, (500, 9)) == (0.04, 100)  # restarted: counters reset
    assert live_metrics.server_error_share((0, 0), None) == (None, 0)


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
        "deployer": ServiceDeployer(target="kubernetes"),  # no local service to confirm with
    }
    run_config = {"ops": {"canary_decision": {"config": config}}} if config else None
    return dg.materialize([canary_decision], resources=resources, run_config=run_config, raise_on_error=False)


def test_canary_decision_steps_promotes_and_rolls_back_in_the_registry(tmp_path: Path, registry: Any) -> None:
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

    # The step began now: the outcomes logged before it no longer count, so the next run waits.
    waiting = run_canary(tmp_path, db, registry)
    [m] = waiting.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "wait" and registry.challenger_weight() == 50.0

    # The sensor judged an older state: nothing changes.
    stale = run_canary(tmp_path, db, registry, expected_challenger="v2", expected_weight=10.0)
    [m] = stale.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "none" and registry.challenger_weight() == 50.0

    log_outcomes(db, "v1", 200, quality=2.0, seed=3)
    log_outcomes(db, "v2", 200, quality=2.0, role="challenger", seed=4)
    promote = run_canary(tmp_path, db, registry)
    [m] = promote.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "promote" and m.metadata["champion"].value == "v2"
    assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v2"}, 0.0)

    # A worse challenger v3 is rolled back: weight 0, alias removed, champion unchanged, the reason kept.
    registry.apply(RolloutPlan("v2", "v3", 10.0, "canary_started"))
    log_outcomes(db, "v2", 200, quality=3.0, seed=5)
    log_outcomes(db, "v3", 200, quality=0.0, role="challenger", seed=6)
    rollback = run_canary(tmp_path, db, registry)
    [m] = rollback.asset_materializations_for_node("canary_decision")
    assert m.metadata["action"].value == "rollback" and "below the champion's" in m.metadata["reasons"].value[0]
    assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v2"}, 0.0)
    state = json.loads(lake_at(tmp_path / "lake").read_text("monitoring/canary.json"))
    assert [h["action"] for h in state["history"]] == ["step", "wait", "promote", "rollback"]


def test_canary_decision_can_be_forced_by_an_operator(tmp_path: Path, registry: Any) -> None:
    from platform_assets.deploy.rollout import RolloutPlan

    db = f"sqlite:///{tmp_path / 'log.db'}"
    empty_log(db)
    registry.apply(RolloutPlan("v1", "v2", 10.0, "canary_started"))
    bad = run_canary(tmp_path, db, registry, force="maybe")
    assert not bad.success and registry.challenger_weight() == 10.0
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


def test_frame_quality_ignores_unlabelled_rows() -> None:
    frame = pd.DataFrame(
        {
            "probability": [0.9, 0.1, 0.8],
            "decision": ["decline", "approve", "decline"],
            "defaulted": pd.array([1, 0, None], dtype="Int64"),
        }
    )
    assert live_metrics.frame_quality(frame)["labelled"] == 2


LATENCY_METRICS_TEXT = """# HELP credit_risk_request_latency_seconds latency
# TYPE credit_risk_request_latency_seconds histogram
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="0.005"} 90.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="0.05"} 98.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="1.0"} 100.0
credit_risk_request_latency_seconds_bucket{endpoint="/predict",le="+Inf"} 100.0
credit_risk_request_latency_seconds_count{endpoint="/predict"} 100.0
credit_risk_request_latency_seconds_sum{endpoint="/predict"} 2.0
credit_risk_request_latency_seconds_bucket{endpoint="/feedback",le="+Inf"} 7.0
"""


def test_latency_p99_is_read_from_the_histogram_since_the_step_began() -> None:
    now = live_metrics.predict_latency_buckets(LATENCY_METRICS_TEXT)
    assert now["+Inf"] == 100.0 and "/feedback" not in str(now)
    assert live_metrics.latency_quantile(now, None) == 1.0  # 98 of 100 under 50 ms: the 99th is in (0.05, 1]
    baseline = {"0.005": 50.0, "0.05": 50.0, "1.0": 50.0, "+Inf": 50.0}
    assert live_metrics.latency_quantile(now, baseline) == 1.0
    fast = {"0.005": 90.0, "0.05": 90.0, "1.0": 90.0, "+Inf": 90.0}
    assert live_metrics.latency_quantile(fast, None) == 0.005
    assert live_metrics.latency_quantile(fast, fast) is None, "no requests since the baseline"


def test_a_slow_step_rolls_the_canary_back() -> None:
    quality = {"labelled": 500, "accuracy": 0.8, "roc_auc": 0.78, "brier": 0.15}
    policy = live_metrics.CanaryPolicy(max_p99_seconds=0.25, min_requests=20)
    slow = live_metrics.canary_decision(10.0, quality, quality, policy, error_rate=0.0, requests=100, p99_seconds=1.0)
    assert slow.action == "rollback" and "p99" in slow.reasons[0]
    fine = live_metrics.canary_decision(10.0, quality, quality, policy, error_rate=0.0, requests=100, p99_seconds=0.05)
    assert fine.action != "rollback"
