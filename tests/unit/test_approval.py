"""Signed promotion approvals (core/approval.py) with real Ed25519 keys: what is refused, what verifies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from platform_assets.core import signing, slo
from platform_assets.core.approval import (
    AUTO_APPROVER,
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    ApprovalRefused,
    ApprovalSubject,
    PromotionApproval,
    approval_status,
    launcher_from_run_tags,
    sign_approval,
    verify_approval,
)

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
MANIFEST = "c" * 64


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return signing.generate_private_key()


def subject(**overrides: Any) -> ApprovalSubject:
    fields: dict[str, Any] = {
        "model": "default_risk_model",
        "model_version": "v3",
        "manifest_sha256": MANIFEST,
        "trained_by": "user:jdoe",
        "retired_at": None,
    }
    return ApprovalSubject(**{**fields, **overrides})


def approve(key: Ed25519PrivateKey, **overrides: Any) -> PromotionApproval:
    target = overrides.pop("target", subject())
    arguments: dict[str, Any] = {
        "approved_by": "Jane Roe",
        "reason": "canary metrics reviewed",
        "environment": "prod",
        "now": NOW,
        **overrides,
    }
    return sign_approval(key, target, **arguments)


def status(document: Any, key: Ed25519PrivateKey, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "model_version": "v3",
        "manifest_sha256": MANIFEST,
        "environment": "prod",
        "now": NOW + timedelta(hours=1),
        **overrides,
    }
    return approval_status(document, key.public_key(), **arguments)


def test_a_signed_approval_is_valid_until_it_expires(key: Ed25519PrivateKey) -> None:
    approval = approve(key, valid_hours=24)
    assert approval.expires_at == NOW + timedelta(hours=24)
    assert (approval.trained_by, approval.auto, approval.key_id) == ("user:jdoe", False, signing.key_id(key))
    valid = status(approval.to_json(), key)
    assert valid.valid and "approved by Jane Roe" in valid.reason
    expired = status(approval.to_json(), key, now=NOW + timedelta(hours=24))
    assert expired.state == "expired" and "expired at 2026-11-03T09:30:00+00:00" in expired.reason
    assert approve(key).expires_at == NOW + timedelta(hours=slo.PROMOTION.approval_valid_hours)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("approved_by", "Mallory"),
        ("expires_at", "2027-01-01T00:00:00Z"),
        ("model_version", "v4"),
        ("trained_by", "sensor:retrain"),
        ("auto", True),
        ("reason", "something else"),
    ],
)
def test_a_tampered_field_breaks_the_signature(key: Ed25519PrivateKey, field: str, value: Any) -> None:
    document = json.loads(approve(key).to_json())
    document[field] = value
    verdict = status(json.dumps(document), key)
    assert verdict.state == "bad_signature"
    assert "altered after signing" in verdict.reason


def test_wrong_key_missing_and_malformed(key: Ed25519PrivateKey) -> None:
    other = signing.generate_private_key()
    foreign = status(approve(other).to_json(), key)
    assert foreign.state == "bad_signature" and f"not the platform key {signing.key_id(key)}" in foreign.reason
    assert status(None, key).state == "missing"
    assert status("", key).state == "missing"
    malformed = status('{"model_version": "v3"}', key)
    assert malformed.state == "bad_signature" and "approved_by" in malformed.reason
    unsigned = json.loads(approve(key).to_json()) | {"signature": "not base64!"}
    assert status(unsigned, key).state == "bad_signature"


def test_an_approval_is_bound_to_its_manifest_and_version(key: Ed25519PrivateKey) -> None:
    document = approve(key).to_json()
    resigned = status(document, key, manifest_sha256="d" * 64)
    assert resigned.state == "wrong_manifest" and "re-signed since" in resigned.reason
    assert status(document, key, manifest_sha256=None).state == "wrong_manifest"
    other_version = status(document, key, model_version="v4")
    assert other_version.state == "wrong_manifest" and "for v3, not v4" in other_version.reason
    direct = verify_approval(document, key.public_key(), MANIFEST, NOW)
    assert direct.valid and direct.approval is not None and direct.approval.model_version == "v3"


def test_the_trainer_cannot_approve(key: Ed25519PrivateKey) -> None:
    for same_person in ("jdoe", "  JDoe ", "user:jdoe", "USER:JDOE"):
        with pytest.raises(ApprovalRefused, match=r"launched the training of default_risk_model v3 \(user:jdoe\)"):
            approve(key, approved_by=same_person)
    sensor_trained = subject(trained_by="sensor:accuracy_drop_sensor")
    assert approve(key, target=sensor_trained, approved_by="jdoe").approved_by == "jdoe"


def test_refusals_name_the_version_or_the_person(key: Ed25519PrivateKey) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"target": subject(retired_at="2026-11-01T00:00:00+00:00")}, "v3 was retired at 2026-11-01"),
        ({"target": subject(manifest_sha256=None)}, "v3 has no signed manifest"),
        ({"approved_by": "   "}, "needs the approver's name"),
        ({"reason": " "}, "v3 needs a reason"),
        ({"reason": "x" * (MAX_REASON_CHARS + 1)}, "characters"),
        ({"approved_by": "x" * (MAX_NAME_CHARS + 1)}, "characters"),
        ({"approved_by": "sensor:canary_sensor"}, "is not a person"),
        ({"approved_by": AUTO_APPROVER}, "is not a person"),
        ({"valid_hours": 0}, "more than 0 and at most"),
        ({"valid_hours": -5}, "more than 0 and at most"),
        ({"valid_hours": slo.PROMOTION.approval_max_valid_hours + 1}, "more than 0 and at most"),
        ({"auto": True}, "auto-approval of default_risk_model v3 is refused in the 'prod' environment"),
        ({"target": subject(trained_by=None)}, "v3 has no recorded trainer"),
    ]
    for overrides, message in cases:
        with pytest.raises(ApprovalRefused, match=message):
            approve(key, **overrides)
    longest = approve(key, valid_hours=slo.PROMOTION.approval_max_valid_hours)
    assert longest.expires_at == NOW + timedelta(hours=slo.PROMOTION.approval_max_valid_hours)


def test_the_local_auto_approval_is_labelled_and_counts_only_locally(key: Ed25519PrivateKey) -> None:
    auto = approve(key, environment="local", auto=True, approved_by="", reason="make demo")
    assert auto.auto and auto.approved_by == AUTO_APPROVER == "auto-approval (local demo, no human)"
    assert status(auto.to_json(), key, environment="local").valid
    outside = status(auto.to_json(), key, environment="staging")
    assert outside.state == "not_allowed" and "does not count in the 'staging' environment" in outside.reason
    unknown_trainer = approve(key, target=subject(trained_by=None), environment="local")
    assert unknown_trainer.trained_by == "unknown (not recorded)"


def test_a_retired_version_is_not_promotable(key: Ed25519PrivateKey) -> None:
    verdict = status(approve(key).to_json(), key, retired_at="2026-11-02T10:00:00+00:00")
    assert verdict.state == "not_allowed" and "v3 was retired" in verdict.reason


def test_the_tag_document_is_compact_and_small(key: Ed25519PrivateKey) -> None:
    largest = approve(key, approved_by="J" * MAX_NAME_CHARS, reason="r" * MAX_REASON_CHARS)
    document = largest.to_json()
    assert "\n" not in document and len(document) < 5000
    assert PromotionApproval.model_validate_json(document) == largest


def test_the_launcher_of_a_run() -> None:
    assert launcher_from_run_tags({"dagster/sensor_name": "drop"}, "ann", "root") == "sensor:drop"
    assert launcher_from_run_tags({"dagster/schedule_name": "weekly"}, "ann", "root") == "schedule:weekly"
    assert launcher_from_run_tags({"user": "ann@bank.example"}, "bob", "root") == "user:ann@bank.example"
    assert launcher_from_run_tags({}, " Ann  Lee ", "root") == "user:Ann Lee"
    assert launcher_from_run_tags({}, None, "root") == "user:root"
    assert launcher_from_run_tags({}, "", None) == "user:unknown"
