"""The rollout's moves: where a deployed version goes (shadow first on a canary), the gate's moves from shadow, and
the MLflow registry holding that state (aliases champion/challenger/shadow, weight, shadow share and since-tags)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from record_support import registry_without_artifacts

from platform_assets.core import registry as names
from platform_assets.deploy.rollout import RolloutPlan, plan_rollout, retire_shadow, start_canary


def test_a_first_deploy_and_a_replace_make_the_champion_and_retire_every_candidate() -> None:
    assert plan_rollout(None, "v1", "canary") == RolloutPlan("v1", None, 0.0, "first_deploy")
    current = RolloutPlan("v1", "v2", 50.0, "unchanged", shadow="v3")
    assert plan_rollout(current, "v4", "replace") == RolloutPlan("v4", None, 0.0, "replaced")
    # replace promotes the shadow too, when it is the version deployed
    assert plan_rollout(current, "v3", "replace") == RolloutPlan("v3", None, 0.0, "replaced")


def test_a_canary_starts_the_new_version_as_shadow_and_retires_a_running_challenger() -> None:
    serving = RolloutPlan("v1", None, 0.0, "unchanged")
    started = plan_rollout(serving, "v2", "canary", shadow_share=25.0)
    assert started == RolloutPlan("v1", None, 0.0, "shadow_started", shadow="v2", shadow_share=25.0)
    assert started.aliases() == {"champion": "v1", "shadow": "v2"}
    # A newer version while v2 is in its canary: v3 is the one candidate, v2 answers nobody any more.
    canary = RolloutPlan("v1", "v2", 10.0, "unchanged")
    assert plan_rollout(canary, "v3", "canary") == RolloutPlan("v1", None, 0.0, "shadow_started", shadow="v3")
    # ... and a newer shadow replaces the older one.
    assert plan_rollout(started, "v4", "canary").shadow == "v4"


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_redeploying_a_version_that_holds_a_role_changes_nothing(version: str) -> None:
    current = RolloutPlan("v1", "v2", 50.0, "unchanged", shadow="v3", shadow_share=40.0)
    again = plan_rollout(current, version, "canary")
    assert again.action == "unchanged" and again.aliases() == current.aliases()
    assert (again.challenger_weight, again.shadow_share) == (50.0, 40.0)


def test_the_gate_starts_the_shadows_canary_or_retires_it() -> None:
    shadowing = RolloutPlan("v1", None, 0.0, "shadow_started", shadow="v2")
    assert start_canary(shadowing, 10.0) == RolloutPlan("v1", "v2", 10.0, "canary_started")
    retired = retire_shadow(shadowing)
    assert retired == RolloutPlan("v1", None, 0.0, "shadow_retired") and retired.aliases() == {"champion": "v1"}
    # A shadow retired during a canary leaves the canary as it is.
    both = RolloutPlan("v1", "v2", 50.0, "unchanged", shadow="v3")
    assert retire_shadow(both) == RolloutPlan("v1", "v2", 50.0, "shadow_retired")
    with pytest.raises(ValueError, match=r"first canary weight must be in \(0, 100\]"):
        start_canary(shadowing, 0.0)
    with pytest.raises(ValueError, match="no shadow to start a canary with"):
        start_canary(RolloutPlan("v1", None, 0.0, "unchanged"), 10.0)
    with pytest.raises(ValueError, match="no shadow to retire"):
        retire_shadow(RolloutPlan("v1", None, 0.0, "unchanged"))


def test_a_plan_never_puts_one_version_in_two_roles_or_a_share_outside_percent() -> None:
    with pytest.raises(ValueError, match="a version holds at most one role: champion=v1 challenger=None shadow=v1"):
        RolloutPlan("v1", None, 0.0, "unchanged", shadow="v1")
    with pytest.raises(ValueError, match="at most one role"):
        RolloutPlan("v1", "v2", 10.0, "unchanged", shadow="v2")
    with pytest.raises(ValueError, match="shadow share must be within 0..100 percent, got 101"):
        RolloutPlan("v1", None, 0.0, "unchanged", shadow="v2", shadow_share=101)
    with pytest.raises(ValueError, match="challenger weight must be within 0..100 percent"):
        RolloutPlan("v1", "v2", -1.0, "unchanged")


# -- the registry holds the state -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real MLflow registry with versions 1..4 (no artifacts: only aliases and tags are exercised)."""
    return registry_without_artifacts(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def model_registry(registry_store: str) -> Any:
    """The module's registry with no alias and no registered-model tag."""
    from platform_assets.resources.mlflow import ModelRegistry

    model_registry = ModelRegistry(tracking_uri=registry_store, model_name=names.MODEL_NAME)
    client = model_registry.client()
    model = client.get_registered_model(names.MODEL_NAME)
    for alias in model.aliases:
        client.delete_registered_model_alias(names.MODEL_NAME, alias)
    for tag in model.tags:
        client.delete_registered_model_tag(names.MODEL_NAME, tag)
    return model_registry


def test_the_registry_moves_a_version_from_shadow_to_challenger_to_champion(model_registry: Any) -> None:
    assert model_registry.state() is None and model_registry.shadow_share() == names.DEFAULT_SHADOW_SHARE
    model_registry.apply(plan_rollout(None, "v1", "canary"))
    assert model_registry.state() == RolloutPlan("v1", None, 0.0, "unchanged")
    assert model_registry.shadow_started() is None

    before = datetime.now(UTC)
    model_registry.apply(plan_rollout(model_registry.state(), "v2", "canary", shadow_share=30.0))
    assert model_registry.aliases() == {"champion": "v1", "shadow": "v2"}
    assert model_registry.shadow_share() == 30.0 and model_registry.challenger_weight() == 0.0
    since = model_registry.shadow_started()
    assert since is not None and since >= before and model_registry.step_started() is None

    # A plan that keeps the same shadow (a canary step of another version, a redeploy) keeps its start.
    model_registry.apply(plan_rollout(model_registry.state(), "v2", "canary"))
    assert model_registry.shadow_started() == since and model_registry.shadow_share() == 30.0

    model_registry.apply(start_canary(model_registry.state(), 10.0))
    assert model_registry.aliases() == {"champion": "v1", "challenger": "v2"}
    assert (model_registry.challenger_weight(), model_registry.shadow_started()) == (10.0, None)
    assert model_registry.step_started() is not None

    model_registry.apply(RolloutPlan("v2", None, 0.0, "replaced"))
    assert model_registry.state() == RolloutPlan("v2", None, 0.0, "unchanged")


def test_the_registry_restores_a_previous_state_with_its_shadow(model_registry: Any) -> None:
    model_registry.apply(RolloutPlan("v1", None, 0.0, "first_deploy", shadow="v2", shadow_share=50.0))
    previous = (model_registry.aliases(), model_registry.challenger_weight(), model_registry.shadow_share())
    model_registry.apply(plan_rollout(model_registry.state(), "v3", "replace"))
    assert model_registry.aliases() == {"champion": "v3"} and model_registry.shadow_started() is None
    model_registry.restore(*previous)
    assert model_registry.aliases() == {"champion": "v1", "shadow": "v2"} and model_registry.shadow_share() == 50.0
    assert model_registry.shadow_started() is not None


def test_a_registry_edited_into_one_version_in_two_roles_is_named(model_registry: Any) -> None:
    names.set_alias(names.CHAMPION, 1, tracking_uri=model_registry.tracking_uri)
    names.set_alias(names.SHADOW, "v1", tracking_uri=model_registry.tracking_uri)
    with pytest.raises(ValueError, match="a version holds at most one role: champion=v1 challenger=None shadow=v1"):
        model_registry.state()
    with pytest.raises(ValueError, match="shadow share must be within 0..100 percent, got 150"):
        names.set_shadow_share(150, tracking_uri=model_registry.tracking_uri)
    names.set_shadow_share(12.5, tracking_uri=model_registry.tracking_uri)
    assert model_registry.shadow_share() == 12.5


def test_a_shadow_alias_removed_by_hand_has_no_start(model_registry: Any) -> None:
    model_registry.apply(RolloutPlan("v1", None, 0.0, "shadow_started", shadow="v2"))
    assert model_registry.shadow_started() is not None
    names.remove_alias(names.SHADOW, tracking_uri=model_registry.tracking_uri)  # the runbook's way
    assert model_registry.shadow_started() is None and model_registry.state() == RolloutPlan(
        "v1", None, 0.0, "unchanged"
    )
