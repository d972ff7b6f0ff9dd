"""A platform with signed model versions to approve: a lake, a real SQLite MLflow registry and a key pair."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from record_support import model_version, publish_signed

from platform_assets.core import lake_keys, registry, signing
from platform_assets.core import manifest as manifests
from platform_assets.resources.lake import LocalLake
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.signer import ModelSigner

#: Who launched the training of each version of the fixture: a person for v1, a sensor for v2.
TRAINERS = {"v1": "user:jdoe", "v2": "sensor:accuracy_drop_sensor"}


@dataclass
class ApprovalPlatform:
    home: Path
    lake: LocalLake
    model_registry: ModelRegistry
    signer: ModelSigner
    private_key: Path
    public_key: Path
    manifests: dict[str, str]

    def tags(self, version: str) -> dict[str, str]:
        found = self.model_registry.client().get_model_version(registry.MODEL_NAME, version.removeprefix("v"))
        return dict(found.tags)


def build_template(root: Path) -> None:
    """v1 and v2 in a lake (records with their trainer, signed manifests) and in a SQLite MLflow registry (tagged as
    training and model_manifest tag them), with the key pair, under ``root``: built once, copied per test (creating
    an MLflow database takes seconds)."""
    private, _ = signing.write_key_pair(root / "keys")
    key = signing.load_private_key_file(private)
    lake = LocalLake(root=str(root / "lake"))
    (root / "mlflow").mkdir(parents=True, exist_ok=True)
    client = ModelRegistry(tracking_uri=tracking_uri(root), model_name=registry.MODEL_NAME).client()
    client.create_registered_model(registry.MODEL_NAME)
    for label, trainer in TRAINERS.items():
        folder = lake_keys.model_dir(registry.MODEL_NAME, label)
        record = model_version(
            label,
            model_sha256=lake.write_bytes(f"{folder}/model.keras", f"keras {label}".encode()),
            onnx_sha256=lake.write_bytes(f"{folder}/model.onnx", f"onnx {label}".encode()),
            launched_by=trainer,
        )
        body = publish_signed(lake, record, key)
        created = client.create_model_version(registry.MODEL_NAME, source=(root / label).as_uri())
        assert f"v{created.version}" == label
        for tag, value in ((registry.MANIFEST_SHA_TAG, manifests.sha256(body)), (registry.LAUNCHED_BY_TAG, trainer)):
            client.set_model_version_tag(registry.MODEL_NAME, created.version, tag, value)


def tracking_uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"


def use_platform(
    template: Path, home: Path, monkeypatch: pytest.MonkeyPatch, environment: str = "staging"
) -> ApprovalPlatform:
    """A copy of ``template`` in ``home``; the platform settings (``PLATFORM_*``) point at it."""
    shutil.copytree(template, home, dirs_exist_ok=True)
    private, public = home / "keys" / signing.PRIVATE_KEY_FILE, home / "keys" / signing.PUBLIC_KEY_FILE
    lake = LocalLake(root=str(home / "lake"))
    for name, value in {
        "PLATFORM_ENV": environment,
        "PLATFORM_HOME": str(home),
        "PLATFORM_LAKE_URI": lake.root,
        "PLATFORM_SIGNING_KEY_FILE": str(private),
        "PLATFORM_VERIFY_KEY_FILE": str(public),
        "MLFLOW_TRACKING_URI": tracking_uri(home),
    }.items():
        monkeypatch.setenv(name, value)
    shas = {
        label: manifests.sha256(lake.read_bytes(f"{lake_keys.model_dir(registry.MODEL_NAME, label)}/manifest.json"))
        for label in TRAINERS
    }
    return ApprovalPlatform(
        home,
        lake,
        ModelRegistry(tracking_uri=tracking_uri(home), model_name=registry.MODEL_NAME),
        ModelSigner(private_key_file=str(private), public_key_file=str(public), environment=environment),
        private,
        public,
        shas,
    )
