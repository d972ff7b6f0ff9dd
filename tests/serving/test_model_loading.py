"""Loading versions into ONNX Runtime from a real MLflow store, with signed manifests: a version whose model.onnx
fails its hash or manifest check is refused with the reason in the status, and the previous one keeps serving."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from record_support import model_version
from serving_support import local_path, quiet

from platform_assets.core import manifest as manifests
from platform_assets.core import registry, signing
from platform_assets.core.approval import ApprovalSubject, sign_approval
from platform_assets.core.environment import Environment
from platform_assets.serving.registry_polling import ModelManager
from platform_assets.serving.settings import ServingSettings
from platform_assets.serving.signature import MANIFEST_ARTIFACT_DIR, VerifyKey

pytestmark = pytest.mark.slow


@dataclass
class Store:
    tracking_uri: str
    home: Path
    key: Any
    model: Any
    reason_codes: Any
    inputs: dict[str, np.ndarray]
    versions: dict[str, Any]


def sign_version(store: Store, registered: Any) -> None:
    """Log a signed manifest for ``registered`` to its run, as the model_manifest asset does."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store.tracking_uri)
    run_id = client.get_model_version(registry.MODEL_NAME, registered.version).run_id
    record = model_version(
        registered.label,
        model_sha256=registered.keras_sha256,
        onnx_sha256=registered.onnx_sha256,
        mlflow_run_id=run_id,
        mlflow_model_uri=registered.model_uri,
        reason_codes=store.reason_codes,
    )
    document = manifests.build_manifest(
        record=record,
        evaluation={"model_version": registered.label, "metrics": {}, "best_baseline": "logistic_regression"},
        fairness_summary={},
        documents={},
        code={"git_commit": "unknown", "available": False, "dirty": None},
        libraries={},
        key_id=signing.key_id(store.key),
        created_at="2026-11-30T09:00:00+00:00",
        dagster_run_id="test",
    )
    body = manifests.canonical_json(document)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in ((manifests.MANIFEST_FILE, body), (manifests.SIGNATURE_FILE, signing.sign(store.key, body))):
            (Path(tmp) / name).write_bytes(data)
            client.log_artifact(run_id, str(Path(tmp) / name), MANIFEST_ARTIFACT_DIR)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    import model_support

    home = tmp_path_factory.mktemp("loading")
    tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
    with quiet():
        model_support.prepare_store(tracking_uri, home / "artifacts")
        # As the serving tests' v1: a model that ranks (a constant one has no reference applicant to explain by).
        rows = model_support.synthetic_rows(days=3, rows_per_day=1000, seed=7)
        inputs = model_support.keras_inputs(rows)
        tiny = model_support.train_tiny(rows, seed=1, epochs=2, calibration_method="platt")
        versions = {}
        for _ in range(3):
            registered = model_support.register_tiny(tiny, inputs)
            versions[registered.label] = registered
    created = Store(tracking_uri, home, signing.generate_private_key(), tiny.model, tiny.reason_codes, inputs, versions)
    for registered in versions.values():
        sign_version(created, registered)
    return created


def manager(store: Store, verified: bool = True) -> ModelManager:
    settings = ServingSettings(
        tracking_uri=store.tracking_uri, platform_home=store.home, platform_env=Environment.LOCAL, onnx_threads=1
    )
    key = VerifyKey(store.key.public_key(), "test key") if verified else VerifyKey(None, "none (PLATFORM_ENV=local)")
    return ModelManager(settings, verify_key=key)


def onnx_path(store: Store, version: str) -> Path:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store.tracking_uri)
    return local_path(client.get_model_version_download_uri(registry.MODEL_NAME, version)) / registry.MODEL_FILE


def flip_a_byte(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return bytes(data)


def test_a_signed_version_serves_through_onnx_runtime_like_keras(store: Store) -> None:
    from platform_assets.ml.train import predict_cnn

    registry.set_alias(registry.CHAMPION, store.versions["v1"].version, tracking_uri=store.tracking_uri)
    models = manager(store)
    champion = models.refresh().champion
    assert champion is not None and champion.label == "v1"
    assert champion.sha256 == store.versions["v1"].onnx_sha256
    status = models.status()["models"]["champion"]
    assert status["signature"].startswith("verified (Ed25519") and status["sha256"] == champion.sha256
    assert status["backend"].startswith("onnxruntime ") and "1 intra-op" in status["backend"]
    probabilities = champion.predict(store.inputs["history"], store.inputs["static"])
    np.testing.assert_allclose(probabilities, predict_cnn(store.model, store.inputs), atol=1e-5)


def test_a_tampered_model_onnx_is_refused_and_the_previous_version_keeps_serving(store: Store) -> None:
    registry.set_alias(registry.CHAMPION, store.versions["v1"].version, tracking_uri=store.tracking_uri)
    models = manager(store)
    assert models.refresh().champion is not None
    flip_a_byte(onnx_path(store, store.versions["v2"].version))
    registry.set_alias(registry.CHAMPION, store.versions["v2"].version, tracking_uri=store.tracking_uri)
    current = models.refresh()
    assert current.champion is not None and current.champion.label == "v1"
    status = models.status()
    reason = status["refused"]["v2"]
    assert "manifest verification failed (ArtifactHashMismatchError)" in reason and "model.onnx" in reason, reason
    assert status["champion"] == "v1" and status["ready"] is True


def test_unloadable_bytes_are_refused_even_when_every_hash_agrees(store: Store) -> None:
    """Without a verify key (local), the registry's sha256 tag is the check: retagged garbage still does not
    load, and ONNX Runtime's reason is in the status."""
    import mlflow

    registry.set_alias(registry.CHAMPION, store.versions["v1"].version, tracking_uri=store.tracking_uri)
    models = manager(store, verified=False)
    assert models.refresh().champion is not None
    path = onnx_path(store, store.versions["v3"].version)
    path.write_bytes(b"not an onnx graph")
    client = mlflow.MlflowClient(tracking_uri=store.tracking_uri)
    client.set_model_version_tag(
        registry.MODEL_NAME, store.versions["v3"].version, registry.SHA_TAG, manifests.sha256(path.read_bytes())
    )
    registry.set_alias(registry.CHAMPION, store.versions["v3"].version, tracking_uri=store.tracking_uri)
    assert models.refresh().champion.label == "v1"  # type: ignore[union-attr]
    assert "does not load in ONNX Runtime" in models.status()["refused"]["v3"]


def test_the_status_shows_an_approval_given_while_the_version_serves(store: Store) -> None:
    """The approval is given after v1 was loaded (as a challenger is approved while it serves); the next poll shows it
    without reloading v1."""
    import mlflow

    registry.set_alias(registry.CHAMPION, store.versions["v1"].version, tracking_uri=store.tracking_uri)
    models = manager(store)
    assert models.refresh().champion is not None
    assert models.status()["models"]["champion"]["approval"]["state"] == "missing"
    client = mlflow.MlflowClient(tracking_uri=store.tracking_uri)
    version = store.versions["v1"].version
    run_id = client.get_model_version(registry.MODEL_NAME, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{MANIFEST_ARTIFACT_DIR}/{manifests.MANIFEST_FILE}", dst_path=tmp
            )
        ).read_bytes()
    client.set_model_version_tag(registry.MODEL_NAME, version, registry.MANIFEST_SHA_TAG, manifests.sha256(body))
    subject = ApprovalSubject(registry.MODEL_NAME, "v1", manifests.sha256(body), "sensor:accuracy_drop_sensor")
    approval = sign_approval(
        store.key, subject, approved_by="Jane Roe", reason="reviewed", environment="local", now=datetime.now(UTC)
    )
    client.set_model_version_tag(registry.MODEL_NAME, version, registry.PROMOTION_APPROVAL_TAG, approval.to_json())
    loaded = models.refresh().champion
    assert loaded is not None and loaded.label == "v1"
    shown = models.status()["models"]["champion"]["approval"]
    assert shown["state"] == "valid", shown
    assert shown["approval"]["approved_by"] == "Jane Roe"
    assert shown["approval"]["expires_at"] == approval.expires_at.isoformat()


def test_the_logged_keras_model_reloads_and_pins_its_environment(store: Store) -> None:
    """The Keras model logged beside the ONNX one (the audit's second opinion) names the distributions it loads with
    at this environment's versions, and loads back through MLflow to the same scores."""
    import importlib.metadata

    import mlflow

    from platform_assets.ml.train import predict_cnn
    from platform_assets.resources.mlflow import KERAS_REQUIREMENTS

    uri = store.versions["v1"].keras_model_uri
    # models:/<id> resolves through the process-wide URIs only: set for this test, put back after (they would leak
    # into later tests).
    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.tracking_uri)
    try:
        with tempfile.TemporaryDirectory() as tmp, quiet():
            logged = Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
            requirements = (logged / "requirements.txt").read_text()
            reloaded = mlflow.tensorflow.load_model(uri)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    pinned = {line.split("==")[0]: line.split("==")[1] for line in requirements.split() if "==" in line}
    for name in KERAS_REQUIREMENTS:
        assert pinned.get(name) == importlib.metadata.version(name), requirements
    np.testing.assert_allclose(predict_cnn(reloaded, store.inputs), predict_cnn(store.model, store.inputs), atol=1e-6)
