"""Bounds of the blocking fairness gate (the counterpart of ``gates.ModelGates`` for governance)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from platform_assets.core import slo


class FairnessGates(dg.ConfigurableResource["FairnessGates"]):
    """Largest acceptable fairness gaps on the test split, per protected attribute (defaults:
    ``core.slo.FAIRNESS``)."""

    min_disparate_impact_ratio: float = Field(
        default=slo.FAIRNESS.min_disparate_impact_ratio,
        description="Lowest group approval rate / highest, at least this (the four-fifths rule).",
    )
    max_equal_opportunity_difference: float = Field(
        default=slo.FAIRNESS.max_equal_opportunity_difference,
        description="Largest gap in true positive rate between groups.",
    )
    attributes: list[str] = Field(
        default=["sex", "age_band", "marriage", "education"], description="Protected attributes the gate covers."
    )
    fail_when_unmeasurable: bool = Field(
        default=False,
        description="Fail when a gap cannot be measured (fewer than two groups large enough); else report it only.",
    )
