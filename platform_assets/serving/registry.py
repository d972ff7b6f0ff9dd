"""The MLflow registry as the serving layer sees it: registering a version with the tags the service
verifies, and moving the ``champion`` / ``challenger`` aliases and the challenger's traffic weight.

``register_keras_model`` does what the ``default_risk_model`` asset does after training (log the model,
hash the stored ``data/model.keras``, tag the version), so both can share it.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_assets.ml import features
from platform_assets.settings import MODEL_NAME

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Registered-model tag: the challenger's share of traffic in percent (0..100).
WEIGHT_TAG = "challenger_weight"
#: Version tags the service reads (and verifies) when it loads a version.
THRESHOLD_TAG = "threshold"
FEATURE_SPEC_TAG = "feature_spec_version"
SHA_TAG = "model_keras_sha256"
MODEL_FILE = "data/model.keras"


@dataclass(frozen=True)
class RegisteredVersion:
    version: str  # registry version number, e.g. "3"
    label: str  # "v3": the model_version label used in the lake, responses, the log and metrics
    model_uri: str
    sha256: str
    model_bytes: bytes


def version_label(version: str | int) -> str:
    return f"v{version}"


def register_keras_model(
    model: Any,
    *,
    threshold: float,
    example_inputs: dict[str, Any],
    model_name: str = MODEL_NAME,
    dagster_run_id: str = "",
    extra_tags: dict[str, str] | None = None,
) -> RegisteredVersion:
    """Log ``model`` to the active MLflow run, register it and tag the version for serving.

    Tags: ``threshold``, ``feature_spec_version``, ``model_keras_sha256`` (of the bytes MLflow stored),
    ``lake_version`` and ``dagster_run_id``, plus ``extra_tags``.
    """
    import mlflow

    from platform_assets.ml.train import predict_cnn

    logged = mlflow.tensorflow.log_model(
        model,
        name="model",
        registered_model_name=model_name,
        signature=mlflow.models.infer_signature(example_inputs, predict_cnn(model, example_inputs)),
    )
    version = str(logged.registered_model_version)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(logged.model_uri, dst_path=tmp))
        model_bytes = (local / MODEL_FILE).read_bytes()
    sha = hashlib.sha256(model_bytes).hexdigest()
    tags = {
        THRESHOLD_TAG: repr(float(threshold)),
        FEATURE_SPEC_TAG: features.FEATURE_SPEC_VERSION,
        SHA_TAG: sha,
        "lake_version": version_label(version),
        "dagster_run_id": dagster_run_id,
        **(extra_tags or {}),
    }
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    return RegisteredVersion(version, version_label(version), logged.model_uri, sha, model_bytes)


def _client(tracking_uri: str | None) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def set_alias(alias: str, version: str | int, *, model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> None:
    """Point ``alias`` (champion or challenger) at ``version`` (``3`` or ``"v3"``)."""
    _client(tracking_uri).set_registered_model_alias(model_name, alias, str(version).removeprefix("v"))


def remove_alias(alias: str, *, model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> None:
    _client(tracking_uri).delete_registered_model_alias(model_name, alias)


def set_challenger_weight(percent: float, *, model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> None:
    """Route ``percent`` (0..100) of application IDs to the challenger."""
    if not 0.0 <= float(percent) <= 100.0:
        raise ValueError(f"challenger weight must be within 0..100 percent, got {percent}")
    _client(tracking_uri).set_registered_model_tag(model_name, WEIGHT_TAG, repr(float(percent)))
