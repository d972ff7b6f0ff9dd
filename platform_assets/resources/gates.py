"""Thresholds of the blocking checks that stand between training and deployment."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class ModelGates(dg.ConfigurableResource):  # type: ignore[misc]
    """Quality bars a model must clear. AUCs are test-set ROC AUC; shares are fractions of rows."""

    auc_floor: float = Field(default=0.70, description="Minimum test ROC AUC of the CNN.")
    baseline_margin: float = Field(
        default=0.02, description="The CNN may trail the best baseline's test AUC by at most this much."
    )
    max_quarantine_share: float = Field(
        default=0.05, description="Largest share of a partition's rows that may be quarantined."
    )
