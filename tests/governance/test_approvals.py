"""Maker-checker approvals end to end on a real lake and a real SQLite MLflow registry: the CLI, the storage (lake
history + version tag), the refusals, retirement, and what a rollout reads (``status_from_registry``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from approval_support import ApprovalPlatform, use_platform

from platform_assets import approve, audit, model_store
from platform_assets.core import registry, signing, slo
from platform_assets.core.approval import ApprovalStatus, parse_approval, sign_approval
from platform_assets.defs.promotion.assets import promotion_approval
from platform_assets.governance import approvals
from platform_assets.partitions import model_versions
from platform_assets.resources.signer import ModelSigner

TOO_LONG_HOURS = 2 * slo.PROMOTION.approval_max_valid_hours


@pytest.fixture
def platform(approval_platform: ApprovalPlatform) -> ApprovalPlatform:
    return approval_platform


def rollout_verdict(platform: ApprovalPlatform, version: str, now: datetime | None = None) -> ApprovalStatus:
    return approvals.status_from_registry(
        platform.model_registry,
        platform.signer.verify_key(),
        version,
        environment="staging",
        now=now or datetime.now(UTC),
    )


def test_the_cli_signs_stores_and_lists_an_approval(
    platform: ApprovalPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rollout_verdict(platform, "v1").state == "missing"
    code = approve.main(["v1", "--by", "Jane Roe", "--reason", "canary reviewed", "--expires-hours", "48", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert printed["approved_by"] == "Jane Roe" and printed["trained_by"] == "user:jdoe"
    assert printed["manifest_sha256"] == platform.manifests["v1"]
    in_lake = platform.lake.read_text(model_store.version_key("v1", approvals.APPROVAL_FILE))
    assert platform.tags("v1")[registry.PROMOTION_APPROVAL_TAG] == in_lake
    approval = parse_approval(in_lake)
    assert approval.expires_at - approval.approved_at == timedelta(hours=48)
    verdict = rollout_verdict(platform, "v1")
    assert verdict.valid, verdict.reason
    assert rollout_verdict(platform, "v1", now=approval.expires_at).state == "expired"

    # A newer approval replaces the one in force; both stay in the history.
    assert approve.main(["v1", "--by", "Ann Lee", "--reason", "second look"]) == 0
    capsys.readouterr()
    assert parse_approval(platform.tags("v1")[registry.PROMOTION_APPROVAL_TAG]).approved_by == "Ann Lee"
    assert [a.approved_by for a in approvals.history(platform.lake, "v1")] == ["Jane Roe", "Ann Lee"]
    assert approve.main(["--list", "v1"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and listed[1].startswith("* ") and "Ann Lee" in listed[1] and "valid" in listed[1]
    assert not listed[0].startswith("*") and "Jane Roe" in listed[0]


def test_a_sensor_trained_version_is_approved_by_any_named_person(
    platform: ApprovalPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    assert approve.main(["v2", "--by", "jdoe", "--reason", "retrained by the drop sensor, reviewed"]) == 0
    assert "sensor:accuracy_drop_sensor" in capsys.readouterr().out
    assert rollout_verdict(platform, "v2").valid


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["v9", "--by", "Jane Roe", "--reason", "r"], "unknown version 'v9'"),
        (["latest", "--by", "Jane Roe", "--reason", "r"], "unknown version 'latest'"),
        (["v1", "--by", " JDOE ", "--reason", "r"], "' JDOE ' launched the training of default_risk_model v1"),
        (["v1", "--by", "", "--reason", "r"], "needs the approver's name"),
        (["v1", "--by", "Jane Roe", "--reason", "  "], "needs a reason"),
        (["v1", "--by", "Jane Roe", "--reason", "r", "--expires-hours", "0"], "more than 0 and at most"),
        (
            [
                "v1",
                "--by",
                "Jane Roe",
                "--reason",
                "r",
                "--expires-hours",
                str(2 * slo.PROMOTION.approval_max_valid_hours),
            ],
            "more than 0 and at most",
        ),
        (["v1", "--auto", "--reason", "demo"], "auto-approval of default_risk_model v1 is refused in the 'staging'"),
    ],
)
def test_refusals_exit_2_naming_the_version_or_person(
    platform: ApprovalPlatform, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert approve.main(arguments) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
    assert registry.PROMOTION_APPROVAL_TAG not in platform.tags("v1")


def test_a_retired_version_cannot_be_approved_nor_promoted(
    platform: ApprovalPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    assert approve.main(["v1", "--by", "Jane Roe", "--reason", "reviewed"]) == 0
    registry.set_alias(registry.CHAMPION, "1", tracking_uri=platform.model_registry.tracking_uri)
    with pytest.raises(ValueError, match="v1 still holds the alias champion"):
        platform.model_registry.retire("v1", "replaced by v2")
    registry.set_alias(registry.CHAMPION, "2", tracking_uri=platform.model_registry.tracking_uri)
    retired_at = platform.model_registry.retire("v1", "replaced by v2")
    assert platform.model_registry.retire("1", "again") == retired_at, "the first retirement is kept"
    assert platform.tags("v1")[registry.RETIRED_REASON_TAG] == "replaced by v2"
    verdict = rollout_verdict(platform, "v1")
    assert verdict.state == "not_allowed" and f"v1 was retired at {retired_at}" in verdict.reason
    capsys.readouterr()
    assert approve.main(["v1", "--by", "Ann Lee", "--reason", "again"]) == 2
    assert f"v1 was retired at {retired_at}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot retire default_risk_model v7"):
        platform.model_registry.retire("v7", "never existed")


def test_a_resigned_or_mismatching_manifest_voids_and_refuses(
    platform: ApprovalPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    assert approve.main(["v1", "--by", "Jane Roe", "--reason", "reviewed"]) == 0
    client = platform.model_registry.client()
    # model_manifest re-signed v1: the tag names another manifest, the approval approved the old one.
    client.set_model_version_tag(registry.MODEL_NAME, "1", registry.MANIFEST_SHA_TAG, "e" * 64)
    assert rollout_verdict(platform, "v1").state == "wrong_manifest"
    capsys.readouterr()
    assert approve.main(["v1", "--by", "Jane Roe", "--reason", "reviewed"]) == 2
    assert "rematerialize model_manifest for v1" in capsys.readouterr().err
    # A manifest altered in the lake does not verify: nothing to approve.
    client.set_model_version_tag(registry.MODEL_NAME, "2", registry.MANIFEST_SHA_TAG, platform.manifests["v2"])
    key = model_store.version_key("v2", "manifest.json")
    platform.lake.write_bytes(key, platform.lake.read_bytes(key).replace(b"abc123", b"abc124"))
    assert approve.main(["v2", "--by", "Jane Roe", "--reason", "reviewed"]) == 2
    assert "the manifest of v2 does not verify" in capsys.readouterr().err


def test_an_approval_signed_by_another_key_does_not_count(platform: ApprovalPlatform, tmp_path: Path) -> None:
    other_private, _ = signing.write_key_pair(tmp_path / "other")
    impostor = ModelSigner(private_key_file=str(other_private), public_key_file=str(platform.public_key))
    target = approvals.subject(platform.lake, platform.model_registry, platform.signer, "v1")
    forged = sign_approval(
        impostor.signing_key(), target, approved_by="Jane Roe", reason="r", environment="staging", now=datetime.now(UTC)
    )
    approvals.record(platform.lake, platform.model_registry, forged)
    verdict = rollout_verdict(platform, "v1")
    assert verdict.state == "bad_signature" and "not the platform key" in verdict.reason


@pytest.mark.slow  # a fresh interpreter importing Dagster and MLflow: 10-20 s
def test_the_module_entry_point_refuses_with_exit_2(platform: ApprovalPlatform) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "platform_assets.approve", "v1", "--by", "jdoe", "--reason", "mine"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "'jdoe' launched the training of default_risk_model v1 (user:jdoe)" in result.stderr


def materialize_approval(
    platform: ApprovalPlatform, version: str, config: dict[str, object], tags: dict[str, str] | None = None
) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(model_versions.name, [version])
    return dg.materialize(
        [promotion_approval],
        partition_key=version,
        instance=instance,
        resources={"lake": platform.lake, "model_registry": platform.model_registry, "model_signer": platform.signer},
        run_config={"ops": {"promotion_approval": {"config": config}}},
        tags=tags,
        raise_on_error=False,
    )


def test_the_asset_records_the_approval_in_its_metadata(platform: ApprovalPlatform) -> None:
    result = materialize_approval(platform, "v1", {"approved_by": "Jane Roe", "reason": "launchpad review"})
    assert result.success
    (materialization,) = result.asset_materializations_for_node("promotion_approval")
    metadata = {name: value.value for name, value in materialization.metadata.items()}
    in_force = parse_approval(platform.tags("v1")[registry.PROMOTION_APPROVAL_TAG])
    assert metadata["approved_by"] == in_force.approved_by == "Jane Roe"
    assert metadata["expires_at"] == in_force.expires_at.isoformat()
    assert metadata["manifest_sha256"] == platform.manifests["v1"]
    assert metadata["key_id"] == signing.key_id(platform.signer.verify_key())
    assert metadata["trained_by"] == "user:jdoe" and metadata["auto"] is False
    assert rollout_verdict(platform, "v1").valid


def test_the_asset_refuses_the_trainer_and_a_name_that_is_not_the_launching_user(platform: ApprovalPlatform) -> None:
    refused = materialize_approval(platform, "v1", {"approved_by": "JDoe", "reason": "mine"})
    assert not refused.success
    (failure,) = [e for e in refused.all_events if e.is_step_failure]
    assert "'JDoe' launched the training of default_risk_model v1" in str(failure.step_failure_data.error)
    # Where Dagster records the launching user (Dagster+ tags the run "user"), the approver is that user.
    impersonated = materialize_approval(
        platform, "v1", {"approved_by": "Jane Roe", "reason": "r"}, tags={"user": "ann@bank.example"}
    )
    assert not impersonated.success
    assert registry.PROMOTION_APPROVAL_TAG not in platform.tags("v1")
    named = materialize_approval(platform, "v1", {"reason": "reviewed"}, tags={"user": "ann@bank.example"})
    assert named.success
    assert parse_approval(platform.tags("v1")[registry.PROMOTION_APPROVAL_TAG]).approved_by == "ann@bank.example"


def test_the_local_demo_auto_approval_is_labelled(
    approval_template: Path, platform_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = use_platform(approval_template, platform_home, monkeypatch, environment="local")
    result = materialize_approval(local, "v1", {"auto": True, "reason": "make demo"})
    assert result.success
    (materialization,) = result.asset_materializations_for_node("promotion_approval")
    assert materialization.metadata["approved_by"].value == "auto-approval (local demo, no human)"
    assert materialization.metadata["auto"].value is True
    local_verdict = approvals.status_from_registry(
        local.model_registry, local.signer.verify_key(), "v1", environment="local", now=datetime.now(UTC)
    )
    assert local_verdict.valid
    assert rollout_verdict(local, "v1").state == "not_allowed", "the same approval does not count in staging"


def log_predictions(platform: ApprovalPlatform, monkeypatch: pytest.MonkeyPatch, served: dict[str, datetime]) -> None:
    """Predictions of v1 served at the given times (naive UTC, as the service logs them)."""
    from platform_assets.core.inference_log import migrate
    from platform_assets.core.inference_log import schema as inference_log

    url = f"sqlite:///{platform.home / 'log.db'}"
    engine = inference_log.make_engine(url)
    migrate.upgrade(engine)
    rows = [
        {
            "prediction_id": prediction_id,
            "created_at": at.astimezone(UTC).replace(tzinfo=None),
            "model_version": "v1",
            "role": "champion",
            "application_id": 42,
            "probability": 0.2,
            "threshold": 0.41,
            "decision": "approve",
        }
        for prediction_id, at in served.items()
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(inference_log.predictions), rows)
    engine.dispose()
    monkeypatch.setenv("CREDIT_RISK_INFERENCE_DB", url)


def test_the_audit_chain_shows_the_approval(
    approval_template: Path, platform_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Local: a cluster environment's inference log is PostgreSQL (tests/prod covers it); the chain is the same.
    platform = use_platform(approval_template, platform_home, monkeypatch, environment="local")
    before = datetime.now(UTC) - timedelta(days=1)
    assert audit.main(["--model-version", "v1"]) == 0, "a version not approved yet is no audit failure"
    assert "approval       MISSING: no promotion approval has been recorded" in capsys.readouterr().out
    assert approve.main(["v1", "--by", "Jane Roe", "--reason", "reviewed"]) == 0
    capsys.readouterr()
    log_predictions(platform, monkeypatch, {"before": before, "after": datetime.now(UTC)})

    assert audit.main(["--model-version", "v1"]) == 0
    out = capsys.readouterr().out
    key_id = signing.key_id(platform.signer.verify_key())
    assert "approval       VALID: approved by Jane Roe at " in out
    assert f"(trained by user:jdoe, signed by {key_id})" in out
    assert audit.main(["--prediction-id", "after", "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)
    assert chain["approval_at_prediction"]["state"] == "valid"
    assert chain["approval_at_prediction"]["approval"]["approved_by"] == "Jane Roe"
    assert audit.main(["--prediction-id", "before"]) == 0
    assert "  approval     when served: MISSING" in capsys.readouterr().out

    # An approval altered in the lake is a verification failure of the chain.
    key = model_store.version_key("v1", approvals.APPROVAL_FILE)
    platform.lake.write_text(key, platform.lake.read_text(key).replace("Jane Roe", "Jane Doe"))
    assert audit.main(["--model-version", "v1"]) == 1
    assert "approval       BAD_SIGNATURE: " in capsys.readouterr().out
