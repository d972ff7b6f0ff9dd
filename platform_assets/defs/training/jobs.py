"""Training creates a model version; the per-version jobs evaluate, govern and release exactly that version.

``training_job`` and ``retrain_and_deploy_job`` train one version each. ``model_version_sensor`` hands the
new version on as the partition key of ``model_version_job`` (evaluate + governance) or, after a
``retrain_and_deploy_job``, of ``release_job`` (the same, then build the Bento and roll it out).
"""

import dagster as dg

TRAINING = dg.AssetSelection.assets("default_risk_model")
#: Every asset (and its checks) about one model version, up to and including the signed manifest and card.
PER_VERSION = dg.AssetSelection.groups("training", "governance") - TRAINING
SERVING = dg.AssetSelection.groups("serving")

training_job = dg.define_asset_job(
    name="training_job",
    selection=TRAINING,
    description="Train default_risk_model into a new model version; model_version_job then evaluates it.",
)

retrain_and_deploy_job = dg.define_asset_job(
    name="retrain_and_deploy_job",
    selection=TRAINING,
    description=(
        "Train a new model version; release_job then evaluates, governs, builds and rolls out exactly that "
        "version (the blocking gates stop it before anything that failed reaches the service)."
    ),
)

model_version_job = dg.define_asset_job(
    name="model_version_job",
    selection=PER_VERSION,
    description=(
        "For one model version: baselines, side-by-side evaluation and quality gate, fairness, drift and "
        "performance reports, signed manifest and model card, with their blocking gates."
    ),
)

release_job = dg.define_asset_job(
    name="release_job",
    selection=PER_VERSION | SERVING,
    description="model_version_job for one version, then build its Bento and roll it out.",
)

#: Which per-version job follows a training run of each job (a materialization from anywhere else is evaluated).
NEXT_JOB = {training_job.name: model_version_job.name, retrain_and_deploy_job.name: release_job.name}
