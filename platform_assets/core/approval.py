"""Maker-checker approval of a model version's promotion to champion: signed, bound to its manifest, expiring.

A ``PromotionApproval`` says that a named person (``approved_by``), who did not launch the version's training
(``trained_by``), approves ``model_version`` as it is described by exactly one signed manifest
(``manifest_sha256``: the sha256 of the ``manifest.json`` bytes ``model_manifest`` wrote and tagged) until
``expires_at`` (UTC). The platform key signs it (Ed25519, ``core.signing``) over the canonical JSON of every
other field, so a changed name, expiry, version or manifest no longer verifies. Re-signing the manifest
(rematerializing ``model_manifest``) voids the approval: it approved the old one.

``sign_approval`` refuses what must not be approved (``ApprovalRefused``, naming the version or the person):
a retired version, an approver who trained it (names compared trimmed and case-insensitively; ``user:`` is
ignored), an empty name or reason, an expiry of <= 0 hours or beyond ``slo.PROMOTION.approval_max_valid_hours``,
and the labelled auto-approval outside the ``local`` environment. ``approval_status`` is what a rollout asks
before it promotes: valid only when the approval is signed by the platform key, bound to the version's current
manifest, not expired and, outside ``local``, given by a person.

The trainer is the run's launcher as training recorded it (``launcher_from_run_tags``): ``sensor:<name>`` or
``schedule:<name>`` for automation (any named person may approve those versions), else the person.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from platform_assets.core import signing, slo
from platform_assets.core.environment import Environment
from platform_assets.core.manifest import canonical_json
from platform_assets.core.model_version import version_label

SCHEMA: Final = "credit-risk-platform/promotion-approval/v1"
#: The approver of the local demo's auto-approval: it says that no person approved.
AUTO_APPROVER: Final = "auto-approval (local demo, no human)"
#: Launchers that are automation, not a person (``launcher_from_run_tags``); no approver may be named so.
AUTOMATION_PREFIXES: Final = ("sensor:", "schedule:", "automation:")
USER_PREFIX: Final = "user:"
#: The trainer of a version trained before launchers were recorded (accepted in ``local`` only).
UNKNOWN_TRAINER: Final = "unknown (not recorded)"
#: Longest approver name and reason, characters: the compact approval then stays far below 5,000 characters,
#: the smallest model-version tag value an MLflow server has accepted (3.x takes 100,000).
MAX_NAME_CHARS: Final = 200
MAX_REASON_CHARS: Final = 1000

#: Run tags Dagster sets (``dagster._core.storage.tags``), read without importing Dagster into the core.
SENSOR_NAME_RUN_TAG: Final = "dagster/sensor_name"
SCHEDULE_NAME_RUN_TAG: Final = "dagster/schedule_name"
AUTO_MATERIALIZE_RUN_TAG: Final = "dagster/auto_materialize"
#: Dagster+ tags a run a person launched with their user name (e-mail); Dagster OSS has no users.
USER_RUN_TAG: Final = "user"

ApprovalState = Literal["valid", "missing", "bad_signature", "wrong_manifest", "expired", "not_allowed"]


class ApprovalRefused(ValueError):
    """An approval that must not be given (or recorded); the message names the version or the person."""


class PromotionApproval(BaseModel):
    """One signed approval. Times are timezone-aware and stored in UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: Literal["credit-risk-platform/promotion-approval/v1"] = Field(default=SCHEMA, alias="schema")
    model: str = Field(min_length=1, description="Registered model, e.g. default_risk_model.")
    model_version: str = Field(pattern=r"^v[0-9]+$", description="The approved version, e.g. 'v3'.")
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the approved manifest.json.")
    approved_by: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)
    approved_at: AwareDatetime
    expires_at: AwareDatetime
    trained_by: str = Field(min_length=1, description="Who launched the training (sensor:, schedule:, a person).")
    auto: bool = Field(description="The local demo's auto-approval: no person approved.")
    key_id: str = Field(description="Id of the platform key that signed (core.signing.key_id).")
    signature: str = Field(default="", description="base64 Ed25519 signature of signed_payload().")

    @field_validator("approved_at", "expires_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def signed_payload(self) -> bytes:
        """The bytes the signature covers: canonical JSON of every field but the signature."""
        return canonical_json(self.model_dump(mode="json", by_alias=True, exclude={"signature"}))

    def to_json(self) -> str:
        """The compact document (the MLflow version tag and the lake file hold exactly this)."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))

    def describe(self) -> dict[str, Any]:
        """The fields a person checks: who, when, until when, on whose training, signed by which key."""
        return {
            "model_version": self.model_version,
            "approved_by": self.approved_by,
            "auto": self.auto,
            "reason": self.reason,
            "approved_at": self.approved_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "trained_by": self.trained_by,
            "manifest_sha256": self.manifest_sha256,
            "key_id": self.key_id,
        }


@dataclass(frozen=True)
class ApprovalSubject:
    """What is known about the version to approve, read from the lake and the registry by the caller."""

    model: str
    model_version: str
    #: sha256 of its signed manifest.json; None when it has no manifest yet.
    manifest_sha256: str | None
    #: Who launched its training (``launched_by``); None when not recorded (versions trained before it was).
    trained_by: str | None
    #: When it was retired (``retired_at`` version tag, ISO 8601); None while it is not.
    retired_at: str | None = None


@dataclass(frozen=True)
class ApprovalStatus:
    """Whether an approval lets a version be promoted now, and a sentence saying why (not)."""

    state: ApprovalState
    reason: str
    approval: PromotionApproval | None = None

    @property
    def valid(self) -> bool:
        return self.state == "valid"

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "valid": self.valid,
            "reason": self.reason,
            **({"approval": self.approval.describe()} if self.approval is not None else {}),
        }


def person(name: str) -> str:
    """``name`` as names are compared: trimmed, inner whitespace collapsed, case-folded, ``user:`` dropped."""
    folded = " ".join(name.split()).casefold()
    return folded.removeprefix(USER_PREFIX).strip()


def is_automation(launcher: str) -> bool:
    return launcher.strip().casefold().startswith(AUTOMATION_PREFIXES)


def launcher_from_run_tags(tags: Mapping[str, str], platform_user: str | None, os_user: str | None) -> str:
    """Who launched a run: ``sensor:<name>``, ``schedule:<name>``, ``automation:auto_materialize``, the Dagster+
    user (``user:<email>``), else ``user:<PLATFORM_USER>``, else ``user:<OS user>`` of the run's process (Dagster
    OSS records no user: that is whoever started the Dagster process, so set PLATFORM_USER there)."""
    if tags.get(SENSOR_NAME_RUN_TAG):
        return f"sensor:{tags[SENSOR_NAME_RUN_TAG]}"
    if tags.get(SCHEDULE_NAME_RUN_TAG):
        return f"schedule:{tags[SCHEDULE_NAME_RUN_TAG]}"
    if tags.get(AUTO_MATERIALIZE_RUN_TAG) == "true":
        return "automation:auto_materialize"
    for candidate in (tags.get(USER_RUN_TAG), platform_user, os_user):
        if candidate and candidate.strip():
            return USER_PREFIX + " ".join(candidate.split()).removeprefix(USER_PREFIX)
    return f"{USER_PREFIX}unknown"


def _check_request(
    subject: ApprovalSubject, approved_by: str, reason: str, valid_hours: float, auto: bool, environment: Environment
) -> str:
    """The trainer to record; ``ApprovalRefused`` for anything that must not be approved."""
    label = f"{subject.model} {subject.model_version}"
    if subject.retired_at:
        raise ApprovalRefused(f"{label} was retired at {subject.retired_at}: a retired version cannot be approved")
    if subject.manifest_sha256 is None:
        raise ApprovalRefused(
            f"{label} has no signed manifest: materialize model_manifest for {subject.model_version}; an approval "
            "is bound to the manifest it approves"
        )
    if auto and environment is not Environment.LOCAL:
        raise ApprovalRefused(
            f"the auto-approval of {label} is refused in the {environment.value!r} environment: it exists for the "
            "local demo only; a named person who did not train the version must approve it"
        )
    if not reason.strip():
        raise ApprovalRefused(f"the approval of {label} needs a reason (it is empty)")
    if len(reason) > MAX_REASON_CHARS:
        raise ApprovalRefused(f"the reason to approve {label} has {len(reason)} characters, max {MAX_REASON_CHARS}")
    if not auto:
        if not person(approved_by):
            raise ApprovalRefused(f"the approval of {label} needs the approver's name (approved_by is empty)")
        if len(approved_by) > MAX_NAME_CHARS:
            raise ApprovalRefused(f"approved_by has {len(approved_by)} characters, at most {MAX_NAME_CHARS}")
        if is_automation(approved_by) or person(approved_by) == person(AUTO_APPROVER):
            raise ApprovalRefused(f"approved_by {approved_by!r} is not a person: a named person approves {label}")
    max_hours = slo.PROMOTION.approval_max_valid_hours
    if not 0 < valid_hours <= max_hours:
        raise ApprovalRefused(
            f"the approval of {label} must expire after more than 0 and at most {max_hours:g} hours, "
            f"not {valid_hours:g}"
        )
    trainer = (subject.trained_by or "").strip()
    if not trainer:
        if environment is not Environment.LOCAL:
            raise ApprovalRefused(
                f"{label} has no recorded trainer (launched_by): nobody can tell that {approved_by!r} did not train "
                "it; retrain it so its launcher is recorded"
            )
        trainer = UNKNOWN_TRAINER
    if not auto and not is_automation(trainer) and person(trainer) == person(approved_by):
        raise ApprovalRefused(
            f"{approved_by!r} launched the training of {label} ({trainer}) and cannot also approve it: "
            "another named person must"
        )
    return trainer


def sign_approval(
    key: Ed25519PrivateKey,
    subject: ApprovalSubject,
    *,
    approved_by: str,
    reason: str,
    environment: Environment | str,
    now: datetime,
    valid_hours: float = slo.PROMOTION.approval_valid_hours,
    auto: bool = False,
) -> PromotionApproval:
    """The signed approval of ``subject`` by ``approved_by`` from ``now`` for ``valid_hours`` hours.

    With ``auto`` (the local demo only) the approver is ``AUTO_APPROVER`` whatever ``approved_by`` says.
    Raises ``ApprovalRefused`` (see the module docstring).
    """
    env = Environment(environment)
    trainer = _check_request(subject, approved_by, reason, valid_hours, auto, env)
    approved_at = now.astimezone(UTC)
    unsigned = PromotionApproval(
        model=subject.model,
        model_version=version_label(subject.model_version),
        manifest_sha256=str(subject.manifest_sha256),
        approved_by=AUTO_APPROVER if auto else " ".join(approved_by.split()),
        reason=reason.strip(),
        approved_at=approved_at,
        expires_at=approved_at + timedelta(hours=valid_hours),
        trained_by=trainer,
        auto=auto,
        key_id=signing.key_id(key),
    )
    return unsigned.model_copy(update={"signature": signing.sign(key, unsigned.signed_payload()).decode("ascii")})


def parse_approval(document: str | bytes | Mapping[str, Any]) -> PromotionApproval:
    """An approval from its JSON (or dict); ``ValueError`` naming the offending fields when it is not one."""
    try:
        if isinstance(document, Mapping):
            return PromotionApproval.model_validate(dict(document))
        return PromotionApproval.model_validate_json(document)
    except ValidationError as error:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}" for e in error.errors())
        raise ValueError(f"not a promotion approval: {fields}") from None


def verify_approval(
    document: str | bytes | Mapping[str, Any] | PromotionApproval | None,
    public_key: Ed25519PublicKey,
    expected_manifest_sha: str | None,
    now: datetime,
) -> ApprovalStatus:
    """Whether ``document`` is an approval the platform key signed, of the manifest ``expected_manifest_sha``,
    unexpired at ``now``. States: valid, missing, bad_signature (also: malformed, another key), wrong_manifest,
    expired."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    if document is None or (isinstance(document, str | bytes) and not document.strip()):
        return ApprovalStatus("missing", "no promotion approval has been recorded")
    try:
        approval = document if isinstance(document, PromotionApproval) else parse_approval(document)
    except ValueError as error:
        return ApprovalStatus("bad_signature", f"the recorded approval cannot be trusted: {error}")
    label = f"the approval of {approval.model_version} by {approval.approved_by}"
    verifying_with = signing.key_id(public_key)
    if approval.key_id != verifying_with:
        return ApprovalStatus(
            "bad_signature",
            f"{label} was signed with key {approval.key_id}, not the platform key {verifying_with}",
            approval,
        )
    try:
        raw = signing.decode_signature(approval.signature)
    except ValueError as error:
        return ApprovalStatus("bad_signature", f"{label} carries no valid signature: {error}", approval)
    if not signing.signature_matches(public_key, approval.signed_payload(), raw):
        return ApprovalStatus(
            "bad_signature", f"{label} does not match its signature: it was altered after signing", approval
        )
    if expected_manifest_sha is None:
        return ApprovalStatus(
            "wrong_manifest",
            f"{label} approves manifest {approval.manifest_sha256[:12]}..., but the version has no signed manifest now",
            approval,
        )
    if approval.manifest_sha256 != expected_manifest_sha:
        return ApprovalStatus(
            "wrong_manifest",
            f"{label} approves manifest {approval.manifest_sha256[:12]}..., but the version's manifest is now "
            f"{expected_manifest_sha[:12]}... (re-signed since): approve it again",
            approval,
        )
    if now >= approval.expires_at:
        return ApprovalStatus("expired", f"{label} expired at {approval.expires_at.isoformat()}", approval)
    return ApprovalStatus(
        "valid",
        f"approved by {approval.approved_by} at {approval.approved_at.isoformat()}, "
        f"valid until {approval.expires_at.isoformat()}",
        approval,
    )


def approval_status(
    document: str | bytes | Mapping[str, Any] | PromotionApproval | None,
    public_key: Ed25519PublicKey,
    *,
    model_version: str,
    manifest_sha256: str | None,
    environment: Environment | str,
    now: datetime,
    retired_at: str | None = None,
) -> ApprovalStatus:
    """May ``model_version`` be promoted to champion now? Valid only when ``document`` is signed by the platform
    key (``public_key``), approves this version's current manifest (``manifest_sha256``, the version's
    ``manifest_sha256`` tag), has not expired at ``now``, was not given by the version's trainer, the version is
    not retired and, outside ``local``, a person (not the demo's auto-approval) gave it. Pure: the caller reads
    the version's tags."""
    status = verify_approval(document, public_key, manifest_sha256, now)
    approval = status.approval
    if approval is None or status.state == "bad_signature":
        return status
    label = version_label(model_version)
    if approval.model_version != label:
        return ApprovalStatus("wrong_manifest", f"the approval is for {approval.model_version}, not {label}", approval)
    if not status.valid:
        return status
    env = Environment(environment)
    if retired_at:
        return ApprovalStatus("not_allowed", f"{label} was retired at {retired_at}", approval)
    if approval.auto and env is not Environment.LOCAL:
        return ApprovalStatus(
            "not_allowed",
            f"{label} has only the local demo's auto-approval, which does not count in the {env.value!r} "
            "environment: a named person must approve it",
            approval,
        )
    if (
        not approval.auto
        and not is_automation(approval.trained_by)
        and person(approval.trained_by) == person(approval.approved_by)
    ):
        return ApprovalStatus("not_allowed", f"{approval.approved_by} both trained and approved {label}", approval)
    return status
