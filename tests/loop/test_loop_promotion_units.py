"""The promotion gate's assets and sensor on a real inference log (shadow pairs) and a real MLflow registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from loop_support import FakeRegistry, empty_log, lake_at, log_shadowed, monitoring
from record_support import registry_without_artifacts
from sensor_support import evaluate_sensor

from platform_assets.core import lake_keys
from platform_assets.core.registry import MODEL_NAME, RETIRED_TAG
from platform_assets.dataplane import partitions
from platform_assets.definitions import defs
from platform_assets.defs.promotion.assets import promotion_decision, shadow_comparison
from platform_assets.defs.promotion.sensors import promotion_sensor
from platform_assets.deploy.rollout import RolloutPlan
from platform_assets.partitions import model_versions
from platform_assets.resources.deployer import ServiceDeployer
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.signer import ModelSigner

#: The gate of these tests: 300 labelled pairs and 300 shadow predictions, the default margin.
GATE = {"promotion_min_labelled": 300, "promotion_shadow_min_predictions": 300}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tracking_uri=registry_without_artifacts(tmp_path, versions=3), model_name=MODEL_NAME)


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    empty_log(url)
    return url


def signer(tmp_path: Path) -> ModelSigner:
    """The local demo signer; its key pair made as the manifest signing of a release makes it."""
    made = ModelSigner(demo_key_dir=str(tmp_path / "keys"))
    made.signing_key()
    return made


def gate(tmp_path: Path, db: str, registry: ModelRegistry, version: str, **config: Any) -> dict[str, Any]:
    """``promotion_job``'s two assets for ``version``; the decision's metadata as plain values."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(model_versions.name, [version])
    result = dg.materialize(
        [shadow_comparison, promotion_decision],
        partition_key=version,
        instance=instance,
        resources={
            "lake": lake_at(tmp_path / "lake"),
            "model_registry": registry,
            "live_monitoring": monitoring(db, **GATE),
            # No local service to wait for; no auto-approval: the step to champion needs a person.
            "deployer": ServiceDeployer(
                target="kubernetes",
                platform_home=str(tmp_path),
                tracking_uri=registry.tracking_uri,
                auto_approve_local=False,
            ),
            "model_signer": signer(tmp_path),
        },
        run_config={"ops": {"promotion_decision": {"config": config}}} if config else None,
    )
    [m] = result.asset_materializations_for_node("promotion_decision")
    return {k: v.value for k, v in m.metadata.items()}


def test_an_equal_shadow_passes_its_gate_and_starts_the_canary(tmp_path: Path, db: str, registry: Any) -> None:
    registry.apply(RolloutPlan("v1", None, 0.0, "shadow_started", shadow="v2"))
    log_shadowed(db, "v1", "v2", 4000, champion_quality=2.0, shadow_quality=2.0, seed=1)
    decision = gate(tmp_path, db, registry, "v2", expected_stage="shadow_to_canary")
    assert (decision["stage"], decision["verdict"], decision["action"]) == (
        "shadow_to_canary",
        "pass",
        "canary_started",
    )
    assert decision["inputs"]["auc"]["method"] == "delong_paired" and decision["inputs"]["labelled"] == 4000
    assert decision["auc_ci_low"] > -0.02 and decision["thresholds"]["min_labelled"] == 300
    assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v1", "challenger": "v2"}, 10.0)


def test_a_worse_shadow_fails_and_retires_never_having_decided(tmp_path: Path, db: str, registry: Any) -> None:
    registry.apply(RolloutPlan("v1", None, 0.0, "shadow_started", shadow="v3"))
    log_shadowed(db, "v1", "v3", 3000, champion_quality=2.5, shadow_quality=0.3, seed=2)
    decision = gate(tmp_path, db, registry, "v3")
    assert (decision["verdict"], decision["action"]) == ("fail", "retired"), decision["reasons"]
    assert any("worse beyond" in r for r in decision["reasons"]), decision["reasons"]
    assert registry.aliases() == {"champion": "v1"}
    assert registry.client().get_model_version(MODEL_NAME, "3").tags.get(RETIRED_TAG)


def test_too_few_outcomes_hold_and_say_how_many(tmp_path: Path, db: str, registry: Any) -> None:
    registry.apply(RolloutPlan("v1", None, 0.0, "shadow_started", shadow="v2"))
    log_shadowed(db, "v1", "v2", 1000, champion_quality=2.0, shadow_quality=2.0, labelled=120, seed=3)
    decision = gate(tmp_path, db, registry, "v2")
    assert (decision["verdict"], decision["action"]) == ("hold", "held")
    assert "insufficient sample (120 of 300)" in decision["reasons"]
    assert registry.aliases() == {"champion": "v1", "shadow": "v2"}


def test_the_step_to_champion_holds_without_an_approval(tmp_path: Path, db: str, registry: Any) -> None:
    registry.apply(RolloutPlan("v1", None, 0.0, "shadow_started", shadow="v2"))
    log_shadowed(db, "v1", "v2", 4000, champion_quality=2.0, shadow_quality=2.0, seed=4)
    registry.apply(RolloutPlan("v1", "v2", 10.0, "canary_started"))
    early = gate(tmp_path, db, registry, "v2", expected_stage="canary_to_champion")
    assert early["verdict"] == "hold" and any("steps" in r for r in early["reasons"]), early["reasons"]
    registry.apply(RolloutPlan("v1", "v2", 50.0, "canary_started"))
    decision = gate(tmp_path, db, registry, "v2", expected_stage="canary_to_champion")
    assert (decision["stage"], decision["verdict"]) == ("canary_to_champion", "hold"), decision["reasons"]
    assert any("awaiting a valid approval" in r and "platform_assets.approve v2" in r for r in decision["reasons"])
    assert decision["approval"]["state"] == "missing"
    assert (registry.aliases(), registry.challenger_weight()) == ({"champion": "v1", "challenger": "v2"}, 50.0)
    # The sensor judged another stage: nothing is decided.
    stale = gate(tmp_path, db, registry, "v2", expected_stage="shadow_to_canary")
    assert stale["action"] == "none"


def test_the_sensor_asks_for_the_gate_when_the_evidence_suffices_and_grew(tmp_path: Path, db: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(model_versions.name, ["v2"])
    definitions = defs()
    lake = lake_at(tmp_path / "lake")

    def tick(cursor: str | None = None, **aliases: str) -> Any:
        resources = {
            "model_registry": FakeRegistry(current=aliases),
            "live_monitoring": monitoring(db, **GATE),
            "lake": lake,
        }
        return evaluate_sensor(promotion_sensor, definitions, instance, cursor, resources)

    assert "no shadow" in tick(champion="v1").skip_message
    log_shadowed(db, "v1", "v2", 200, champion_quality=2.0, shadow_quality=2.0, labelled=100, seed=5)
    assert "200 of 300 predictions, 100 of 300 labelled" in tick(champion="v1", shadow="v2").skip_message
    log_shadowed(db, "v1", "v2", 400, champion_quality=2.0, shadow_quality=2.0, seed=6)
    asked = tick(champion="v1", shadow="v2")
    [request] = asked.run_requests
    assert (request.job_name, request.partition_key) == ("promotion_job", "v2")
    assert request.run_config["ops"]["promotion_decision"]["config"] == {"expected_stage": "shadow_to_canary"}
    again = tick(asked.cursor, champion="v1", shadow="v2")
    assert not again.run_requests and "no new evidence" in again.skip_message


def test_the_sensor_asks_one_portfolio_run_per_version_and_range_of_unscored_days(tmp_path: Path, db: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(model_versions.name, ["v2"])
    lake = lake_at(tmp_path / "lake")
    store = lake.executor_store()
    # Committed tensor days with a gap: the newest PORTFOLIO_DAYS (3) are the 2nd, the 3rd and the 5th.
    for day in ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-05"]:
        partitions.write_partition(store, lake_keys.tensors(day), [pd.DataFrame({"ID": [1]})])
    # v1 already has scores of the 3rd: only its 2nd and 5th are asked for.
    partitions.write_partition(store, lake_keys.portfolio_scores("v1", "2026-10-03"), [pd.DataFrame({"ID": [1]})])
    resources = {"model_registry": FakeRegistry(current={"champion": "v1", "shadow": "v2"}), "lake": lake}
    resources["live_monitoring"] = monitoring(db, **GATE)

    asked = evaluate_sensor(promotion_sensor, defs(), instance, None, resources)
    ranges = {
        (r.tags["loop/model_version"], r.partition_key_range.start, r.partition_key_range.end)
        for r in asked.run_requests
        if r.job_name == "portfolio_scoring_job" and r.partition_key_range is not None
    }
    assert ranges == {
        ("v1", "2026-10-02", "2026-10-02"),
        ("v1", "2026-10-05", "2026-10-05"),
        ("v2", "2026-10-02", "2026-10-03"),
        ("v2", "2026-10-05", "2026-10-05"),
    }
    assert len(asked.run_requests) == 4 and all(r.partition_key is None for r in asked.run_requests)
    [v2_range] = [r for r in asked.run_requests if r.run_key == "portfolio-v2-2026-10-02-2026-10-03"]
    assert v2_range.run_config["ops"]["portfolio_scores"]["config"] == {"model_version": "v2"}
    # Asked once: the next tick asks for none of those days again, though none is committed yet.
    again = evaluate_sensor(promotion_sensor, defs(), instance, asked.cursor, resources)
    assert not [r for r in again.run_requests or [] if r.job_name == "portfolio_scoring_job"]


def test_the_gate_waits_for_the_portfolio_runs_it_asked_for(tmp_path: Path, db: str) -> None:
    """Enough live evidence, but the past days' scores are just being asked for: the gate is asked for only
    once no portfolio_scoring_job run is in progress, so it judges the portfolio shift too."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(model_versions.name, ["v2"])
    lake = lake_at(tmp_path / "lake")
    partitions.write_partition(lake.executor_store(), lake_keys.tensors("2026-10-01"), [pd.DataFrame({"ID": [1]})])
    resources = {"model_registry": FakeRegistry(current={"champion": "v1", "shadow": "v2"}), "lake": lake}
    resources["live_monitoring"] = monitoring(db, **GATE)
    log_shadowed(db, "v1", "v2", 600, champion_quality=2.0, shadow_quality=2.0, seed=7)

    asked = evaluate_sensor(promotion_sensor, defs(), instance, None, resources)
    assert {r.job_name for r in asked.run_requests} == {"portfolio_scoring_job"}
    # One of the requested runs is running: the gate waits.
    instance.create_run_for_job(defs().resolve_job_def("portfolio_scoring_job"), status=dg.DagsterRunStatus.STARTED)
    waiting = evaluate_sensor(promotion_sensor, defs(), instance, asked.cursor, resources)
    assert not waiting.run_requests and "waiting for portfolio_scoring_job runs" in waiting.skip_message
    # It ended (here: it failed and nothing will ask for its days again): the gate is asked for.
    [queued] = instance.get_runs()
    instance.report_run_failed(queued)
    gated = evaluate_sensor(promotion_sensor, defs(), instance, asked.cursor, resources)
    [request] = gated.run_requests
    assert (request.job_name, request.partition_key) == ("promotion_job", "v2")
