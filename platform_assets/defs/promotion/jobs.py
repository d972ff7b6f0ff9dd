"""Approve one model version's promotion from the launchpad (config: approved_by, reason, expires_hours)."""

import dagster as dg

promotion_approval_job = dg.define_asset_job(
    name="promotion_approval_job",
    selection=dg.AssetSelection.groups("promotion"),
    description=(
        "Record a signed maker-checker approval for the chosen model version: pick the version's partition and set "
        "ops.promotion_approval.config.approved_by and reason."
    ),
)
