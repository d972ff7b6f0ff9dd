"""The signed model manifest: what a model version is made of and where it came from.

``manifest.json`` is canonical JSON (sorted keys, no whitespace, UTF-8) and ``manifest.sig`` is the
base64 Ed25519 signature of exactly those bytes. ``verify_manifest`` is the one check every
consumer runs (the ``manifest_verifies`` asset check, the audit CLI and the serving code before it
loads a model); it raises a ``ManifestVerificationError`` subclass naming what is wrong.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from platform_assets.core import signing
from platform_assets.core.model_version import ModelVersion

SCHEMA: Final = "credit-risk-platform/model-manifest/v1"
MANIFEST_FILE: Final = "manifest.json"
SIGNATURE_FILE: Final = "manifest.sig"
#: Distributions whose versions are recorded (the first installed of each alternative group).
LIBRARIES: Final = (
    ("tensorflow", "tensorflow-cpu"),
    ("keras",),
    ("tf2onnx",),
    ("onnx",),
    ("onnxruntime",),
    ("dagster",),
    ("mlflow",),
    ("scikit-learn",),
    ("pandas",),
    ("numpy",),
    ("fairlearn",),
    ("evidently",),
    ("cryptography",),
)


class ManifestVerificationError(ValueError):
    """A manifest, its signature or an artifact it lists does not check out."""


class UnsignedManifestError(ManifestVerificationError):
    """There is no signature (or it is not an Ed25519 signature at all)."""


class MalformedManifestError(ManifestVerificationError):
    """The manifest bytes are not a manifest document."""


class WrongKeyError(ManifestVerificationError):
    """The manifest was signed with a different key than the one used to verify it."""


class BadSignatureError(ManifestVerificationError):
    """The signature does not match the manifest bytes: the manifest or the signature was altered."""


class MissingArtifactError(ManifestVerificationError):
    """An artifact the manifest lists was not supplied."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class ArtifactHashMismatchError(ManifestVerificationError):
    """An artifact's bytes do not hash to the sha256 the manifest records."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class UnlistedArtifactError(ManifestVerificationError):
    """An artifact was supplied that the manifest does not list (so nothing vouches for it)."""


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8; NaN/inf refused (they are not JSON)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_version(repo_dir: str | Path) -> dict[str, Any]:
    """The git commit of ``repo_dir`` (``unknown`` + ``available: false`` outside a git checkout)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_dir,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "available": False, "dirty": None}
    return {"git_commit": commit, "available": True, "dirty": bool(status.strip())}


def library_versions(libraries: Iterable[tuple[str, ...]] = LIBRARIES) -> dict[str, str]:
    """``{distribution: version}``; ``not installed`` when no alternative of a group is installed."""
    out = {}
    for alternatives in libraries:
        for name in alternatives:
            try:
                out[alternatives[0]] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        else:
            out[alternatives[0]] = "not installed"
    return out


def build_manifest(
    *,
    record: ModelVersion,
    evaluation: Mapping[str, Any],
    fairness_summary: Mapping[str, Any],
    documents: Mapping[str, str],
    code: Mapping[str, Any],
    libraries: Mapping[str, str],
    key_id: str,
    created_at: str,
    dagster_run_id: str,
) -> dict[str, Any]:
    """The manifest of one model version, from its record and the governance reports.

    ``documents`` maps the lake documents the manifest was built from (model_version.json, evaluation.json,
    fairness.json) to their sha256, so an auditor can tell whether they changed since.
    """
    if evaluation.get("model_version") != record.version:
        raise ValueError(
            f"the evaluation belongs to {evaluation.get('model_version')}, not {record.model} {record.version}"
        )
    spec = record.feature_spec.model_dump(mode="json")
    return {
        "schema": SCHEMA,
        "model": record.model,
        "version": record.version,
        "registered_version": record.registered_version,
        "artifacts": {name: {"sha256": digest} for name, digest in sorted(record.artifacts.items())},
        "trained_at": record.trained_at.isoformat(),
        "threshold": record.threshold,
        "threshold_policy": record.threshold_policy.model_dump(mode="json"),
        # Built into the model artifact above; recorded so an auditor can recompute the served PD offline.
        "calibration": record.calibration.model_dump(mode="json"),
        # What every decline's reasons are computed with; the service serves only this signed table.
        "reason_codes": record.reason_codes.model_dump(mode="json"),
        "target": record.feature_spec.target,
        "feature_spec": spec,
        "feature_spec_version": record.feature_spec.version,
        "data": {
            "partitions": record.partitions,
            "data_versions": dict(record.data_versions),
            "split": record.split.model_dump(),
            "rows": dict(record.rows),
        },
        "code_version": dict(code),
        "libraries": dict(libraries),
        "metrics": {
            "test": evaluation["metrics"],
            "best_baseline": evaluation["best_baseline"],
            "baseline_run_id": evaluation.get("baseline_run_id"),
            "validation": dict(record.validation_metrics),
        },
        "fairness": dict(fairness_summary),
        "lineage": {
            "mlflow_run_id": record.mlflow_run_id,
            "mlflow_model_uri": record.mlflow_model_uri,
            "training_dagster_run_id": record.dagster_run_id,
            "manifest_dagster_run_id": dagster_run_id,
            "documents": dict(documents),
        },
        "signing": {"algorithm": "Ed25519", "key_id": key_id},
        "created_at": created_at,
    }


def fairness_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The per-attribute summary gaps of a fairness report (what the manifest and the card carry)."""
    return {
        "threshold": report["threshold"],
        "min_group_size": report["min_group_size"],
        "attributes": {
            name: {k: v for k, v in attribute["summary"].items() if k != "notes"}
            for name, attribute in report["attributes"].items()
        },
    }


def verify_manifest(
    manifest_bytes: bytes,
    signature: bytes | str | None,
    public_key: Ed25519PublicKey | bytes,
    artifact_bytes_by_name: Mapping[str, bytes],
    *,
    require_all: bool = True,
) -> dict[str, Any]:
    """Check the signature, the signing key and every artifact's sha256; return the manifest.

    ``signature`` is the content of ``manifest.sig``; ``public_key`` an Ed25519 key or its PEM bytes;
    ``artifact_bytes_by_name`` must hold exactly the files the manifest lists (e.g. ``model.keras`` and
    ``model.onnx``), or with ``require_all=False`` any of them (the service checks the one it runs,
    ``model.onnx``, and never downloads the others).
    Raises (all ``ManifestVerificationError``): ``UnsignedManifestError``, ``MalformedManifestError``,
    ``WrongKeyError``, ``BadSignatureError``, ``MissingArtifactError``, ``ArtifactHashMismatchError``,
    ``UnlistedArtifactError``.
    """
    key = public_key if isinstance(public_key, Ed25519PublicKey) else signing.load_public_key(public_key, "public key")
    if not signature:
        raise UnsignedManifestError("the manifest has no signature (manifest.sig missing or empty): refusing it")
    try:
        raw_signature = signing.decode_signature(signature)
    except ValueError as error:
        raise UnsignedManifestError(f"manifest.sig is not an Ed25519 signature: {error}") from None
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedManifestError(f"manifest.json is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise MalformedManifestError(f"manifest.json is not a {SCHEMA} document")
    label = f"manifest of {manifest.get('model')} {manifest.get('version')}"
    signed_by = (manifest.get("signing") or {}).get("key_id")
    verifying_with = signing.key_id(key)
    if signed_by != verifying_with:
        raise WrongKeyError(
            f"{label} was signed with key {signed_by}, but the configured public key is {verifying_with}: "
            "verify with the matching public key (PLATFORM_VERIFY_KEY_FILE) or re-sign the model"
        )
    if not signing.signature_matches(key, manifest_bytes, raw_signature):
        raise BadSignatureError(
            f"{label}: the signature does not match the manifest (key {verifying_with}): "
            "manifest.json or manifest.sig was altered after signing"
        )
    listed = manifest.get("artifacts") or {}
    if not listed:
        raise MalformedManifestError(f"{label} lists no artifacts")
    if not require_all and not artifact_bytes_by_name:
        raise MissingArtifactError("", f"no artifact was supplied to verify against the {label}")
    for name, entry in sorted(listed.items()):
        if name not in artifact_bytes_by_name:
            if not require_all:
                continue
            raise MissingArtifactError(name, f"{label} lists {name}, but no {name} was supplied to verify")
        actual = sha256(artifact_bytes_by_name[name])
        if actual != entry["sha256"]:
            raise ArtifactHashMismatchError(
                name,
                f"{name} has sha256 {actual}, but the signed {label} records {entry['sha256']}: "
                "the artifact was altered or replaced",
            )
    unlisted = sorted(set(artifact_bytes_by_name) - set(listed))
    if unlisted:
        raise UnlistedArtifactError(f"{label} does not list {unlisted}: nothing vouches for those files")
    return manifest
