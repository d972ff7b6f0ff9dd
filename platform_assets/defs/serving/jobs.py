"""Build the Bento for the newest evaluated model and roll it out."""

import dagster as dg

deployment_job = dg.define_asset_job(
    name="deployment_job",
    selection=dg.AssetSelection.groups("serving"),
    description="Build credit_risk_bento and roll out credit_risk_deployment.",
)
