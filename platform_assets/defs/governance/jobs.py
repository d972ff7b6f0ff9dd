"""Reports, signed manifest and model card of the newest model, with their blocking gates."""

import dagster as dg

from platform_assets.defs.governance.assets import GROUP

governance_job = dg.define_asset_job(
    name="governance_job",
    selection=dg.AssetSelection.groups(GROUP),
    description=(
        "Fairness, drift and performance reports, the signed manifest and the model card of the newest model, "
        "with the blocking fairness and manifest gates."
    ),
)
