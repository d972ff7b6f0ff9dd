"""Ed25519 manifests: roundtrip, tampering, wrong keys, missing files, key files and the signer resource."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from record_support import model_version

from platform_assets.core import manifest as manifests
from platform_assets.core import signing
from platform_assets.core.model_version import ModelVersion
from platform_assets.resources.signer import ModelSigner

MODEL_BYTES = b"PK\x03\x04 pretend this is a .keras zip" * 100
ONNX_BYTES = b"\x08\x08 pretend this is the ONNX export" * 100
ARTIFACTS = {"model.keras": MODEL_BYTES, "model.onnx": ONNX_BYTES}


def record() -> ModelVersion:
    return model_version("v7", model_sha256=manifests.sha256(MODEL_BYTES), onnx_sha256=manifests.sha256(ONNX_BYTES))


def signed(key: Any) -> tuple[bytes, bytes]:
    document = manifests.build_manifest(
        record=record(),
        evaluation={
            "model_version": "v7",
            "metrics": {"cnn": {"roc_auc": 0.77}},
            "best_baseline": "logistic_regression",
        },
        fairness_summary={"attributes": {"sex": {"disparate_impact_ratio": 0.93}}},
        documents={"model_version.json": "c" * 64},
        code={"git_commit": "unknown", "available": False, "dirty": None},
        libraries=manifests.library_versions(),
        key_id=signing.key_id(key),
        created_at="2026-10-06T13:00:00+00:00",
        dagster_run_id="dagster-run-2",
    )
    body = manifests.canonical_json(document)
    return body, signing.sign(key, body)


@pytest.fixture(scope="module")
def key() -> Any:
    return signing.generate_private_key()


def test_signed_manifest_verifies_and_is_canonical(key: Any) -> None:
    body, signature = signed(key)
    document = manifests.verify_manifest(body, signature, key.public_key(), ARTIFACTS)
    assert document["version"] == "v7" and document["signing"]["key_id"] == signing.key_id(key)
    assert document["artifacts"]["model.keras"]["sha256"] == manifests.sha256(MODEL_BYTES)
    assert body == manifests.canonical_json(json.loads(body)), "stored bytes are the canonical form"
    assert list(json.loads(body)) == sorted(json.loads(body))
    # The PEM of the public key works as well as the key object.
    pem = signing.public_pem(key.public_key())
    assert manifests.verify_manifest(body, signature.decode(), pem, ARTIFACTS) == document


def test_flipping_one_byte_of_an_artifact_fails_naming_the_file(key: Any) -> None:
    body, signature = signed(key)
    tampered = bytearray(MODEL_BYTES)
    tampered[100] ^= 0x01
    with pytest.raises(manifests.ArtifactHashMismatchError, match=r"model\.keras has sha256") as caught:
        manifests.verify_manifest(body, signature, key.public_key(), {**ARTIFACTS, "model.keras": bytes(tampered)})
    assert caught.value.name == "model.keras"


def test_the_service_verifies_only_the_artifact_it_runs(key: Any) -> None:
    """``require_all=False``: model.onnx alone verifies; altered, unlisted or no artifact still fail."""
    body, signature = signed(key)
    document = manifests.verify_manifest(
        body, signature, key.public_key(), {"model.onnx": ONNX_BYTES}, require_all=False
    )
    assert document["artifacts"]["model.onnx"]["sha256"] == manifests.sha256(ONNX_BYTES)
    with pytest.raises(manifests.MissingArtifactError, match=r"lists model\.keras, but no model\.keras"):
        manifests.verify_manifest(body, signature, key.public_key(), {"model.onnx": ONNX_BYTES})
    with pytest.raises(manifests.ArtifactHashMismatchError, match=r"model\.onnx has sha256") as caught:
        manifests.verify_manifest(body, signature, key.public_key(), {"model.onnx": MODEL_BYTES}, require_all=False)
    assert caught.value.name == "model.onnx"
    with pytest.raises(manifests.UnlistedArtifactError, match="does not list"):
        manifests.verify_manifest(body, signature, key.public_key(), {"extra.onnx": ONNX_BYTES}, require_all=False)
    with pytest.raises(manifests.MissingArtifactError, match="no artifact was supplied"):
        manifests.verify_manifest(body, signature, key.public_key(), {}, require_all=False)


def test_wrong_key_is_named_as_such(key: Any) -> None:
    body, signature = signed(key)
    other = signing.generate_private_key()
    with pytest.raises(manifests.WrongKeyError, match=signing.key_id(other.public_key())):
        manifests.verify_manifest(body, signature, other.public_key(), ARTIFACTS)


def test_a_changed_manifest_or_signature_is_a_bad_signature(key: Any) -> None:
    body, signature = signed(key)
    altered = body.replace(b'"threshold":0.41', b'"threshold":0.01')
    assert altered != body
    with pytest.raises(manifests.BadSignatureError, match="altered after signing"):
        manifests.verify_manifest(altered, signature, key.public_key(), ARTIFACTS)
    # The calibration (what turns the model's score into the served PD) is signed with the rest.
    recalibrated = body.replace(b'"slope":0.9', b'"slope":1.9')
    assert recalibrated != body
    with pytest.raises(manifests.BadSignatureError, match="altered after signing"):
        manifests.verify_manifest(recalibrated, signature, key.public_key(), ARTIFACTS)
    # So is the reason-code table a decline is explained with (its wording and its reference applicant).
    document = json.loads(body)
    assert document["reason_codes"] == record().reason_codes.model_dump(mode="json")
    reworded = body.replace(b"Payment delayed in the most recent month", b"Payment delayed recently")
    assert reworded != body
    with pytest.raises(manifests.BadSignatureError, match="altered after signing"):
        manifests.verify_manifest(reworded, signature, key.public_key(), ARTIFACTS)
    forged = signing.sign(signing.generate_private_key(), body)
    with pytest.raises(manifests.BadSignatureError):
        manifests.verify_manifest(body, forged, key.public_key(), ARTIFACTS)


@pytest.mark.parametrize(
    ("signature", "artifacts", "error", "message"),
    [
        (None, ARTIFACTS, manifests.UnsignedManifestError, "no signature"),
        (b"not base64 at all!", ARTIFACTS, manifests.UnsignedManifestError, "not base64"),
        ("sig", {}, manifests.MissingArtifactError, r"lists model\.keras, but no model\.keras was supplied"),
        (
            "sig",
            {**ARTIFACTS, "extra.bin": b"x"},
            manifests.UnlistedArtifactError,
            "does not list",
        ),
    ],
)
def test_missing_pieces_fail_with_a_specific_error(
    key: Any, signature: Any, artifacts: dict[str, bytes], error: type[Exception], message: str
) -> None:
    body, good = signed(key)
    with pytest.raises(error, match=message):
        manifests.verify_manifest(body, good if signature == "sig" else signature, key.public_key(), artifacts)
    assert issubclass(error, manifests.ManifestVerificationError)


def test_garbage_manifest_is_malformed(key: Any) -> None:
    with pytest.raises(manifests.MalformedManifestError):
        manifests.verify_manifest(b"{not json", signing.sign(key, b"{not json"), key.public_key(), {})


def test_keys_cli_creates_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    result = subprocess.run(
        [sys.executable, "-m", "platform_assets.governance.keys", "create", "--out-dir", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    private, public = out / signing.PRIVATE_KEY_FILE, out / signing.PUBLIC_KEY_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = signing.load_private_key_file(private)
    assert signing.key_id(key) == signing.key_id(signing.load_public_key_file(public)) in result.stdout
    again = subprocess.run(
        [sys.executable, "-m", "platform_assets.governance.keys", "create", "--out-dir", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 1 and "refusing to replace" in again.stderr
    assert signing.load_private_key_file(private).private_bytes_raw() == key.private_bytes_raw()


def test_local_signer_creates_a_demo_key_once_and_verifies_with_it(tmp_path: Path) -> None:
    signer = ModelSigner(demo_key_dir=str(tmp_path / "keys"), environment="local")
    first = signer.signing_key()
    assert (tmp_path / "keys" / signing.PRIVATE_KEY_FILE).is_file()
    assert signing.key_id(signer.signing_key()) == signing.key_id(first)
    assert signing.key_id(signer.verify_key()) == signing.key_id(first)
    assert "local demo key" in signer.key_source()


def test_staging_without_a_key_is_an_error_naming_the_settings(tmp_path: Path) -> None:
    signer = ModelSigner(demo_key_dir=str(tmp_path / "keys"), environment="staging")
    with pytest.raises(signing.SigningKeyError, match="PLATFORM_SIGNING_KEY_FILE"):
        signer.signing_key()
    with pytest.raises(signing.SigningKeyError, match="PLATFORM_VERIFY_KEY_FILE"):
        signer.verify_key()
    assert not (tmp_path / "keys").exists(), "no demo key outside local"


def test_keys_from_env_and_files_and_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private, public = signing.write_key_pair(tmp_path / "pair")
    monkeypatch.setenv("PLATFORM_SIGNING_KEY", private.read_text())
    signer = ModelSigner(public_key_file=str(public), environment="prod")
    assert signing.key_id(signer.signing_key()) == signing.key_id(signer.verify_key())
    assert signer.key_source() == "env $PLATFORM_SIGNING_KEY"
    monkeypatch.delenv("PLATFORM_SIGNING_KEY")
    missing = ModelSigner(private_key_file=str(tmp_path / "nope.pem"), environment="prod")
    with pytest.raises(signing.SigningKeyError, match=r"nope\.pem does not exist"):
        missing.signing_key()
    (tmp_path / "bad.pem").write_text("hello")
    with pytest.raises(signing.SigningKeyError, match=r"bad\.pem: not an unencrypted PEM private key"):
        ModelSigner(private_key_file=str(tmp_path / "bad.pem")).signing_key()


def test_code_version_outside_git_is_unknown_and_flagged(tmp_path: Path) -> None:
    assert manifests.code_version(tmp_path) == {"git_commit": "unknown", "available": False, "dirty": None}
    versions = manifests.library_versions()
    assert {"tensorflow", "keras", "dagster", "mlflow", "scikit-learn", "pandas", "numpy"} <= set(versions)
    assert versions["dagster"] == "1.13.27"
