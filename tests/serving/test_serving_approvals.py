"""What /admin/status shows of a served version's promotion approval (serving/approvals.py), against a real SQLite
MLflow registry: read after each poll, verified with the service's key, never an error that stops serving."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from approval_support import ApprovalPlatform

from platform_assets.core import registry
from platform_assets.core.approval import PromotionApproval, sign_approval
from platform_assets.core.environment import Environment
from platform_assets.governance import approvals
from platform_assets.serving.approvals import ApprovalBoard
from platform_assets.serving.signature import VerifyKey


@pytest.fixture
def platform(approval_platform: ApprovalPlatform) -> ApprovalPlatform:
    return approval_platform


def board(platform: ApprovalPlatform) -> ApprovalBoard:
    return ApprovalBoard(VerifyKey(platform.signer.verify_key(), "test key"), Environment.STAGING)


def give_approval(platform: ApprovalPlatform, version: str = "v1") -> PromotionApproval:
    return approvals.approve(
        platform.lake,
        platform.model_registry,
        platform.signer,
        version,
        approved_by="Jane Roe",
        reason="canary reviewed",
        valid_hours=24,
        now=datetime.now(UTC),
    )


def test_an_approval_given_while_the_version_serves_shows_after_the_next_poll(platform: ApprovalPlatform) -> None:
    shown = board(platform)
    client = platform.model_registry.client()
    loaded_tags = platform.tags("v1")  # what the version was loaded with: no approval yet
    assert shown.describe("1", loaded_tags)["state"] == "missing"
    approval = give_approval(platform)
    assert shown.describe("1", loaded_tags)["state"] == "missing", "describe reads nothing by itself"
    shown.update(client, registry.MODEL_NAME, ["1"])
    status = shown.describe("1", loaded_tags)
    assert status["valid"] is True and status["state"] == "valid"
    assert status["approval"]["approved_by"] == "Jane Roe"
    assert status["approval"]["expires_at"] == approval.expires_at.isoformat()
    assert shown.describe("1", loaded_tags, now=approval.expires_at)["state"] == "expired"


def test_a_resigned_manifest_or_an_auto_approval_outside_local_is_not_valid(platform: ApprovalPlatform) -> None:
    shown = board(platform)
    client = platform.model_registry.client()
    give_approval(platform)
    client.set_model_version_tag(registry.MODEL_NAME, "1", registry.MANIFEST_SHA_TAG, "f" * 64)
    shown.update(client, registry.MODEL_NAME, ["1"])
    status = shown.describe("1", {})
    assert status["state"] == "wrong_manifest" and status["valid"] is False and "re-signed since" in status["reason"]

    # The local demo's auto-approval of v2, signed with the same key, shown by a staging service.
    target = approvals.subject(platform.lake, platform.model_registry, platform.signer, "v2")
    auto = sign_approval(
        platform.signer.signing_key(),
        target,
        approved_by="",
        reason="demo",
        environment="local",
        now=datetime.now(UTC),
        auto=True,
    )
    approvals.record(platform.lake, platform.model_registry, auto)
    shown.update(client, registry.MODEL_NAME, ["1", "2"])
    status = shown.describe("2", {})
    assert status["state"] == "not_allowed" and "auto-approval" in status["reason"]
    assert status["approval"]["approved_by"] == "auto-approval (local demo, no human)"


def test_an_unreachable_registry_keeps_the_last_tags_and_says_so(
    platform: ApprovalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    shown = board(platform)
    give_approval(platform)
    shown.update(platform.model_registry.client(), registry.MODEL_NAME, ["1"])
    monkeypatch.setitem(os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setitem(os.environ, "MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    unreachable = mlflow.MlflowClient(tracking_uri="http://127.0.0.1:9", registry_uri="http://127.0.0.1:9")
    shown.update(unreachable, registry.MODEL_NAME, ["1"])
    status = shown.describe("1", {})
    assert status["valid"] is True, "the last tags read still decide"
    assert "tags_read_error" in status and "127.0.0.1:9" in status["tags_read_error"]


def test_without_a_verify_key_the_approval_is_shown_unchecked(platform: ApprovalPlatform) -> None:
    give_approval(platform)
    unchecked = ApprovalBoard(VerifyKey(None, "none (PLATFORM_ENV=local)"), Environment.LOCAL)
    status = unchecked.describe("1", platform.tags("v1"))
    assert status["state"] == "unverified" and status["valid"] is False
    assert status["approval"]["approved_by"] == "Jane Roe"
    refusing = ApprovalBoard(VerifyKey(None, "none", "no manifest verify key configured in 'prod'"), Environment.PROD)
    assert "no manifest verify key configured" in refusing.describe("1", platform.tags("v1"))["reason"]
