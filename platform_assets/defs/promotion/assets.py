"""The maker-checker approval of a model version's promotion to champion, given from the launchpad.

Materialize ``promotion_approval`` for the version's partition (``v3``) with its config: ``approved_by`` (a named
person who did not launch the version's training), ``reason`` and ``expires_hours``. It runs exactly what
``python -m platform_assets.approve`` runs (``governance.approvals.approve``): the approval is signed with the
platform key, bound to the version's signed manifest, written to the version's lake folder and to its MLflow tag
``promotion_approval``. Where Dagster records who launched the run (Dagster+ tags it ``user``), that is the
approver and another name is refused. ``auto: true`` records the local demo's labelled auto-approval (refused
outside ``local``).
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from platform_assets.core import slo
from platform_assets.core.approval import USER_RUN_TAG, ApprovalRefused, person
from platform_assets.defs.governance.assets import model_manifest
from platform_assets.governance import approvals
from platform_assets.partitions import model_versions
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.signer import ModelSigner
from platform_assets.retries import fail_fast, io_retry_policy


class ApprovalConfig(dg.Config):
    """Who approves the version's promotion, why, and for how long."""

    approved_by: str = Field(
        default="", description="The approver: a named person who did not launch the version's training."
    )
    reason: str = Field(default="", description="Why the version may become champion.")
    expires_hours: float = Field(
        default=slo.PROMOTION.approval_valid_hours,
        description=f"Hours the approval lasts (at most {slo.PROMOTION.approval_max_valid_hours:g}).",
    )
    auto: bool = Field(default=False, description="Local demo only: a labelled auto-approval that names no person.")


def approver(config: ApprovalConfig, run_tags: dict[str, str]) -> str:
    """The approver: the configured name, which must be the user Dagster recorded for the run when it records one."""
    launched_by = run_tags.get(USER_RUN_TAG, "").strip()
    if config.auto or not launched_by:
        return config.approved_by
    if config.approved_by.strip() and person(config.approved_by) != person(launched_by):
        raise ApprovalRefused(
            f"approved_by {config.approved_by!r} is not {launched_by!r}, who launched this run: "
            "an approval is given in one's own name"
        )
    return launched_by


@dg.asset(
    deps=[model_manifest],
    partitions_def=model_versions,
    group_name="promotion",
    kinds={"json"},
    retry_policy=io_retry_policy(),
    description=(
        "Maker-checker approval of the version's promotion to champion: a named person who did not launch its "
        "training, a reason and an expiry, signed with the platform key over the version's manifest sha256; stored "
        "in the version's lake folder (approval.json, approvals/ history) and as its MLflow tag promotion_approval."
    ),
)
def promotion_approval(
    context: dg.AssetExecutionContext,
    config: ApprovalConfig,
    lake: LakeStorage,
    model_registry: ModelRegistry,
    model_signer: ModelSigner,
) -> dg.MaterializeResult[Any]:
    # A refusal, a bad key or config cannot heal by waiting: fail at once; a registry or lake hiccup retries.
    with fail_fast():
        approval = approvals.approve(
            lake,
            model_registry,
            model_signer,
            context.partition_key,
            approved_by=approver(config, dict(context.run.tags)),
            reason=config.reason,
            valid_hours=config.expires_hours,
            now=datetime.now(UTC),
            auto=config.auto,
            log=context.log,
        )
    if approval.auto:
        context.log.warning(f"{approval.model_version}: {approval.approved_by} (counts in the local environment only)")
    key = approvals.in_force_key(approval.model_version, approval.model)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(approval.signature),
        metadata={
            "model_version": approval.model_version,
            "approved_by": approval.approved_by,
            "auto": approval.auto,
            "reason": approval.reason,
            "approved_at": approval.approved_at.isoformat(),
            "expires_at": approval.expires_at.isoformat(),
            "trained_by": approval.trained_by,
            "manifest_sha256": approval.manifest_sha256,
            "key_id": approval.key_id,
            "approval": dg.MetadataValue.path(lake.uri(key)),
        },
    )
