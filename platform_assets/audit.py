"""The auditor's chain for a model version: manifest and signature -> Dagster and MLflow runs -> data.

    python -m platform_assets.audit --model-version v3
    python -m platform_assets.audit --prediction-id <id>     # prediction -> model version -> ...
    python -m platform_assets.audit --prediction-id <id> --recompute-reasons

The chain shows the version's promotion approval in force (who approved it, when, until when, and whether it is
valid now: signed by the platform key, bound to this manifest, unexpired); for a prediction also the approval that
was in force when it was served, if any. A version that was never approved is not an error (a challenger is
served before its approval); a tampered approval is.

A prediction's adverse-action reasons are printed as the service gave them (from the inference log);
``--recompute-reasons`` recomputes them from the logged application fields with the version's model and the
reason-code table of its signed manifest, and says whether they are the same.

Reads the lake (``PLATFORM_LAKE_URI`` / ``PLATFORM_HOME``) and verifies the manifest with the
configured public key (``PLATFORM_VERIFY_KEY_FILE``; locally the demo key under
``$PLATFORM_HOME/keys``). The run ids and partitions printed come from the *signed* manifest, so
they are only trusted when the signature line says ``VERIFIED``. Exit code 0 when the chain is
complete and verified (and recomputed reasons are the same), 1 when it is printed but does not verify (the manifest,
or an approval whose signature does not check out; or the recomputed reasons differ), 2 when it cannot be built.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platform_assets import model_store, settings
from platform_assets.core import lake_keys, registry, signing
from platform_assets.core import manifest as manifests
from platform_assets.core.approval import ApprovalStatus, approval_status
from platform_assets.core.model_version import MODEL_FILE, RECORD_FILE
from platform_assets.core.reason_codes import ReasonCodes
from platform_assets.defs.resources import signer as signer_for
from platform_assets.governance import approvals
from platform_assets.ml import reason_codes
from platform_assets.ml.train import predict_cnn
from platform_assets.resources.lake import LakeStorage, lake_from_uri
from platform_assets.resources.signer import ModelSigner


class AuditError(LookupError):
    """The chain cannot be built (unknown model version or prediction, no manifest)."""


@dataclass
class AuditChain:
    model: str
    model_version: str
    manifest_uri: str
    verified: bool
    signature_status: str
    manifest: dict[str, Any]
    prediction: dict[str, Any] | None = None
    #: "identical" or what differs, when the prediction's reasons were recomputed.
    reasons_recomputed: str | None = None
    #: The approval in force now (``ApprovalStatus.as_dict``), and the one in force when the prediction was served.
    approval: dict[str, Any] | None = None
    approval_at_prediction: dict[str, Any] | None = None
    #: sha256 of the manifest.json bytes audited (what an approval must be bound to).
    manifest_sha256: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        lineage, data = self.manifest.get("lineage", {}), self.manifest.get("data", {})
        return {
            "prediction": self.prediction,
            "reasons_recomputed": self.reasons_recomputed,
            "model": self.model,
            "model_version": self.model_version,
            "manifest": self.manifest_uri,
            "signature_verified": self.verified,
            "signature_status": self.signature_status,
            "trained_at": self.manifest.get("trained_at"),
            "code_version": self.manifest.get("code_version", {}).get("git_commit"),
            "dagster_run_id": lineage.get("training_dagster_run_id"),
            "manifest_dagster_run_id": lineage.get("manifest_dagster_run_id"),
            "mlflow_run_id": lineage.get("mlflow_run_id"),
            "mlflow_model_uri": lineage.get("mlflow_model_uri"),
            "data_partitions": data.get("data_versions", {}),
            "approval": self.approval,
            "approval_at_prediction": self.approval_at_prediction,
            "notes": self.notes,
        }


def default_lake() -> LakeStorage:
    config = settings.load()
    return lake_from_uri(settings.topology(config).lake_uri, endpoint_url=config.s3_endpoint)


def audit_model_version(
    model_version: str,
    *,
    lake: LakeStorage | None = None,
    signer: ModelSigner | None = None,
    model: str = registry.MODEL_NAME,
) -> AuditChain:
    """The chain of ``model_version`` (``vN``; a bare number is accepted), its manifest verified."""
    lake = lake or default_lake()
    signer = signer or signer_for(settings.load())
    try:
        info = model_store.load_record(lake, model_version, model)
    except (FileNotFoundError, ValueError) as error:
        raise AuditError(str(error)) from None
    version = info.version
    folder = lake_keys.model_dir(model, version)
    manifest_key = f"{folder}/{manifests.MANIFEST_FILE}"
    try:
        body = lake.read_bytes(manifest_key)
    except FileNotFoundError:
        raise AuditError(
            f"{model} {version} has no manifest ({lake.uri(manifest_key)}): materialize model_manifest; "
            "an unsigned model has no trustworthy lineage"
        ) from None
    sig_key = f"{folder}/{manifests.SIGNATURE_FILE}"
    signature = lake.read_bytes(sig_key) if lake.exists(sig_key) else None
    artifacts = model_store.artifact_bytes(lake, info)
    try:
        document = manifests.verify_manifest(body, signature, signer.verify_key(), artifacts)
        verified, status = True, f"VERIFIED (Ed25519, key {document['signing']['key_id']})"
    except (manifests.ManifestVerificationError, signing.SigningKeyError) as error:
        verified, status = False, f"NOT VERIFIED: {error}"
        try:
            document = json.loads(body)
        except ValueError:
            document = {}
    chain = AuditChain(model, version, lake.uri(manifest_key), verified, status, document)
    chain.manifest_sha256 = manifests.sha256(body)
    in_force = approvals.in_force(lake, version, model)
    chain.approval = check_approval(in_force, signer, chain, datetime.now(UTC)).as_dict()
    if document and document.get("lineage", {}).get("mlflow_run_id") != info.mlflow_run_id:
        chain.notes.append(f"{RECORD_FILE} and the manifest name different MLflow runs")
    return chain


def check_approval(document: Any, signer: ModelSigner, chain: AuditChain, when: datetime) -> ApprovalStatus:
    """``document`` (an approval of ``chain``'s version, or None) checked against the audited manifest at ``when``."""
    try:
        key = signer.verify_key()
    except signing.SigningKeyError as error:
        return ApprovalStatus("bad_signature", f"the approval cannot be checked: {error}")
    return approval_status(
        document,
        key,
        model_version=chain.model_version,
        manifest_sha256=chain.manifest_sha256,
        environment=signer.environment,
        now=when,
    )


def approval_when_served(
    lake: LakeStorage, signer: ModelSigner, chain: AuditChain, served_at: datetime
) -> ApprovalStatus:
    """The approval in force when a prediction was served (the newest given by then), checked as of then."""
    given = [a for a in approvals.history(lake, chain.model_version, chain.model) if a.approved_at <= served_at]
    return check_approval(given[-1] if given else None, signer, chain, served_at)


def lookup_prediction(prediction_id: str) -> dict[str, Any]:
    """The inference-log row of ``prediction_id`` (its ``model_version`` continues the chain)."""
    try:
        import sqlalchemy as sa

        from platform_assets.core.inference_log import schema as inference_log
    except ImportError as error:
        raise AuditError(f"the inference log is not available in this installation ({error})") from None
    url = settings.inference_db_url(settings.load())
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise AuditError(f"no inference log at {url}: no prediction was served with this configuration")
    engine = inference_log.make_engine(url)
    table = inference_log.predictions
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.select(table).where(table.c.prediction_id == prediction_id)).mappings().first()
    except sa.exc.OperationalError as error:
        raise AuditError(f"cannot read the inference log {url}: {error.orig}") from None
    finally:
        engine.dispose()
    if row is None:
        raise AuditError(f"no prediction {prediction_id!r} in the inference log {url}")
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(row).items()}


def audit_prediction(prediction_id: str, *, recompute_reasons: bool = False, **kwargs: Any) -> AuditChain:
    """prediction -> model version -> manifest -> runs -> data; with ``recompute_reasons`` the prediction's
    reasons are recomputed offline from the log and compared with the served ones."""
    prediction = lookup_prediction(prediction_id)
    chain = audit_model_version(str(prediction["model_version"]), **kwargs)
    chain.prediction = prediction
    served_at = datetime.fromisoformat(str(prediction["created_at"]))  # the log stores UTC without an offset
    chain.approval_at_prediction = approval_when_served(
        kwargs.get("lake") or default_lake(),
        kwargs.get("signer") or signer_for(settings.load()),
        chain,
        served_at if served_at.tzinfo else served_at.replace(tzinfo=UTC),
    ).as_dict()
    if recompute_reasons:
        chain.reasons_recomputed = recompute(prediction, chain, kwargs.get("lake") or default_lake())
    return chain


def recompute(prediction: dict[str, Any], chain: AuditChain, lake: LakeStorage) -> str:
    """Recompute a logged prediction's reasons with its version's verified model and signed reason table."""
    if not prediction.get("reasons"):
        raise AuditError(f"prediction {prediction['prediction_id']} was not explained (an approval that did not ask)")
    if not chain.verified:
        raise AuditError("the manifest does not verify: its reason-code table cannot be trusted to recompute")
    record = model_store.load_record(lake, chain.model_version, chain.model)
    key = model_store.version_key(record.version, MODEL_FILE, record.model)
    model = model_store.keras_from_bytes(model_store.read_verified(lake, key, record.model_sha256))
    codes = ReasonCodes.model_validate(chain.manifest["reason_codes"])

    def predict(tensor: Any, static: Any) -> Any:
        return predict_cnn(model, {"history": tensor, "static": static})

    (recomputed,) = reason_codes.recompute_from_log(
        [prediction], codes, predict, include_protected=record.feature_spec.include_protected
    )
    difference = reason_codes.difference(json.loads(prediction["reasons"]), recomputed)
    return "identical" if difference is None else f"DIFFERENT: {difference}"


def approval_line(status: dict[str, Any]) -> str:
    """``VALID: approved by ... until ...`` or the state and why, with who trained the version."""
    approval = status.get("approval")
    trained = f" (trained by {approval['trained_by']}, signed by {approval['key_id']})" if approval else ""
    return f"{status['state'].upper()}: {status['reason']}{trained}"


def approval_tampered(chain: AuditChain) -> bool:
    """An approval is recorded whose signature does not check out (a missing or expired one is no such failure)."""
    checked = (chain.approval, chain.approval_at_prediction)
    return any(status is not None and status["state"] == "bad_signature" for status in checked)


def format_chain(chain: AuditChain) -> str:
    d = chain.as_dict()
    lines = []
    if chain.prediction:
        p = chain.prediction
        lines += [
            f"prediction     {p['prediction_id']} at {p.get('created_at')}: probability {p.get('probability')}, "
            f"decision {p.get('decision')} (application {p.get('application_id')}, served as {p.get('role')})",
            *[
                f"  reason       {r['code']} {r['text']} (+{r['contribution']:.4f}): "
                + ", ".join(f"{k}={v} (reference {r['reference'][k]})" for k, v in r["fields"].items())
                for r in json.loads(p.get("reasons") or "[]")
            ],
            *([f"  recomputed   {chain.reasons_recomputed}"] if chain.reasons_recomputed else []),
            *(
                [f"  approval     when served: {approval_line(chain.approval_at_prediction)}"]
                if chain.approval_at_prediction
                else []
            ),
            "  -> model version",
        ]
    lines += [
        f"model          {d['model']} {d['model_version']} (trained {d['trained_at']}, code {d['code_version']})",
        f"manifest       {d['manifest']}",
        f"  signature    {d['signature_status']}",
        *([f"approval       {approval_line(chain.approval)}"] if chain.approval else []),
        f"dagster run    {d['dagster_run_id']} (training); manifest signed in run {d['manifest_dagster_run_id']}",
        f"mlflow run     {d['mlflow_run_id']} ({d['mlflow_model_uri']})",
        "data partitions (credit_history_tensors, data version = sha256):",
        *[f"  {partition}  {digest}" for partition, digest in sorted(d["data_partitions"].items())],
        *[f"note: {n}" for n in d["notes"]],
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.audit", description=__doc__.split("\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-version", help="model version, e.g. v3")
    target.add_argument("--prediction-id", help="a prediction id from the inference log")
    parser.add_argument("--json", action="store_true", help="print the chain as JSON")
    parser.add_argument(
        "--recompute-reasons", action="store_true", help="recompute the prediction's reasons offline and compare"
    )
    args = parser.parse_args(argv)
    if args.recompute_reasons and not args.prediction_id:
        parser.error("--recompute-reasons needs --prediction-id")
    try:
        if args.prediction_id:
            chain = audit_prediction(args.prediction_id, recompute_reasons=args.recompute_reasons)
        else:
            chain = audit_model_version(args.model_version)
    except (AuditError, signing.SigningKeyError) as error:
        print(f"audit: {error}", file=sys.stderr)
        return 2
    print(json.dumps(chain.as_dict(), indent=2, sort_keys=True) if args.json else format_chain(chain))
    failed = not chain.verified or approval_tampered(chain) or (chain.reasons_recomputed or "").startswith("DIFFERENT")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
