"""Thresholds of the blocking checks that stand between training and deployment."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from platform_assets.core import slo


class ModelGates(dg.ConfigurableResource["ModelGates"]):
    """Quality bars a model must clear (defaults: ``core.slo.MODEL_QUALITY``). AUCs are test-set ROC AUC;
    shares are fractions of rows."""

    auc_floor: float = Field(default=slo.MODEL_QUALITY.auc_floor, description="Minimum test ROC AUC of the CNN.")
    baseline_margin: float = Field(
        default=slo.MODEL_QUALITY.baseline_margin,
        description="The CNN may trail the best baseline's test AUC by at most this much.",
    )
    max_quarantine_share: float = Field(
        default=slo.MODEL_QUALITY.max_quarantine_share,
        description="Largest share of a partition's rows that may be quarantined.",
    )
