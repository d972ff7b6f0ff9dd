"""A candidate version's gates, and the approval of its promotion, one model version (partition) a run."""

import dagster as dg

promotion_approval_job = dg.define_asset_job(
    name="promotion_approval_job",
    selection=dg.AssetSelection.assets("promotion_approval"),
    description=(
        "Record a signed maker-checker approval for the chosen model version: pick the version's partition and set "
        "ops.promotion_approval.config.approved_by and reason."
    ),
)

promotion_job = dg.define_asset_job(
    name="promotion_job",
    selection=dg.AssetSelection.assets("shadow_comparison", "promotion_decision"),
    description=(
        "For the candidate version (the partition): compare it with the champion on the same applicants "
        "(shadow_comparison), then apply its promotion gate (promotion_decision): shadow -> canary, or canary -> "
        "champion with a valid approval. promotion_sensor and canary_sensor request it."
    ),
)
