"""Build one model version's Bento and roll it out (e.g. to roll back to an earlier version)."""

import dagster as dg

deployment_job = dg.define_asset_job(
    name="deployment_job",
    selection=dg.AssetSelection.groups("serving"),
    description="Build credit_risk_bento and roll out credit_risk_deployment for the chosen model version.",
)
