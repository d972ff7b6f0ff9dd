"""The maker-checker approval of a model version's promotion to champion, given from the launchpad.

Materialize ``promotion_approval`` for the version's partition (``v3``) with its config: ``approved_by`` (a named
person who did not launch the version's training), ``reason`` and ``expires_hours``. It runs exactly what
``python -m platform_assets.approve`` runs (``governance.approvals.approve``): the approval is signed with the
platform key, bound to the version's signed manifest, written to the version's lake folder and to its MLflow tag
``promotion_approval``. Where Dagster records who launched the run (Dagster+ tags it ``user``), that is the
approver and another name is refused. ``auto: true`` records the local demo's labelled auto-approval (refused
outside ``local``).
"""

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from platform_assets import model_store
from platform_assets.core import lake_keys, slo
from platform_assets.core.approval import USER_RUN_TAG, ApprovalRefused, ApprovalStatus, person
from platform_assets.core.environment import Environment
from platform_assets.dataplane import portfolio_compare
from platform_assets.defs.governance.assets import model_manifest
from platform_assets.defs.monitoring.assets import DEPLOYMENT
from platform_assets.deploy.local import DeploymentFailed
from platform_assets.deploy.rollout import RolloutPlan, retire_shadow, start_canary
from platform_assets.governance import approvals
from platform_assets.ml import canary, promotion_evidence
from platform_assets.ml.promotion_stats import Stage
from platform_assets.partitions import model_versions
from platform_assets.resources.deployer import ServiceDeployer
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.monitoring import LiveMonitoring
from platform_assets.resources.signer import ModelSigner
from platform_assets.retries import fail_fast, io_retry_policy

#: Newest days of the portfolio the comparison reads both versions' scores of (the promotion sensor requests
#: the missing ``portfolio_scores`` runs for them).
PORTFOLIO_DAYS = 3


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


# -- shadow_comparison ---------------------------------------------------------------------------------------
SHADOW_COMPARISON_FILE = "shadow_comparison.json"
PROMOTION_DECISION_FILE = "promotion_decision.json"


class ShadowComparisonConfig(dg.Config):
    portfolio_days: int = Field(
        default=PORTFOLIO_DAYS,
        ge=0,
        description="Newest tensor days whose portfolio_scores of both versions are compared (0: live pairs only).",
    )


def stage_of(state: RolloutPlan | None, version: str) -> Stage | None:
    """The gate ``version`` faces in the registry's ``state``: its shadow or its canary; None in no such role."""
    if state is not None and state.shadow == version:
        return "shadow_to_canary"
    if state is not None and state.challenger == version:
        return "canary_to_champion"
    return None


def newest_tensor_days(lake: LakeStorage, days: int) -> list[str]:
    """The ``days`` newest committed tensor partitions, oldest first."""
    committed = sorted(
        {
            lake_keys.partition_of(key)
            for key in lake.list_keys(lake_keys.TENSORS_PREFIX)
            if key.endswith(lake_keys.MANIFEST_FILE)
        }
    )
    return committed[-days:] if days else []


@dg.asset(
    deps=[DEPLOYMENT],
    partitions_def=model_versions,
    group_name="promotion",
    kinds={"pandas"},
    retry_policy=io_retry_policy(),
    description=(
        "The candidate against the champion on the same applicants, before it decides anyone: from the inference "
        "log's shadow pairs (every application the shadow scored beside the answer it did not give) and from both "
        "versions' portfolio_scores of past days with their known outcomes. Swap set (who flips approve <-> "
        "decline, with bad rates as labels arrive), approval-rate delta, score PSI with its window-size threshold, "
        "paired DeLong ROC AUC difference with its 95 % interval, disparate impact of both; judged by the "
        "promotion gate of the stage the version is at. JSON in the version's folder."
    ),
)
def shadow_comparison(
    context: dg.AssetExecutionContext,
    config: ShadowComparisonConfig,
    lake: LakeStorage,
    model_registry: ModelRegistry,
    live_monitoring: LiveMonitoring,
) -> dg.MaterializeResult[Any]:
    version = context.partition_key
    state = model_registry.state()
    with fail_fast(ValueError):
        if state is None:
            raise ValueError(f"{model_registry.model_name} has no champion to compare {version} with")
        if version == state.champion:
            raise ValueError(f"{version} is the champion: compare a candidate (shadow or challenger) with it")
    assert state is not None
    stage: Stage = stage_of(state, version) or "shadow_to_canary"
    pairs = live_monitoring.shadow_pairs(version)
    champion_pairs = pairs[pairs["served_model_version"] == state.champion]
    policy = live_monitoring.promotion_policy()
    live = (
        promotion_evidence.paired_evidence(promotion_evidence.from_shadow_pairs(champion_pairs), stage, policy)
        if len(champion_pairs)
        else None
    )
    portfolio = portfolio_compare.paired_scores(
        lake.executor_store(), state.champion, version, newest_tensor_days(lake, config.portfolio_days)
    )
    past = promotion_evidence.paired_evidence(portfolio.frame, stage, policy) if len(portfolio.frame) else None
    document = {
        "model_version": version,
        "champion": state.champion,
        "stage": stage,
        "computed_at": datetime.now(UTC).isoformat(),
        "live": None if live is None else live.document,
        "portfolio": None if past is None else {**past.document, "days": list(portfolio.days)},
        "portfolio_missing": portfolio.missing,
    }
    model_store.write_json(lake, model_store.version_key(version, SHADOW_COMPARISON_FILE), document)
    verdict = live.verdict.verdict if live is not None else "hold"
    context.log.info(
        f"{version} vs {state.champion}: {len(champion_pairs)} shadow pairs, {len(portfolio.frame)} portfolio clients; "
        f"live gate {verdict}"
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "champion": state.champion,
            "stage": stage,
            "live_verdict": verdict,
            "shadow_pairs": len(champion_pairs),
            "labelled_pairs": int(champion_pairs["defaulted"].notna().sum()),
            **_evidence_metadata("live/", live),
            **_evidence_metadata("portfolio/", past),
            "portfolio_days": dg.MetadataValue.json(list(portfolio.days)),
            "portfolio_missing": dg.MetadataValue.json(portfolio.missing),
            "path": dg.MetadataValue.path(lake.uri(model_store.version_key(version, SHADOW_COMPARISON_FILE))),
        }
    )


def _evidence_metadata(prefix: str, evidence: promotion_evidence.PromotionEvidence | None) -> dict[str, Any]:
    """The numbers a reviewer compares, as floats the UI plots, plus the swap table."""
    if evidence is None:
        return {}
    document = evidence.document
    auc = document.get("auc") or {}
    numbers = {
        "approval_rate_champion": document["approval_rate_champion"],
        "approval_rate_candidate": document["approval_rate_candidate"],
        "approval_rate_delta": document["approval_rate_delta"],
        "score_psi": document.get("score_psi"),
        "score_psi_threshold": document.get("score_psi_threshold"),
        "auc_difference": auc.get("difference"),
        "auc_ci_low": auc.get("ci_low"),
        "auc_ci_high": auc.get("ci_high"),
    }
    return {
        **{f"{prefix}{k}": float(v) for k, v in numbers.items() if v is not None},
        f"{prefix}swap_set": dg.MetadataValue.md(evidence.swap_table),
        f"{prefix}gate": dg.MetadataValue.json(document["gate"]),
    }


# -- promotion_decision --------------------------------------------------------------------------------------
class PromotionDecisionConfig(dg.Config):
    expected_stage: str = Field(
        default="", description="The stage the sensor judged ('shadow_to_canary' or 'canary_to_champion'); '' any."
    )


def next_state(state: RolloutPlan, version: str, stage: Stage, verdict: str, first_weight: float) -> RolloutPlan | None:
    """The registry state a verdict leads to: pass moves ``version`` on, fail retires it, hold changes nothing."""
    if verdict == "hold":
        return None
    if stage == "shadow_to_canary":
        return start_canary(state, first_weight) if verdict == "pass" else retire_shadow(state)
    if verdict == "pass":
        return RolloutPlan(version, None, 0.0, "replaced", shadow=state.shadow)
    return RolloutPlan(state.champion, None, 0.0, "unchanged", shadow=state.shadow)


def approval_in_force(
    lake: LakeStorage,
    model_registry: ModelRegistry,
    signer: ModelSigner,
    deployer: ServiceDeployer,
    version: str,
    log: Any,
) -> ApprovalStatus:
    """The version's approval status; in the local environment with ``auto_approve_local``, a missing approval is
    recorded as the labelled auto-approval first (staging and prod never: they wait for a named person)."""
    now = datetime.now(UTC)
    status = approvals.status_from_registry(
        model_registry, signer.verify_key(), version, environment=signer.environment, now=now
    )
    if status.valid or not deployer.auto_approve_local or Environment(signer.environment) is not Environment.LOCAL:
        return status
    approvals.approve(
        lake,
        model_registry,
        signer,
        version,
        approved_by="",
        reason="local environment: promotion gate passed, no reviewer configured",
        valid_hours=slo.PROMOTION.approval_valid_hours,
        now=now,
        auto=True,
        log=log,
    )
    return approvals.status_from_registry(
        model_registry, signer.verify_key(), version, environment=signer.environment, now=now
    )


@dg.asset(
    deps=[shadow_comparison],
    partitions_def=model_versions,
    group_name="promotion",
    kinds={"mlflow"},
    retry_policy=io_retry_policy(),
    description=(
        "The promotion gate of a candidate version, applied: shadow -> canary (challenger at the first weight) and "
        "canary -> champion, each requiring a minimum labelled sample, ROC AUC non-inferior to the champion's at "
        "the margin with a 95 % interval, approval-rate change and disparate impact within bounds "
        "(core.slo.PROMOTION); the promotion to champion also a valid signed approval by a named person who did "
        "not launch the training. Pass moves the version on, fail retires it, hold keeps everything as it is. "
        "Inputs, intervals, thresholds and verdict are in the metadata."
    ),
)
def promotion_decision(
    context: dg.AssetExecutionContext,
    config: PromotionDecisionConfig,
    lake: LakeStorage,
    model_registry: ModelRegistry,
    live_monitoring: LiveMonitoring,
    deployer: ServiceDeployer,
    model_signer: ModelSigner,
) -> dg.MaterializeResult[Any]:
    version = context.partition_key
    state = model_registry.state()
    stage = stage_of(state, version)
    if state is None or stage is None or (config.expected_stage and config.expected_stage != stage):
        where = config.expected_stage or "a gate"
        stale = f"{version} is not at {where} now (registry aliases: {model_registry.aliases()})"
        context.log.info(f"nothing to do: {stale}")
        return dg.MaterializeResult(metadata={"action": "none", "reasons": dg.MetadataValue.json([stale])})
    with fail_fast(FileNotFoundError):
        comparison = model_store.read_json(lake, model_store.version_key(version, SHADOW_COMPARISON_FILE))
    live = comparison.get("live")
    if live is None or comparison.get("stage") != stage or comparison.get("champion") != state.champion:
        gate: dict[str, Any] = {
            "verdict": "hold",
            "reasons": [
                f"no shadow comparison of {version} against {state.champion} at {stage} yet: its shadow has scored no "
                "served application, or the comparison predates the current roles (run promotion_job again)"
            ],
            "inputs": {},
        }
    else:
        gate = dict(live["gate"])
    verdict, reasons = str(gate["verdict"]), list(gate["reasons"])
    approval: ApprovalStatus | None = None
    steps = live_monitoring.canary_policy().steps
    if stage == "canary_to_champion" and verdict != "fail":
        if canary.next_weight(state.challenger_weight, steps) < 100.0:
            verdict = "hold"
            reasons.append(f"the canary is at {state.challenger_weight:g} %: its steps {list(steps)} come first")
        elif verdict == "pass":
            approval = approval_in_force(lake, model_registry, model_signer, deployer, version, context.log)
            if not approval.valid:
                verdict = "hold"
                reasons.append(
                    f"awaiting a valid approval ({approval.reason}): python -m platform_assets.approve {version} "
                    "--by NAME --reason TEXT, or materialize promotion_approval"
                )
    plan = next_state(state, version, stage, verdict, deployer.first_canary_weight)
    served: dict[str, Any] = {}
    if plan is not None:
        model_registry.apply(plan)
        local = deployer.local_manager().current() if deployer.target == "local" else None
        if local is not None:
            try:
                served = deployer.wait_for_models(local, plan)
            except DeploymentFailed as failure:
                if verdict == "pass":  # a retirement is the safe state: keep it
                    model_registry.apply(state)
                raise dg.Failure(description=f"{stage} {verdict}: {failure}", allow_retries=False) from failure
        retired = state.champion if (stage, verdict) == ("canary_to_champion", "pass") else version
        if verdict == "fail" or stage == "canary_to_champion":
            model_registry.retire(retired, f"{stage} {verdict}: " + "; ".join(reasons)[:200])
    action = {"pass": "promoted" if stage == "canary_to_champion" else "canary_started", "fail": "retired"}.get(
        verdict, "held"
    )
    decision = {
        "model_version": version,
        "stage": stage,
        "verdict": verdict,
        "action": action,
        "reasons": reasons,
        "decided_at": datetime.now(UTC).isoformat(),
        "gate": gate,
        "approval": None if approval is None else approval.as_dict(),
        "registry_before": state.aliases(),
        "registry_after": plan.aliases() if plan is not None else state.aliases(),
        "thresholds": asdict(live_monitoring.promotion_policy()),
    }
    model_store.write_json(lake, model_store.version_key(version, PROMOTION_DECISION_FILE), decision)
    context.log.info(f"{version} {stage}: {verdict} -> {action} ({'; '.join(reasons)})")
    auc = (gate.get("inputs") or {}).get("auc") or {}
    return dg.MaterializeResult(
        data_version=dg.DataVersion(json.dumps([version, stage, verdict, decision["registry_after"]])),
        metadata={
            "model_version": version,
            "stage": stage,
            "verdict": verdict,
            "action": action,
            "reasons": dg.MetadataValue.json(reasons),
            "inputs": dg.MetadataValue.json(gate.get("inputs") or {}),
            "thresholds": dg.MetadataValue.json(decision["thresholds"]),
            "approval": dg.MetadataValue.json(decision["approval"]),
            "registry_after": dg.MetadataValue.json(decision["registry_after"]),
            "served_status": dg.MetadataValue.json(served),
            **{f"auc_{k}": float(auc[k]) for k in ("difference", "ci_low", "ci_high") if auc.get(k) is not None},
        },
    )
