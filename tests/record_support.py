"""Model-version records for tests that need one without training a model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from platform_assets import model_store
from platform_assets.core import lake_keys, signing
from platform_assets.core import manifest as manifests
from platform_assets.core.model_version import (
    MODEL_FILE,
    ONNX_FILE,
    Calibration,
    FeatureSpec,
    ModelVersion,
    SplitSpec,
    ThresholdPolicy,
)
from platform_assets.ml import features, reason_codes, schema
from platform_assets.resources.lake import LakeStorage

MODEL = "default_risk_model"


def feature_spec() -> FeatureSpec:
    return FeatureSpec.model_validate(features.feature_spec(include_protected=False))


def model_version(
    version: str = "v1", *, model_sha256: str = "0" * 64, onnx_sha256: str = "1" * 64, **overrides: Any
) -> ModelVersion:
    """A valid record of ``version``; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "model": MODEL,
        "version": version,
        "registered_version": version.removeprefix("v"),
        "mlflow_run_id": f"mlflow-run-{version}",
        "mlflow_model_uri": f"models:/m-{version}",
        "dagster_run_id": f"dagster-run-{version}",
        "trained_at": datetime(2026, 10, 6, 12, 0, tzinfo=UTC),
        "artifacts": {MODEL_FILE: model_sha256, ONNX_FILE: onnx_sha256},
        "threshold": 0.41,
        "threshold_policy": ThresholdPolicy(kind="approval_rate", target_approval_rate=0.7),
        "calibration": Calibration(
            method="platt", slope=0.9, intercept=-1.2, validation_log_loss={"platt": 0.45}, validation_rows=100
        ),
        "reason_codes": reason_codes.reason_codes(
            {f: 0 if f in schema.PAY_COLUMNS else 20_000 for f in schema.FEATURE_COLUMNS},
            0.12,
            500,
        ),
        "best_epoch": 3,
        "feature_spec": feature_spec(),
        "data_versions": {"2026-10-05": "a" * 64, "2026-10-06": "b" * 64},
        "split": SplitSpec(validation=0.1, test=0.2, seed=42),
        "rows": {"train": 700, "validation": 100, "test": 200},
        "validation_metrics": {"roc_auc": 0.80, "accuracy": 0.80},
        "training_config": {"epochs": 3},
    }
    fields.update(overrides)
    return ModelVersion(**fields)


def publish_signed(lake: LakeStorage, info: ModelVersion, key: Any) -> bytes:
    """Publish ``info`` with a manifest signed by ``key`` beside it; return the manifest's bytes."""
    folder = lake_keys.model_dir(info.model, info.version)
    model_store.publish(lake, info)
    body = manifests.canonical_json(
        manifests.build_manifest(
            record=info,
            evaluation={"model_version": info.version, "metrics": {}, "best_baseline": "logistic_regression"},
            fairness_summary={},
            documents={},
            code={"git_commit": "abc123", "available": True, "dirty": False},
            libraries={},
            key_id=signing.key_id(key),
            created_at=datetime.now(UTC).isoformat(),
            dagster_run_id="dagster-run-10",
        )
    )
    lake.write_bytes(f"{folder}/manifest.json", body)
    lake.write_bytes(f"{folder}/manifest.sig", signing.sign(key, body))
    return body


def registry_without_artifacts(home: Any, versions: int = 4, model_name: str = MODEL) -> str:
    """The tracking URI of a real MLflow registry under ``home`` with versions 1..``versions`` of ``model_name``
    and no artifacts: for tests of aliases and tags only."""
    import mlflow

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(model_name)
    for _ in range(versions):
        client.create_model_version(model_name, source=(home / "model").as_uri())
    return uri
