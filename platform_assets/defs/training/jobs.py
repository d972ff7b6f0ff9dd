"""Train the CNN and the baselines on the tensor partitions, then evaluate them side by side."""

import dagster as dg

training_job = dg.define_asset_job(
    name="training_job",
    selection=dg.AssetSelection.groups("training"),
    description="Train default_risk_model and baseline_models, evaluate both and run the quality gate.",
)

retrain_and_deploy_job = dg.define_asset_job(
    name="retrain_and_deploy_job",
    selection=dg.AssetSelection.groups("training", "governance", "serving"),
    description=(
        "Retrain -> evaluate -> fairness, drift and manifest -> build the Bento -> roll it out. The blocking "
        "checks on the way stop the run before anything that failed a gate reaches the service."
    ),
)
