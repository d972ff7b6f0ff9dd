"""The CNN, the baselines trained beside it, and their side-by-side evaluation."""

import dataclasses
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
from dagster_mlflow.resources import MlFlow
from pydantic import Field

from platform_assets import lake_keys, model_store
from platform_assets.defs.features.assets import credit_history_tensors
from platform_assets.ml import evaluate, features, schema
from platform_assets.ml.model import CNNConfig
from platform_assets.ml.train import TrainConfig, predict_cnn, train_baselines, train_cnn
from platform_assets.resources.lake import LakeStorage, content_hash
from platform_assets.resources.mlflow import ModelRegistry, tracking_run
from platform_assets.resources.training_data import TrainingData
from platform_assets.retries import fail_fast, io_retry_policy
from platform_assets.serving.registry import register_keras_model
from platform_assets.settings import MODEL_NAME, OWNER

BASELINES = "baseline_models"


class CNNTrainingConfig(dg.Config):  # type: ignore[misc]
    """Knobs of one CNN training run."""

    epochs: int = Field(default=60, description="Maximum epochs (early stopping usually ends sooner).")
    patience: int = Field(default=8, description="Epochs without a better validation AUC before stopping.")
    batch_size: int = Field(default=256, description="Rows per gradient step.")
    learning_rate: float = Field(default=1e-3, description="Adam step size.")
    conv_filters: int = Field(default=48, description="Filters in each Conv2D layer.")
    dense_units: int = Field(default=64, description="Units of the dense layer after the join.")
    dropout: float = Field(default=0.3, description="Dropout rate before the output.")
    seed: int = Field(default=42, description="Seed for weights and shuffling.")

    def to_train_config(self) -> TrainConfig:
        cnn = CNNConfig(
            conv_filters=self.conv_filters,
            dense_units=self.dense_units,
            dropout=self.dropout,
            learning_rate=self.learning_rate,
        )
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, patience=self.patience, seed=self.seed, cnn=cnn
        )


def _feature_spec(static_width: int) -> dict[str, object]:
    include_protected = static_width == len(features.STATIC_FEATURES) + len(features.PROTECTED_FEATURES)
    return features.feature_spec(include_protected=include_protected)


def _split_settings(training_data: TrainingData) -> dict[str, float | int]:
    return {
        "validation": training_data.validation_fraction,
        "test": training_data.test_fraction,
        "seed": training_data.split_seed,
    }


@dg.asset(
    deps=[credit_history_tensors],
    group_name="training",
    kinds={"tensorflow", "mlflow"},
    owners=[OWNER],
    retry_policy=io_retry_policy(),
    description=(
        "Keras CNN (Conv2D over the months x channels image, joined with the static vector), class-weighted, "
        "early-stopped on validation AUC; saved as .keras in the lake and registered in MLflow."
    ),
)
def default_risk_model(
    context: dg.AssetExecutionContext,
    config: CNNTrainingConfig,
    lake: LakeStorage,
    training_data: TrainingData,
    mlflow_tracker: dg.ResourceParam[MlFlow],
) -> dg.MaterializeResult:
    import mlflow

    with fail_fast():
        rows, data_versions = training_data.load(lake)
        splits = training_data.splits(rows)
    train_config = config.to_train_config()
    spec = _feature_spec(splits["train"].features.static.shape[1])
    context.log.info(
        f"training on {len(data_versions)} partitions: "
        + ", ".join(f"{name}={len(split)}" for name, split in splits.items())
    )

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        context.log.info(f"epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))
        mlflow.log_metrics(logs, step=epoch)

    with tracking_run(mlflow_tracker) as run_id:
        mlflow.log_params(
            {**dataclasses.asdict(train_config.cnn), **config.model_dump(), "partitions": len(data_versions)}
        )
        mlflow.log_dict(spec, "feature_spec.json")
        mlflow.log_dict(data_versions, "data_versions.json")
        trained = train_cnn(splits, train_config, on_epoch=on_epoch)
        validation = splits["validation"]
        val_metrics = evaluate.classification_metrics(
            validation.labels, predict_cnn(trained.model, validation.keras_inputs()), trained.threshold
        )
        mlflow.log_metrics({f"val_{k}": v for k, v in val_metrics.items()})
        registered = register_keras_model(
            trained.model,
            threshold=trained.threshold,
            example_inputs={k: v[:5] for k, v in splits["train"].keras_inputs().items()},
            model_name=MODEL_NAME,
            dagster_run_id=context.run_id,
        )
    version = registered.label
    # The lake keeps the very bytes MLflow stored, so one sha256 names the artifact everywhere.
    model_key = f"{lake_keys.model_dir(MODEL_NAME, version)}/model.keras"
    model_sha = lake.write_bytes(model_key, registered.model_bytes)
    info = {
        "model": MODEL_NAME,
        "version": version,
        "registered_version": registered.version,
        "mlflow_run_id": run_id,
        "mlflow_model_uri": registered.model_uri,
        "dagster_run_id": context.run_id,
        "trained_at": datetime.now(UTC).isoformat(),
        "artifacts": {"model.keras": model_sha},
        "threshold": trained.threshold,
        "best_epoch": trained.best_epoch,
        "feature_spec": spec,
        "target": schema.TARGET,
        "data_versions": data_versions,
        "split": _split_settings(training_data),
        "rows": {name: len(split) for name, split in splits.items()},
        "validation_metrics": val_metrics,
        "training_config": config.model_dump(),
    }
    model_store.publish(lake, MODEL_NAME, version, info)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(model_sha),
        metadata={
            "model_version": version,
            "mlflow_run_id": run_id,
            "mlflow_model_uri": registered.model_uri,
            "threshold": trained.threshold,
            "best_epoch": trained.best_epoch,
            "validation_roc_auc": val_metrics["roc_auc"],
            "train_rows": len(splits["train"]),
            "partitions": dg.MetadataValue.json(data_versions),
            "sha256": model_sha,
            "path": dg.MetadataValue.path(lake.uri(model_key)),
        },
    )


@dg.asset(
    deps=[credit_history_tensors],
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    owners=[OWNER],
    retry_policy=io_retry_policy(),
    description="Logistic regression and HistGradientBoosting on the CNN's inputs and split, for comparison.",
)
def baseline_models(
    context: dg.AssetExecutionContext,
    lake: LakeStorage,
    training_data: TrainingData,
    mlflow_tracker: dg.ResourceParam[MlFlow],
) -> dg.MaterializeResult:
    import mlflow
    import skops.io

    with fail_fast():
        rows, data_versions = training_data.load(lake)
        splits = training_data.splits(rows)
    version = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{context.run_id[:8]}"
    artifacts, thresholds, val_auc = {}, {}, {}
    with tracking_run(mlflow_tracker) as run_id:
        for name, (model, threshold) in train_baselines(splits["train"], splits["validation"], seed=42).items():
            key = f"{lake_keys.model_dir(BASELINES, version)}/{name}.skops"
            artifacts[f"{name}.skops"] = lake.write_bytes(key, skops.io.dumps(model))
            thresholds[name] = threshold
            probabilities = model.predict_proba(splits["validation"].flat())[:, 1]
            val_auc[name] = evaluate.classification_metrics(splits["validation"].labels, probabilities, threshold)[
                "roc_auc"
            ]
            mlflow.log_metric(f"baseline_{name}_val_roc_auc", val_auc[name])
    info = {
        "version": version,
        "mlflow_run_id": run_id,
        "dagster_run_id": context.run_id,
        "artifacts": artifacts,
        "thresholds": thresholds,
        "data_versions": data_versions,
        "split": _split_settings(training_data),
        "validation_roc_auc": val_auc,
    }
    model_store.publish(lake, BASELINES, version, info)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(content_hash(json.dumps(artifacts, sort_keys=True).encode())),
        metadata={
            "version": version,
            **{f"{name}_validation_roc_auc": auc for name, auc in val_auc.items()},
            "partitions": dg.MetadataValue.json(data_versions),
        },
    )


def _load_baselines(lake: LakeStorage, info: dict[str, Any]) -> dict[str, Any]:
    import skops.io

    models = {}
    for filename, sha in info["artifacts"].items():
        data = model_store.read_verified(lake, f"{lake_keys.model_dir(BASELINES, info['version'])}/{filename}", sha)
        # The bytes are ours (hash checked above), so the sklearn types they name can be trusted.
        models[filename.removesuffix(".skops")] = skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))
    return models


@dg.asset(
    deps=[default_risk_model, baseline_models],
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    owners=[OWNER],
    retry_policy=io_retry_policy(),
    description=(
        "Test-set ROC AUC, accuracy, precision/recall at each model's threshold, Brier score and calibration "
        "for the CNN and both baselines, with ROC and calibration plots; logged to the CNN's MLflow run."
    ),
)
def model_evaluation(
    context: dg.AssetExecutionContext, lake: LakeStorage, model_registry: ModelRegistry
) -> dg.MaterializeResult:
    with fail_fast():
        cnn_info = model_store.latest_info(lake, MODEL_NAME)
        baseline_info = model_store.latest_info(lake, BASELINES)
    if cnn_info["data_versions"] != baseline_info["data_versions"] or cnn_info["split"] != baseline_info["split"]:
        raise dg.Failure(
            allow_retries=False,
            description=(
                f"{MODEL_NAME} {cnn_info['version']} and baseline_models {baseline_info['version']} were trained "
                "on different data or splits: materialize both together before evaluating"
            ),
        )
    with fail_fast():
        rows, _ = TrainingData().load(lake, data_versions=cnn_info["data_versions"])
    split = cnn_info["split"]
    test = TrainingData(
        validation_fraction=split["validation"], test_fraction=split["test"], split_seed=split["seed"]
    ).splits(rows)["test"]

    model_dir = lake_keys.model_dir(MODEL_NAME, cnn_info["version"])
    cnn = model_store.keras_from_bytes(
        model_store.read_verified(lake, f"{model_dir}/model.keras", cnn_info["artifacts"]["model.keras"])
    )
    scores: dict[str, np.ndarray] = {"cnn": predict_cnn(cnn, test.keras_inputs())}
    thresholds = {"cnn": cnn_info["threshold"], **baseline_info["thresholds"]}
    for name, model in _load_baselines(lake, baseline_info).items():
        scores[name] = model.predict_proba(test.flat())[:, 1]
    metrics = {name: evaluate.classification_metrics(test.labels, p, thresholds[name]) for name, p in scores.items()}
    best_baseline = max((n for n in metrics if n != "cnn"), key=lambda n: metrics[n]["roc_auc"])
    report = {
        "model_version": cnn_info["version"],
        "baseline_version": baseline_info["version"],
        "test_rows": len(test),
        "test_default_rate": float(test.labels.mean()),
        "metrics": metrics,
        "best_baseline": best_baseline,
        "evaluated_at": datetime.now(UTC).isoformat(),
    }
    model_store.write_json(lake, f"{model_dir}/evaluation.json", report)

    png = evaluate.plots_png(test.labels, scores)
    model_registry.log_metrics(
        cnn_info["mlflow_run_id"],
        {
            (f"test_{metric}" if name == "cnn" else f"test_{name}_{metric}"): value
            for name, values in metrics.items()
            for metric, value in values.items()
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evaluation_plots.png"
        path.write_bytes(png)
        model_registry.client().log_artifact(cnn_info["mlflow_run_id"], str(path))
    table = evaluate.metrics_table(metrics)
    context.log.info(f"test set ({len(test)} rows), model {cnn_info['version']}:\n{table}")
    return dg.MaterializeResult(
        metadata={
            "model_version": cnn_info["version"],
            "test_rows": len(test),
            "cnn_test_roc_auc": metrics["cnn"]["roc_auc"],
            **{f"{n}_test_roc_auc": m["roc_auc"] for n, m in metrics.items() if n != "cnn"},
            "best_baseline": best_baseline,
            "metrics": dg.MetadataValue.md(table),
            "plots": dg.MetadataValue.md(evaluate.png_markdown(png, "ROC and calibration")),
        }
    )
