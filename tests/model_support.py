"""Small, fast models for the tests: trained in seconds on synthetic partitions and registered in an MLflow
store exactly as the training asset registers a version (``resources.mlflow.register_model_version``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from platform_assets.core.model_version import Calibration
from platform_assets.core.reason_codes import ReasonCodes
from platform_assets.core.registry import MODEL_NAME
from platform_assets.ml import calibration, features, schema, synthetic
from platform_assets.ml.model import CNNConfig, build_cnn
from platform_assets.ml.train import choose_threshold, class_weights, fit_reason_codes, predict_cnn
from platform_assets.resources.mlflow import RegisteredVersion, register_model_version
from platform_assets.settings import EXPERIMENT_NAME


def synthetic_rows(
    days: int = 3, rows_per_day: int = 1000, seed: int = 7, start: date = date(2026, 10, 1)
) -> pd.DataFrame:
    """Raw records (with the target) from ``days`` synthetic daily partitions."""
    parts = [synthetic.generate_partition(start + timedelta(days=d), rows_per_day, seed) for d in range(days)]
    return pd.concat(parts, ignore_index=True)


def keras_inputs(raw: pd.DataFrame) -> dict[str, np.ndarray]:
    """Model inputs for raw rows through the feature code; every row must be valid."""
    featurized = features.featurize_rows(raw)
    invalid = featurized[features.REASON].notna()
    if invalid.any():
        raise ValueError(f"{int(invalid.sum())} invalid rows, first: {featurized[features.REASON][invalid].iloc[0]}")
    batch = features.batch_from_rows(featurized)
    return {"history": batch.tensor, "static": batch.static}


@dataclass
class TinyModel:
    """``model`` outputs the calibrated PD (``calibration`` built in, as training does), unless uncalibrated;
    ``rows`` are the raw rows it was trained on."""

    model: Any
    threshold: float
    rows: pd.DataFrame
    calibration: Calibration | None = None

    @cached_property
    def reason_codes(self) -> ReasonCodes:
        """Against the reference applicant of its training rows, as training derives it (registering needs it)."""
        return reasons_of(self.model, self.rows, self.threshold)


def reasons_of(model: Any, raw: pd.DataFrame, threshold: float) -> ReasonCodes:
    """The reason section training records, for ``model`` trained on the raw rows ``raw``."""
    return fit_reason_codes(model, raw, keras_inputs(raw), threshold, include_protected=False)


def train_tiny(
    raw: pd.DataFrame,
    *,
    seed: int = 1,
    epochs: int = 2,
    config: CNNConfig | None = None,
    calibration_method: str | None = None,
) -> TinyModel:
    """A few epochs of the project's CNN (small layers unless ``config`` says otherwise); with
    ``calibration_method`` ("platt", "isotonic" or "auto") calibrated on its own rows like training does."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras_inputs(raw)
    labels = raw[schema.TARGET].to_numpy(dtype="int64")
    config = config or CNNConfig(conv_filters=8, dense_units=16)
    model = build_cnn(schema.N_MONTHS, len(features.CHANNELS), inputs["static"].shape[1], config)
    model.fit(inputs, labels, epochs=epochs, batch_size=256, class_weight=class_weights(labels), verbose=0)
    if calibration_method is None:
        return TinyModel(model, choose_threshold(labels, predict_cnn(model, inputs)), raw)
    method = None if calibration_method == "auto" else calibration_method
    fitted = calibration.fit(calibration.logits_of(predict_cnn(model, inputs)), labels, method, seed=seed)
    served = calibration.calibrated_model(model, fitted)
    return TinyModel(served, choose_threshold(labels, predict_cnn(served, inputs)), raw, fitted)


def prepare_store(tracking_uri: str, artifact_root: Path) -> None:
    """Point MLflow at ``tracking_uri`` with the project experiment's artifacts under ``artifact_root``."""
    import mlflow

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    artifact_root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(EXPERIMENT_NAME) is None:
        client.create_experiment(EXPERIMENT_NAME, artifact_location=artifact_root.as_uri())
    mlflow.set_experiment(EXPERIMENT_NAME)


def register_tiny(
    tiny: TinyModel, example: dict[str, np.ndarray], *, model_name: str = MODEL_NAME
) -> RegisteredVersion:
    """Register ``tiny`` (Keras and ONNX, the export checked on ``example``) in a fresh MLflow run of the current
    tracking store, tagged like the asset does."""
    import mlflow

    with mlflow.start_run():
        return register_model_version(
            tiny.model,
            threshold=tiny.threshold,
            reason_codes=tiny.reason_codes,
            example_inputs={k: v[:5] for k, v in example.items()},
            check_inputs=example,
            model_name=model_name,
            dagster_run_id="serving-fixture",
        )
