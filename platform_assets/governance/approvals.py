"""Promotion approvals on the control plane: what a version is (lake + registry), the signed approval's storage.

An approval is stored twice, in this order: the lake keeps every approval given
(``models/<model>/<version>/approvals/<approved_at>.json``) and the one in force (``approval.json``, replaced by a
newer one); then the MLflow version tag ``promotion_approval`` carries the same compact JSON, so the service and the
rollout read it without the lake. The tag is written last: if it fails, the command fails and nothing that gates a
rollout says "approved". The CLI (``python -m platform_assets.approve``) and the ``promotion_approval`` asset both
call ``approve``; ``status_from_registry`` is what a rollout asks before it promotes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from platform_assets import model_store
from platform_assets.core import manifest as manifests
from platform_assets.core import registry, signing
from platform_assets.core.approval import (
    ApprovalRefused,
    ApprovalStatus,
    ApprovalSubject,
    PromotionApproval,
    approval_status,
    parse_approval,
    sign_approval,
)
from platform_assets.core.model_version import version_label
from platform_assets.resources.lake import LakeStorage, content_hash
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.signer import ModelSigner

#: The approval in force, in the version's lake folder; ``HISTORY_DIR`` keeps every approval given.
APPROVAL_FILE: Final = "approval.json"
HISTORY_DIR: Final = "approvals"


def version_tags(model_registry: ModelRegistry, version: str) -> dict[str, str]:
    """The registry tags of ``version``; ``ApprovalRefused`` naming it when the registry has no such version."""
    from mlflow.exceptions import MlflowException

    label = version_label(version)
    try:
        found = model_registry.client().get_model_version(model_registry.model_name, label.removeprefix("v"))
    except MlflowException as error:
        if getattr(error, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ApprovalRefused(
            f"unknown version {label}: the registry has no {model_registry.model_name} version {label[1:]}"
        ) from None
    return dict(found.tags or {})


def subject(lake: LakeStorage, model_registry: ModelRegistry, signer: ModelSigner, version: str) -> ApprovalSubject:
    """What is to be approved: ``version``'s record, its verified manifest's sha256, its trainer and retirement.

    ``ApprovalRefused`` when the version is unknown (lake or registry), its manifest does not verify, or the lake
    and the registry disagree on its manifest or its trainer.
    """
    try:
        label = version_label(version)
        record = model_store.load_record(lake, label, model_registry.model_name)
    except (FileNotFoundError, ValueError) as error:
        raise ApprovalRefused(f"unknown version {version!r}: {error}") from None
    tags = version_tags(model_registry, label)
    manifest_key = model_store.version_key(label, manifests.MANIFEST_FILE, record.model)
    manifest_sha = None
    if lake.exists(manifest_key):
        body = lake.read_bytes(manifest_key)
        signature_key = model_store.version_key(label, manifests.SIGNATURE_FILE, record.model)
        signature = lake.read_bytes(signature_key) if lake.exists(signature_key) else None
        try:
            manifests.verify_manifest(body, signature, signer.verify_key(), model_store.artifact_bytes(lake, record))
        except (manifests.ManifestVerificationError, signing.SigningKeyError) as error:
            raise ApprovalRefused(f"the manifest of {label} does not verify, it cannot be approved: {error}") from None
        manifest_sha = content_hash(body)
        tagged = tags.get(registry.MANIFEST_SHA_TAG)
        if tagged != manifest_sha:
            raise ApprovalRefused(
                f"the registry tags {label} with manifest {tagged or '(none)'}, the lake's manifest is {manifest_sha}: "
                f"rematerialize model_manifest for {label} before approving it"
            )
    tagged_trainer = tags.get(registry.LAUNCHED_BY_TAG)
    if record.launched_by and tagged_trainer and record.launched_by != tagged_trainer:
        raise ApprovalRefused(
            f"{label}'s record says {record.launched_by!r} launched its training, its {registry.LAUNCHED_BY_TAG} "
            f"tag says {tagged_trainer!r}: one was altered"
        )
    return ApprovalSubject(
        model=record.model,
        model_version=label,
        manifest_sha256=manifest_sha,
        trained_by=record.launched_by or tagged_trainer,
        retired_at=tags.get(registry.RETIRED_TAG) or None,
    )


def history_key(approval: PromotionApproval) -> str:
    """``approvals/<approved_at>-<digest>.json``: sorts by time, and two approvals in one second both stay."""
    stamp = approval.approved_at.strftime("%Y%m%dT%H%M%S.%fZ")
    digest = content_hash(approval.to_json().encode("utf-8"))[:12]
    return model_store.version_key(approval.model_version, f"{HISTORY_DIR}/{stamp}-{digest}.json", approval.model)


def record(lake: LakeStorage, model_registry: ModelRegistry, approval: PromotionApproval) -> str:
    """Store ``approval`` (history, then the one in force, then the registry tag); return the lake key in force."""
    document = approval.to_json()
    lake.write_text(history_key(approval), document)
    key = in_force_key(approval.model_version, approval.model)
    lake.write_text(key, document)
    model_registry.client().set_model_version_tag(
        approval.model, approval.model_version.removeprefix("v"), registry.PROMOTION_APPROVAL_TAG, document
    )
    return key


def approve(
    lake: LakeStorage,
    model_registry: ModelRegistry,
    signer: ModelSigner,
    version: str,
    *,
    approved_by: str,
    reason: str,
    valid_hours: float,
    now: datetime,
    auto: bool = False,
    log: Any = None,
) -> PromotionApproval:
    """Sign and store the approval of ``version`` by ``approved_by``; ``ApprovalRefused`` says why it must not be."""
    target = subject(lake, model_registry, signer, version)
    approval = sign_approval(
        signer.signing_key(log),
        target,
        approved_by=approved_by,
        reason=reason,
        environment=signer.environment,
        now=now,
        valid_hours=valid_hours,
        auto=auto,
    )
    record(lake, model_registry, approval)
    return approval


def history(lake: LakeStorage, version: str, model: str = registry.MODEL_NAME) -> list[PromotionApproval]:
    """Every approval ``version`` was given, oldest first."""
    label = version_label(version)
    prefix = model_store.version_key(label, f"{HISTORY_DIR}/", model)
    approvals = [parse_approval(lake.read_text(key)) for key in lake.list_keys(prefix) if key.endswith(".json")]
    return sorted(approvals, key=lambda approval: approval.approved_at)


def in_force_key(version: str, model: str = registry.MODEL_NAME) -> str:
    return model_store.version_key(version_label(version), APPROVAL_FILE, model)


def in_force(lake: LakeStorage, version: str, model: str = registry.MODEL_NAME) -> str | None:
    """The approval document in force for ``version`` in the lake, or None."""
    key = in_force_key(version, model)
    return lake.read_text(key) if lake.exists(key) else None


def status_from_registry(
    model_registry: ModelRegistry,
    public_key: Ed25519PublicKey,
    version: str,
    *,
    environment: str,
    now: datetime,
) -> ApprovalStatus:
    """May ``version`` be promoted now, by its registry tags (approval, manifest sha, retirement)? For rollouts."""
    tags = version_tags(model_registry, version)
    return approval_status(
        tags.get(registry.PROMOTION_APPROVAL_TAG),
        public_key,
        model_version=version,
        manifest_sha256=tags.get(registry.MANIFEST_SHA_TAG),
        environment=environment,
        now=now,
        retired_at=tags.get(registry.RETIRED_TAG),
    )
