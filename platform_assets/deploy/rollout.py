"""Which model versions the registry aliases should name after a deployment: a pure decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Strategy = Literal["replace", "canary"]


@dataclass(frozen=True)
class RolloutPlan:
    """Registry state to reach. Weights are percent of application IDs routed to the challenger."""

    champion: str
    challenger: str | None
    challenger_weight: float
    action: Literal["first_deploy", "unchanged", "replaced", "canary_started"]


def plan_rollout(
    champion: str | None,
    challenger: str | None,
    weight: float,
    new_version: str,
    strategy: Strategy,
    first_canary_weight: float,
) -> RolloutPlan:
    """Where ``new_version`` goes: champion when there is none or on ``replace``; challenger at the
    first canary weight on ``canary``. Redeploying the current champion changes nothing."""
    if champion is None:
        return RolloutPlan(new_version, None, 0.0, "first_deploy")
    if champion == new_version:
        return RolloutPlan(champion, challenger, weight, "unchanged")
    if strategy == "replace":
        return RolloutPlan(new_version, None, 0.0, "replaced")
    if not 0.0 < first_canary_weight <= 100.0:
        raise ValueError(f"first canary weight must be in (0, 100] percent, got {first_canary_weight}")
    return RolloutPlan(champion, new_version, first_canary_weight, "canary_started")
