"""Train the CNN and the baselines on the tensor partitions, then evaluate them side by side."""

import dagster as dg

training_job = dg.define_asset_job(
    name="training_job",
    selection=dg.AssetSelection.groups("training"),
    description="Train default_risk_model and baseline_models, evaluate both and run the quality gate.",
)
