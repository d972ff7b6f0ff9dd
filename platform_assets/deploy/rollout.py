"""Which model versions the registry aliases should name after a deployment or a gate: pure decisions.

A rollout moves a new version through the roles of ``core.registry``: on ``canary`` it first serves as the
``shadow`` (it scores served applications, decides none), a gate then starts its canary as ``challenger`` at the
first weight (``start_canary``) or retires it (``retire_shadow``), and the canary's steps end in a promotion to
``champion`` or a rollback. ``replace`` and a first deployment make it the champion at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from platform_assets.core import registry

Strategy = Literal["replace", "canary"]
Action = Literal["first_deploy", "unchanged", "replaced", "canary_started", "shadow_started", "shadow_retired"]


@dataclass(frozen=True)
class RolloutPlan:
    """Registry state to reach. Weights and shares are percent of application IDs: ``challenger_weight`` of the
    traffic the challenger answers, ``shadow_share`` of the served applications the shadow also scores
    (``None``: leave the registry's share tag as it is)."""

    champion: str
    challenger: str | None
    challenger_weight: float
    action: Action
    shadow: str | None = None
    shadow_share: float | None = None

    def __post_init__(self) -> None:
        roles = [version for version in (self.champion, self.challenger, self.shadow) if version is not None]
        if len(set(roles)) != len(roles):
            raise ValueError(
                f"a version holds at most one role: champion={self.champion} challenger={self.challenger} "
                f"shadow={self.shadow}"
            )
        registry.check_percent("challenger weight", self.challenger_weight)
        if self.shadow_share is not None:
            registry.check_percent("shadow share", self.shadow_share)

    def aliases(self) -> dict[str, str]:
        """``{"champion": "v3", ...}``: the aliases this state sets (the others are removed)."""
        named = {registry.CHAMPION: self.champion, registry.CHALLENGER: self.challenger, registry.SHADOW: self.shadow}
        return {alias: version for alias, version in named.items() if version is not None}


def plan_rollout(
    current: RolloutPlan | None, new_version: str, strategy: Strategy, shadow_share: float | None = None
) -> RolloutPlan:
    """Where ``new_version`` goes from the registry's ``current`` state (None: no champion yet).

    The champion when there is none or on ``replace`` (any challenger and shadow retire); on ``canary`` the
    shadow at ``shadow_share`` percent, and a challenger still in its canary retires with any older shadow: the
    newest version is the one candidate. Redeploying the champion, or on ``canary`` a version that already holds
    a role, changes nothing.
    """
    if current is None:
        return RolloutPlan(new_version, None, 0.0, "first_deploy")
    if new_version == current.champion:
        return replace(current, action="unchanged")
    if strategy == "replace":
        return RolloutPlan(new_version, None, 0.0, "replaced")
    if new_version in (current.challenger, current.shadow):
        return replace(current, action="unchanged")
    return RolloutPlan(current.champion, None, 0.0, "shadow_started", shadow=new_version, shadow_share=shadow_share)


def start_canary(current: RolloutPlan, first_weight: float) -> RolloutPlan:
    """The shadow becomes the challenger at ``first_weight`` percent (in (0, 100]); what a passed shadow gate does."""
    if current.shadow is None:
        raise ValueError(f"no shadow to start a canary with (champion {current.champion}, no shadow alias)")
    if not 0.0 < first_weight <= 100.0:
        raise ValueError(f"first canary weight must be in (0, 100] percent, got {first_weight}")
    return RolloutPlan(current.champion, current.shadow, first_weight, "canary_started")


def retire_shadow(current: RolloutPlan) -> RolloutPlan:
    """The shadow stops scoring; champion and challenger stay as they are (a failed shadow gate, a rollback)."""
    if current.shadow is None:
        raise ValueError(f"no shadow to retire (champion {current.champion}, no shadow alias)")
    return replace(current, shadow=None, shadow_share=None, action="shadow_retired")
