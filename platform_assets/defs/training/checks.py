"""The quality gate on the evaluated model: blocking, so nothing downstream runs past a failure."""

import dagster as dg

from platform_assets import model_store
from platform_assets.defs.training.assets import EVALUATION_FILE, model_evaluation
from platform_assets.resources.gates import ModelGates
from platform_assets.resources.lake import LakeStorage


@dg.asset_check(
    asset=model_evaluation,
    blocking=True,
    description=(
        "Fails when the CNN's test ROC AUC is below the floor or trails the best baseline by more than the margin."
    ),
)
def cnn_beats_floor_and_baselines(
    context: dg.AssetCheckExecutionContext, lake: LakeStorage, model_gates: ModelGates
) -> dg.AssetCheckResult:
    version = context.partition_key
    report = model_store.read_json(lake, model_store.version_key(version, EVALUATION_FILE))
    cnn_auc = report["metrics"]["cnn"]["roc_auc"]
    best = report["best_baseline"]
    best_auc = report["metrics"][best]["roc_auc"]
    above_floor = cnn_auc >= model_gates.auc_floor
    near_baseline = cnn_auc >= best_auc - model_gates.baseline_margin
    return dg.AssetCheckResult(
        passed=above_floor and near_baseline,
        metadata={
            "model_version": version,
            "cnn_test_roc_auc": cnn_auc,
            "auc_floor": model_gates.auc_floor,
            "best_baseline": best,
            "best_baseline_test_roc_auc": best_auc,
            "baseline_margin": model_gates.baseline_margin,
            "above_floor": above_floor,
            "within_margin_of_best_baseline": near_baseline,
        },
    )
