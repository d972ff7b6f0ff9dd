"""The signed manifest of a model version, checked by the service before the version may serve.

The ``model_manifest`` asset logs ``manifest.json`` and ``manifest.sig`` to the model version's MLflow
run under ``governance/`` and tags the version with ``manifest_sha256``. When the service loads a
version it downloads both beside the model and runs ``core.manifest.verify_manifest`` with the
configured public key over the very ``model.onnx`` bytes it is about to load (the manifest's other
artifacts, such as ``model.keras``, are not the service's to download). It also checks that the
manifest is the one of *this* registry version and run, so a valid manifest copied from another
version is refused too.

The public key (``ServingSettings``), first found:

1. ``CREDIT_RISK_VERIFY_KEY_FILE`` (the service's own setting),
2. ``PLATFORM_VERIFY_KEY_FILE`` (the key the Dagster checks and the audit CLI use),
3. ``PLATFORM_ENV=local`` only: the local demo key ``$PLATFORM_HOME/keys/verify_key.pem`` if it exists.

With a key, verification is mandatory: an unsigned, tampered or mismatching version is refused (the
reason is logged and listed under ``refused`` in ``/admin/status``) and the previous model keeps
serving. A key file that is configured but missing or not an Ed25519 public key refuses every version
(with that reason) rather than serving unverified models.

Without any key, ``PLATFORM_ENV=local`` serves versions **unverified**: a loud warning per version and
``"signature": "unverified: ..."`` in ``/admin/status``. In ``staging`` and ``prod`` a missing key
refuses every version.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from platform_assets.core import manifest as manifests
from platform_assets.core import signing
from platform_assets.core.environment import Environment
from platform_assets.core.model_version import ONNX_FILE
from platform_assets.core.registry import MANIFEST_SHA_TAG
from platform_assets.serving.settings import ServingSettings

logger = logging.getLogger(__name__)

VERIFY_KEY_ENV: Final = "CREDIT_RISK_VERIFY_KEY_FILE"
PLATFORM_VERIFY_KEY_ENV: Final = "PLATFORM_VERIFY_KEY_FILE"
#: Artifact folder of the model version's MLflow run that holds manifest.json and manifest.sig.
MANIFEST_ARTIFACT_DIR: Final = "governance"
#: The name the manifest gives the served file (``model.onnx`` in the MLflow model too).
MANIFEST_MODEL_ARTIFACT: Final = ONNX_FILE
UNVERIFIED_PREFIX: Final = "unverified"


class SignatureRefused(Exception):
    """The version's manifest is missing, does not verify, or belongs to another version."""


@dataclass(frozen=True)
class VerifyKey:
    """The key the service verifies manifests with, or why there is none."""

    key: Ed25519PublicKey | None
    source: str
    #: Set when a key is configured but unusable, or required (not local) but absent: refuse everything.
    error: str | None = None

    @property
    def key_id(self) -> str | None:
        return signing.key_id(self.key) if self.key is not None else None

    def describe(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "source": self.source, "error": self.error}

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> VerifyKey:
        """The key ``settings`` configure (see the module docstring for the order), or why there is none."""
        for name, path in (
            (VERIFY_KEY_ENV, settings.verify_key_file),
            (PLATFORM_VERIFY_KEY_ENV, settings.platform_verify_key_file),
        ):
            if path is not None:
                try:
                    return cls(signing.load_public_key_file(path), f"{name}={path}")
                except signing.SigningKeyError as error:
                    return cls(None, f"{name}={path}", f"the configured verify key is unusable: {error}")
        if settings.platform_env != Environment.LOCAL:
            return cls(
                None,
                "none",
                f"no manifest verify key configured in the {settings.platform_env.value!r} environment: set "
                f"{VERIFY_KEY_ENV} to the Ed25519 public key (verify_key.pem) of the key that signs the manifests",
            )
        demo = settings.platform_home / "keys" / signing.PUBLIC_KEY_FILE
        if demo.is_file():
            try:
                return cls(signing.load_public_key_file(demo), f"local demo key {demo}")
            except signing.SigningKeyError as error:
                return cls(None, f"local demo key {demo}", f"the local demo verify key is unusable: {error}")
        return cls(None, "none (PLATFORM_ENV=local)")


def _download_manifest(client: Any, tracking_uri: str, run_id: str, dst: Path) -> tuple[bytes, bytes | None]:
    """``manifest.json`` and ``manifest.sig`` (None when absent) of ``run_id``; SignatureRefused without a manifest."""
    import mlflow

    listed = {Path(a.path).name for a in client.list_artifacts(run_id, MANIFEST_ARTIFACT_DIR)} if run_id else set()
    if manifests.MANIFEST_FILE not in listed:
        raise SignatureRefused(
            f"unsigned: MLflow run {run_id or '(none)'} has no {MANIFEST_ARTIFACT_DIR}/{manifests.MANIFEST_FILE} "
            "(materialize model_manifest for this version)"
        )

    def fetch(name: str) -> bytes:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{MANIFEST_ARTIFACT_DIR}/{name}", dst_path=str(dst), tracking_uri=tracking_uri
        )
        return Path(path).read_bytes()

    body = fetch(manifests.MANIFEST_FILE)
    signature = fetch(manifests.SIGNATURE_FILE) if manifests.SIGNATURE_FILE in listed else None
    return body, signature


def verify_version(
    client: Any,
    tracking_uri: str,
    *,
    version: str,
    run_id: str,
    tags: Mapping[str, str],
    model_bytes: bytes,
    verify_key: VerifyKey,
    label: str,
    signed_sections: Mapping[str, Any] | None = None,
) -> str:
    """Verify the signed manifest of registry ``version`` against ``model_bytes``; the status for /admin/status.

    ``signed_sections``: manifest sections (e.g. ``reason_codes``) the service will use from elsewhere; each must
    equal the signed one. Raises ``SignatureRefused`` with the reason when the version must not serve.
    """
    if verify_key.error is not None:
        raise SignatureRefused(verify_key.error)
    if verify_key.key is None:
        status = f"{UNVERIFIED_PREFIX}: no verify key configured (PLATFORM_ENV=local); set {VERIFY_KEY_ENV}"
        logger.warning(
            "!!! SERVING %s WITHOUT SIGNATURE VERIFICATION: no manifest verify key is configured and PLATFORM_ENV "
            "is local; set %s (outside local development a missing key refuses every model) !!!",
            label,
            VERIFY_KEY_ENV,
        )
        return status
    with tempfile.TemporaryDirectory(prefix="credit-risk-manifest-") as tmp:
        body, signature = _download_manifest(client, tracking_uri, run_id, Path(tmp))
    try:
        document = manifests.verify_manifest(
            body, signature, verify_key.key, {MANIFEST_MODEL_ARTIFACT: model_bytes}, require_all=False
        )
    except manifests.ManifestVerificationError as error:
        raise SignatureRefused(f"manifest verification failed ({type(error).__name__}): {error}") from None
    signed_version = str(document.get("registered_version"))
    signed_run = (document.get("lineage") or {}).get("mlflow_run_id")
    if signed_version != str(version) or signed_run != run_id:
        raise SignatureRefused(
            f"mismatching manifest: it is signed for registry version {signed_version} (run {signed_run}), "
            f"not version {version} (run {run_id})"
        )
    for section, value in (signed_sections or {}).items():
        if document.get(section) != value:
            raise SignatureRefused(f"mismatching manifest: its {section!r} differ from the ones the version would use")
    tagged = tags.get(MANIFEST_SHA_TAG)
    if tagged and tagged != hashlib.sha256(body).hexdigest():
        raise SignatureRefused(
            f"mismatching manifest: the {MANIFEST_SHA_TAG} tag is {tagged}, the logged manifest.json has "
            f"{hashlib.sha256(body).hexdigest()} (a newer manifest was tagged but not logged, or it was replaced)"
        )
    # The manifest's sha256 lets an operator match what this process verified with the version's tag.
    return (
        f"verified (Ed25519, key {document['signing']['key_id']}, manifest of {document['version']}, "
        f"sha256 {hashlib.sha256(body).hexdigest()})"
    )
