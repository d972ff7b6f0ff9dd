"""The CNN creates a model version; the baselines and the side-by-side evaluation are per version.

``default_risk_model`` trains, registers and records one version (``ModelVersion``), then adds its label to
the ``model_versions`` partitions. Every asset about a version is partitioned by that set and reads the
version its partition key names, so overlapping runs never mix versions.
"""

import dataclasses
import getpass
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import numpy as np
from dagster_mlflow.resources import MlFlow
from pydantic import Field

from platform_assets import model_store
from platform_assets.core.approval import launcher_from_run_tags
from platform_assets.core.model_version import (
    MODEL_FILE,
    ONNX_FILE,
    BaselineSet,
    FeatureSpec,
    LabelSelection,
    ModelVersion,
    ThresholdPolicy,
    TrainingSample,
)
from platform_assets.core.registry import CHAMPION, LAUNCHED_BY_TAG, MODEL_NAME
from platform_assets.defs.features.assets import credit_history_tensors
from platform_assets.ml import calibration, evaluate, reason_codes, reject_inference
from platform_assets.ml.model import CNNConfig
from platform_assets.ml.onnx_export import OnnxMismatch
from platform_assets.ml.reject_inference import DEFAULT_APPROVAL_FIT_ROWS
from platform_assets.ml.train import (
    DEFAULT_LOSS_GIVEN_DEFAULT,
    DEFAULT_MARGIN,
    TrainConfig,
    fit_reason_codes,
    predict_cnn,
    train_baselines,
    train_cnn,
)
from platform_assets.partitions import model_versions
from platform_assets.resources.lake import LakeStorage, content_hash
from platform_assets.resources.mlflow import ModelRegistry, register_model_version, tracking_run
from platform_assets.resources.training_data import TrainingData, open_labelled, select_approved
from platform_assets.retries import fail_fast, io_retry_policy


class CNNTrainingConfig(dg.Config):
    """Knobs of one CNN training run."""

    epochs: int = Field(default=60, description="Maximum epochs (early stopping usually ends sooner).")
    patience: int = Field(default=8, description="Epochs without a better validation AUC before stopping.")
    batch_size: int = Field(default=256, description="Rows per gradient step.")
    learning_rate: float = Field(default=1e-3, description="Adam step size.")
    conv_filters: int = Field(default=48, description="Filters in each Conv2D layer.")
    dense_units: int = Field(default=64, description="Units of the dense layer after the join.")
    dropout: float = Field(default=0.3, description="Dropout rate before the output.")
    seed: int = Field(default=42, description="Seed for weights and shuffling; training is deterministic per seed.")
    calibration_method: str = Field(
        default="auto",
        description="'platt', 'isotonic', or 'auto': the lower cross-validated log-loss on the validation split.",
    )
    threshold_policy: str = Field(
        default="expected_cost",
        description=(
            "'expected_cost': decline when PD x loss_given_default > (1 - PD) x margin; "
            "'approval_rate': approve target_approval_rate of the validation split."
        ),
    )
    loss_given_default: float = Field(
        default=DEFAULT_LOSS_GIVEN_DEFAULT, description="Share of the exposure lost on a default (Basel F-IRB)."
    )
    margin: float = Field(default=DEFAULT_MARGIN, description="Share of the exposure earned on a repaid loan.")
    target_approval_rate: float = Field(default=0.8, description="For 'approval_rate': share of applicants approved.")
    outcomes: Literal["all", "approved"] = Field(
        default="all",
        description=(
            "'all': every row's outcome trains (a lake where every applicant's outcome is known). 'approved': a "
            "training or validation row keeps its outcome only if the champion approved it in its committed "
            "portfolio_scores of that day, as in production where defaults are known only for approved loans. "
            "The test split keeps every outcome either way (through the door), so evaluation measures the whole "
            "applicant flow."
        ),
    )
    reject_inference: Literal["none", "reweight"] = Field(
        default="none",
        description=(
            "'reweight' (needs outcomes='approved'): weight each approved training row by 1 / P(approved | its "
            "features), the approval model a logistic regression of the champion's decisions on every training "
            "applicant (clipped at P >= 0.05, weights mean 1), in the CNN's and the baselines' fit. 'none': no "
            "reweighting."
        ),
    )
    approval_fit_rows: int = Field(
        default=DEFAULT_APPROVAL_FIT_ROWS,
        gt=0,
        description=(
            "Most training applicants the approval model is fitted on (a seeded sample of a larger split; memory "
            "about 2 x this x 200 bytes)."
        ),
    )

    def policy(self) -> ThresholdPolicy:
        if self.threshold_policy == "approval_rate":
            return ThresholdPolicy(kind="approval_rate", target_approval_rate=self.target_approval_rate)
        return ThresholdPolicy.model_validate(
            {"kind": self.threshold_policy, "loss_given_default": self.loss_given_default, "margin": self.margin}
        )

    def to_train_config(self) -> TrainConfig:
        """The training knobs; a bad calibration method, threshold policy or outcomes setting fails here, before
        any training."""
        if self.reject_inference == "reweight" and self.outcomes != "approved":
            raise ValueError(
                "reject_inference='reweight' corrects training on the approved only: it needs outcomes='approved', "
                f"not outcomes={self.outcomes!r}"
            )
        if self.calibration_method not in ("auto", "platt", "isotonic"):
            raise ValueError(
                f"calibration_method must be 'auto', 'platt' or 'isotonic', not {self.calibration_method!r}"
            )
        cnn = CNNConfig(
            conv_filters=self.conv_filters,
            dense_units=self.dense_units,
            dropout=self.dropout,
            learning_rate=self.learning_rate,
        )
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            patience=self.patience,
            seed=self.seed,
            cnn=cnn,
            policy=self.policy(),
            calibration_method=None if self.calibration_method == "auto" else self.calibration_method,
        )


EVALUATION_FILE = "evaluation.json"


def tensor_feature_spec(instance: dg.DagsterInstance, partitions: list[str]) -> FeatureSpec:
    """The feature spec the tensor asset recorded for ``partitions``; they must all agree."""
    specs: dict[FeatureSpec, list[str]] = {}
    for partition in partitions:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=credit_history_tensors.key, asset_partitions=[partition]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
        if materialization is None or "feature_spec" not in materialization.metadata:
            raise ValueError(
                f"credit_history_tensors {partition} has no feature_spec in its metadata: rematerialize the partition"
            )
        spec = FeatureSpec.model_validate(materialization.metadata["feature_spec"].value)
        specs.setdefault(spec, []).append(partition)
    if len(specs) != 1:
        groups = "; ".join(f"version {spec.version}, static {list(spec.static)}: {p}" for spec, p in specs.items())
        raise ValueError(
            f"training partitions were featurized with different feature specs ({groups}): "
            "rematerialize them with one TensorConfig"
        )
    return next(iter(specs))


def run_launcher(run_tags: dict[str, str]) -> str:
    """Who launched this run (``core.approval.launcher_from_run_tags``): the sensor or schedule, else the user
    Dagster+ records, else ``PLATFORM_USER``, else the OS user of the run's process (Dagster OSS has no users)."""
    try:
        os_user: str | None = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry: the other sources decide
        os_user = None
    return launcher_from_run_tags(run_tags, os.environ.get("PLATFORM_USER"), os_user)


def label_selection_metadata(selection: LabelSelection) -> dict[str, Any]:
    """What a version learnt from, for the materialization: outcomes mode, reject inference, who selected."""
    weights = selection.weights
    return {
        "outcomes": selection.outcomes,
        "reject_inference": selection.reject_inference,
        "labels_selected_by": selection.selected_by or "none (every outcome)",
        "labelled_rows": dg.MetadataValue.json(selection.labelled_rows),
        "declined_rows_left_out": dg.MetadataValue.json(selection.declined_rows),
        "effective_sample_size": float("nan") if weights is None else weights.effective_sample_size,
    }


def version_record(context: dg.AssetExecutionContext, lake: LakeStorage) -> ModelVersion:
    """The record of the version this run's partition key names (a missing one is not retried)."""
    with fail_fast():
        return model_store.load_record(lake, context.partition_key)


@dg.asset(
    deps=[credit_history_tensors],
    group_name="training",
    kinds={"tensorflow", "onnx", "mlflow"},
    retry_policy=io_retry_policy(),
    description=(
        "Keras CNN (Conv2D over the months x channels image, joined with the static vector), class-weighted, "
        "early-stopped on validation AUC, calibrated on the validation split (Platt or isotonic, built into the "
        "model so it outputs the calibrated PD) and thresholded by the configured policy; exported to ONNX and checked "
        "against Keras on the validation split, registered in MLflow (onnx flavor, the Keras model beside it), "
        "saved as .keras and .onnx in the lake with its ModelVersion record, and added to the model_versions "
        "partitions. With outcomes='approved' it learns only from the applicants the champion "
        "approved (reject_inference='reweight' weights them by inverse approval probability); the test split "
        "stays through the door."
    ),
)
def default_risk_model(
    context: dg.AssetExecutionContext,
    config: CNNTrainingConfig,
    lake: LakeStorage,
    training_data: TrainingData,
    model_registry: ModelRegistry,
    mlflow_tracker: dg.ResourceParam[MlFlow],
) -> dg.MaterializeResult[Any]:
    import mlflow

    # The maker of maker-checker: whoever launched this training may not approve the version's promotion.
    launched_by = run_launcher(dict(context.run.tags))
    try:
        # Only training on the approved asks who decides: the champion now, whose scored decisions select the labels.
        champion = model_registry.aliases().get(CHAMPION) if config.outcomes == "approved" else None
        with fail_fast():  # a missing champion, missing scores or a one-class selection will not fix themselves
            train_config = config.to_train_config()
            data, data_versions = training_data.open(lake)
            spec = tensor_feature_spec(context.instance, sorted(data_versions))
            selection = LabelSelection()
            if config.outcomes == "approved":
                data, selection = select_approved(
                    lake,
                    data,
                    sorted(data_versions),
                    champion,
                    reweight=config.reject_inference == "reweight",
                    seed=training_data.split_seed,
                    approval_fit_rows=config.approval_fit_rows,
                )
            validation = data.materialize("validation")
            static_width = validation.features.static.shape[1]
            if static_width != len(spec.static):
                raise ValueError(
                    f"credit_history_tensors carry {static_width} static features but their feature_spec names "
                    f"{len(spec.static)} ({list(spec.static)}): rematerialize the partitions"
                )
    except BaseException:
        # dagster-mlflow opened this run's MLflow run when the resource started: a run that fails before
        # training would leave it RUNNING in the store (and active in this process).
        mlflow.end_run(status="FAILED")
        raise
    rows = data.rows()
    context.log.info(
        f"training on {len(data_versions)} partitions: " + ", ".join(f"{name}={n}" for name, n in rows.items())
    )
    if selection.outcomes == "approved":
        context.log.info(
            f"outcomes of the applicants {selection.selected_by} approved: declined rows left out "
            f"{selection.declined_rows}, reject inference {selection.reject_inference}"
            + (
                ""
                if selection.weights is None
                else f", effective sample size {selection.weights.effective_sample_size:.0f}"
            )
        )

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        context.log.info(f"epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))
        mlflow.log_metrics(logs, step=epoch)

    with tracking_run(mlflow_tracker) as run_id:
        mlflow.log_params(
            {
                **dataclasses.asdict(train_config.cnn),
                **config.model_dump(),  # with outcomes and reject_inference
                "partitions": len(data_versions),
                "labels_selected_by": selection.selected_by or "none",
            }
        )
        mlflow.log_dict(spec.model_dump(mode="json"), "feature_spec.json")
        mlflow.log_dict(data_versions, "data_versions.json")
        trained = train_cnn(data, train_config, on_epoch=on_epoch, validation=validation, weights=selection.weights)
        val_metrics = evaluate.classification_metrics(
            validation.labels, predict_cnn(trained.model, validation.keras_inputs()), trained.threshold
        )
        mlflow.log_metrics({f"val_{k}": v for k, v in val_metrics.items()})
        with fail_fast():  # a reference applicant the model declines cannot explain declines: not retried
            sample = data.sample("train", reason_codes.REFERENCE_SAMPLE_ROWS, train_config.seed)
            reasons = fit_reason_codes(
                trained.model,
                sample.frame,
                sample.keras_inputs(),
                trained.threshold,
                include_protected=spec.include_protected,
            )
        with fail_fast(OnnxMismatch):  # deterministic: a retry exports the same graph
            registered = register_model_version(
                trained.model,
                threshold=trained.threshold,
                reason_codes=reasons,
                example_inputs={k: v[:5] for k, v in validation.keras_inputs().items()},
                check_inputs=validation.keras_inputs(),
                model_name=MODEL_NAME,
                dagster_run_id=context.run.run_id,
                extra_tags={LAUNCHED_BY_TAG: launched_by},
            )
        mlflow.log_metric("val_onnx_max_abs_diff", registered.onnx_max_abs_diff)
    # The lake keeps the very bytes MLflow stored, so one sha256 names each artifact everywhere.
    model_sha = lake.write_bytes(model_store.version_key(registered.label, MODEL_FILE), registered.keras_bytes)
    onnx_sha = lake.write_bytes(model_store.version_key(registered.label, ONNX_FILE), registered.onnx_bytes)
    record = ModelVersion(
        model=MODEL_NAME,
        version=registered.label,
        registered_version=registered.version,
        mlflow_run_id=run_id,
        mlflow_model_uri=registered.model_uri,
        dagster_run_id=context.run.run_id,
        launched_by=launched_by,
        trained_at=datetime.now(UTC),
        artifacts={MODEL_FILE: model_sha, ONNX_FILE: onnx_sha},
        threshold=trained.threshold,
        threshold_policy=train_config.policy,
        calibration=trained.calibration,
        reason_codes=reasons,
        best_epoch=trained.best_epoch,
        feature_spec=spec,
        data_versions=data_versions,
        split=training_data.split_spec(),
        rows=rows,
        validation_metrics=val_metrics,
        training_config=config.model_dump(),
        label_selection=selection,
    )
    model_store.publish(lake, record)
    # Hand the version on: every per-version asset is materialized for this partition key.
    context.instance.add_dynamic_partitions(model_versions.name, [record.version])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(model_sha),
        metadata={
            "model_version": record.version,
            "mlflow_run_id": run_id,
            "mlflow_model_uri": registered.model_uri,
            "launched_by": launched_by,
            "threshold": trained.threshold,
            "threshold_policy": dg.MetadataValue.json(train_config.policy.model_dump(mode="json")),
            "calibration_method": trained.calibration.method,
            "reason_codes_table": reasons.table_version,
            "reference_applicant": dg.MetadataValue.json(reasons.reference.model_dump(mode="json")),
            "validation_log_loss": dg.MetadataValue.json(trained.calibration.validation_log_loss),
            "best_epoch": trained.best_epoch,
            "validation_roc_auc": val_metrics["roc_auc"],
            "train_rows": rows["train"],
            **label_selection_metadata(selection),
            "feature_spec_version": spec.version,
            "partitions": dg.MetadataValue.json(data_versions),
            "sha256": model_sha,
            "onnx_sha256": onnx_sha,
            "onnx_max_abs_diff": registered.onnx_max_abs_diff,
            "path": dg.MetadataValue.path(lake.uri(model_store.version_key(record.version, MODEL_FILE))),
            "onnx_path": dg.MetadataValue.path(lake.uri(model_store.version_key(record.version, ONNX_FILE))),
        },
    )


class BaselineConfig(dg.Config):
    """Knobs of the baselines' fit."""

    max_train_rows: int = Field(
        default=200_000,
        gt=0,
        description=(
            "Most training-split rows the baselines are fitted on: a larger split is sampled to this many rows by "
            "a seeded hash of the client ID (same rows for the same seed); memory is about 2 x this x 200 bytes."
        ),
    )
    seed: int = Field(default=42, description="Seed of the baselines' fits and of the training-row sample.")


@dg.asset(
    deps=[default_risk_model],
    partitions_def=model_versions,
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    retry_policy=io_retry_policy(),
    description=(
        "Logistic regression and HistGradientBoosting for one model version, on its partitions, split and "
        "outcomes (the training split sampled to at most max_train_rows; reweighted like the CNN when the "
        "version used reject inference), each calibrated on the validation split and thresholded by the "
        "version's policy."
    ),
)
def baseline_models(
    context: dg.AssetExecutionContext,
    config: BaselineConfig,
    lake: LakeStorage,
    mlflow_tracker: dg.ResourceParam[MlFlow],
) -> dg.MaterializeResult[Any]:
    import mlflow
    import skops.io

    record = version_record(context, lake)
    with fail_fast():
        data = open_labelled(lake, record)
        train = data.sample("train", config.max_train_rows, seed=config.seed)
        validation = data.materialize("validation")
    weights = record.label_selection.weights
    sample_weight = None if weights is None else reject_inference.weights_of(weights, train.flat())
    validation_weight = None if weights is None else reject_inference.weights_of(weights, validation.flat())
    artifacts, thresholds, calibrations, val_auc = {}, {}, {}, {}
    with tracking_run(mlflow_tracker) as run_id:
        mlflow.log_params(
            {
                **config.model_dump(),
                "train_rows": len(train),
                "outcomes": record.label_selection.outcomes,
                "reject_inference": record.label_selection.reject_inference,
            }
        )
        fitted = train_baselines(
            train,
            validation,
            seed=config.seed,
            policy=record.threshold_policy,
            sample_weight=sample_weight,
            validation_weight=validation_weight,
        )
        for name, baseline in fitted.items():
            key = model_store.version_key(record.version, f"baselines/{name}.skops")
            artifacts[f"{name}.skops"] = lake.write_bytes(key, skops.io.dumps(baseline.model))
            thresholds[name], calibrations[name] = baseline.threshold, baseline.calibration
            probabilities = baseline.predict_default(validation.flat())
            val_auc[name] = evaluate.classification_metrics(validation.labels, probabilities, baseline.threshold)[
                "roc_auc"
            ]
            mlflow.log_metric(f"baseline_{name}_val_roc_auc", val_auc[name])
    sample = TrainingSample(
        rows=len(train), split_rows=data.rows()["train"], max_rows=config.max_train_rows, seed=config.seed
    )
    baselines = BaselineSet(
        model_version=record.version,
        mlflow_run_id=run_id,
        dagster_run_id=context.run.run_id,
        artifacts=artifacts,
        thresholds=thresholds,
        calibrations=calibrations,
        validation_roc_auc=val_auc,
        data_versions=record.data_versions,
        split=record.split,
        training_sample=sample,
    )
    model_store.publish_baselines(lake, baselines)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(content_hash(json.dumps(artifacts, sort_keys=True).encode())),
        metadata={
            "model_version": record.version,
            **{f"{name}_validation_roc_auc": auc for name, auc in val_auc.items()},
            "partitions": dg.MetadataValue.json(record.data_versions),
            "train_rows": sample.rows,
            "train_split_rows": sample.split_rows,
            "max_train_rows": sample.max_rows,
            "sample_seed": sample.seed,
            "outcomes": record.label_selection.outcomes,
            "reject_inference": record.label_selection.reject_inference,
        },
    )


@dg.asset(
    deps=[default_risk_model, baseline_models],
    partitions_def=model_versions,
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    retry_policy=io_retry_policy(),
    description=(
        "Test-set ROC AUC, accuracy, precision/recall at each model's threshold, Brier score and expected "
        "calibration error (calibrated, and uncalibrated for the record) for the CNN and both baselines, with ROC "
        "curves and reliability diagrams side by side; logged to the CNN's MLflow run."
    ),
)
def model_evaluation(
    context: dg.AssetExecutionContext, lake: LakeStorage, model_registry: ModelRegistry
) -> dg.MaterializeResult[Any]:
    with fail_fast():
        record = model_store.load_record(lake, context.partition_key)
        baselines, baseline_fits = model_store.load_baselines(lake, record.version)
    if baselines.data_versions != record.data_versions or baselines.split != record.split:
        raise dg.Failure(
            allow_retries=False,
            description=(
                f"baseline_models of {record.version} were trained on different data or splits than "
                f"{record.version}: rematerialize baseline_models for {record.version}"
            ),
        )
    with fail_fast():
        loaded = model_store.load_version(lake, record.version)
    test = loaded.splits["test"]
    # Calibrated: what each model reports as PD (the CNN's served output). Uncalibrated: the raw score, for the record.
    scores: dict[str, np.ndarray] = {"cnn": predict_cnn(loaded.model, test.keras_inputs())}
    raw: dict[str, np.ndarray] = {"cnn": calibration.raw_logits(loaded.model, test.keras_inputs())}
    thresholds = {"cnn": record.threshold, **baselines.thresholds}
    for name, model in baseline_fits.items():
        raw[name] = model.decision_function(test.flat())
        scores[name] = calibration.apply(baselines.calibrations[name], raw[name])
    metrics = {
        name: evaluate.classification_metrics(test.labels, p, thresholds[name], raw_logits=raw[name])
        for name, p in scores.items()
    }
    best_baseline = max((n for n in metrics if n != "cnn"), key=lambda n: metrics[n]["roc_auc"])
    report = {
        "model_version": record.version,
        "baseline_run_id": baselines.mlflow_run_id,
        "test_rows": len(test),
        "test_default_rate": float(test.labels.mean()),
        "metrics": metrics,
        "best_baseline": best_baseline,
        "evaluated_at": datetime.now(UTC).isoformat(),
    }
    model_store.write_json(lake, model_store.version_key(record.version, EVALUATION_FILE), report)

    png = evaluate.plots_png(test.labels, scores, {name: calibration.sigmoid(z) for name, z in raw.items()})
    model_registry.log_metrics(
        record.mlflow_run_id,
        {
            (f"test_{metric}" if name == "cnn" else f"test_{name}_{metric}"): value
            for name, values in metrics.items()
            for metric, value in values.items()
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evaluation_plots.png"
        path.write_bytes(png)
        model_registry.client().log_artifact(record.mlflow_run_id, str(path))
    table = evaluate.metrics_table(metrics)
    context.log.info(f"test set ({len(test)} rows), model {record.version}:\n{table}")
    return dg.MaterializeResult(
        metadata={
            "model_version": record.version,
            "test_rows": len(test),
            "cnn_test_roc_auc": metrics["cnn"]["roc_auc"],
            **{f"{n}_test_roc_auc": m["roc_auc"] for n, m in metrics.items() if n != "cnn"},
            **{f"{n}_test_ece": m["ece"] for n, m in metrics.items()},
            **{f"{n}_test_ece_uncalibrated": m["ece_uncalibrated"] for n, m in metrics.items()},
            "best_baseline": best_baseline,
            "metrics": dg.MetadataValue.md(table),
            "plots": dg.MetadataValue.md(evaluate.png_markdown(png, "ROC and reliability diagrams")),
        }
    )
