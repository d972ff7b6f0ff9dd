"""The Bento service as assets: built for one model version, then that version rolled out.

Both are partitioned by ``model_versions``: ``credit_risk_bento`` for v3 records v3's Bento in v3's folder
(``bento.json``), and ``credit_risk_deployment`` for v3 rolls out exactly that Bento.
"""

import json
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from platform_assets import model_store
from platform_assets.defs.governance.assets import model_manifest
from platform_assets.defs.training.assets import model_evaluation, version_record
from platform_assets.deploy.bento import build_bento
from platform_assets.deploy.local import DeploymentFailed
from platform_assets.deploy.rollout import RolloutPlan, plan_rollout
from platform_assets.partitions import model_versions
from platform_assets.resources.deployer import ServiceDeployer
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.retries import fail_fast, io_retry_policy

#: The Bento built for a version, in that version's folder.
BENTO_FILE = "bento.json"


@dg.asset(
    deps=[model_evaluation, model_manifest],
    partitions_def=model_versions,
    group_name="serving",
    kinds={"bentoml"},
    retry_policy=io_retry_policy(),
    description=(
        "`bentoml build` of bentos/credit_risk with the project wheel, tagged credit_risk:<model version>-<code "
        "version>. Runs only after the quality, fairness and manifest gates passed."
    ),
)
def credit_risk_bento(
    context: dg.AssetExecutionContext, lake: LakeStorage, deployer: ServiceDeployer
) -> dg.MaterializeResult[Any]:
    record = version_record(context, lake)
    bento = build_bento(
        record.version,
        deployer.bentoml_home(),
        labels={"model_version": record.version, "mlflow_run_id": record.mlflow_run_id},
    )
    built = {
        "tag": bento.tag,
        "code_version": bento.code_version,
        "model_version": record.version,
        "data_versions": record.data_versions,
        "size_bytes": bento.size_bytes,
        "built_at": datetime.now(UTC).isoformat(),
    }
    model_store.write_json(lake, model_store.version_key(record.version, BENTO_FILE), built)
    context.log.info(f"built {bento.tag} ({bento.size_bytes / 1024:.0f} KiB) at {bento.path}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(bento.tag),
        metadata={
            "bento_tag": bento.tag,
            "size_bytes": bento.size_bytes,
            "model_version": record.version,
            "code_version": bento.code_version,
            "data_versions": dg.MetadataValue.json(record.data_versions),
            "path": dg.MetadataValue.path(str(bento.path)),
        },
    )


def serving_table(plan: RolloutPlan, shadow_share: float) -> str:
    """What serves after a rollout, as the Markdown table on the asset: each role's share of the answered traffic
    (percent), and the share of those applications the shadow also scores (``shadow_share``, percent)."""
    weight = plan.challenger_weight if plan.challenger else 0.0
    rows = [(plan.champion, "champion", f"{100.0 - weight:g}")]
    if plan.challenger:
        rows.append((plan.challenger, "challenger", f"{weight:g}"))
    if plan.shadow:
        rows.append((plan.shadow, "shadow", f"0 (scores {shadow_share:g} % of it)"))
    return "| version | role | traffic % |\n|---|---|---|\n" + "\n".join(
        f"| {version} | {role} | {share} |" for version, role, share in rows
    )


@dg.asset(
    deps=[credit_risk_bento],
    partitions_def=model_versions,
    group_name="serving",
    kinds={"bentoml", "kubernetes"},
    retry_policy=io_retry_policy(),
    description=(
        "Rolls the Bento out. Registry aliases decide which versions serve: the champion, and on a canary the new "
        "version first as the shadow (it scores served applications, decides none) until a gate makes it the "
        "challenger at a traffic weight; the local target keeps `bentoml serve` running on 127.0.0.1:3001 and "
        "restarts it only when the code changed, keeping the previous Bento if the new one is not healthy."
    ),
)
def credit_risk_deployment(
    context: dg.AssetExecutionContext, lake: LakeStorage, model_registry: ModelRegistry, deployer: ServiceDeployer
) -> dg.MaterializeResult[Any]:
    version = context.partition_key
    with fail_fast():
        bento = model_store.read_json(lake, model_store.version_key(version, BENTO_FILE))
    if bento["model_version"] != version:
        raise dg.Failure(allow_retries=False, description=f"{BENTO_FILE} of {version} names {bento['model_version']}")
    aliases = model_registry.aliases()
    with fail_fast(ValueError):  # one version in two roles: the registry was edited by hand
        current = model_registry.state()
    plan = plan_rollout(current, bento["model_version"], deployer.strategy, deployer.shadow_share)
    if deployer.target == "kubernetes":
        from platform_assets.deploy.kubernetes import apply_rollout

        applied = apply_rollout(deployer, bento["code_version"])
        model_registry.apply(plan)
        metadata: dict[str, Any] = {"target": "kubernetes", "objects": dg.MetadataValue.json(applied)}
    else:
        previous_registry = (aliases, model_registry.challenger_weight(), model_registry.shadow_share())
        model_registry.apply(plan)
        try:
            state, restarted = deployer.deploy_local(bento["tag"], bento["code_version"], deployer.bentoml_home())
            status = deployer.wait_for_models(state, plan)
        except DeploymentFailed as failure:
            model_registry.restore(*previous_registry)  # what served before keeps serving
            raise dg.Failure(description=str(failure), allow_retries=False) from failure
        context.log.info(f"{plan.action}: {status}")
        metadata = {
            "target": "local",
            "url": dg.MetadataValue.url(state.url),
            "pid": state.pid,
            "restarted": restarted,
            "served_status": dg.MetadataValue.json(status),
        }
    shadow_share = model_registry.shadow_share()
    return dg.MaterializeResult(
        data_version=dg.DataVersion(
            json.dumps([plan.champion, plan.challenger, plan.challenger_weight, plan.shadow, shadow_share])
        ),
        metadata={
            **metadata,
            "model_version": version,
            "bento_tag": bento["tag"],
            "action": plan.action,
            "serving": dg.MetadataValue.md(serving_table(plan, shadow_share)),
            "champion": plan.champion,
            "challenger": plan.challenger or "none",
            "challenger_weight_percent": plan.challenger_weight,
            "shadow": plan.shadow or "none",
            "shadow_share_percent": shadow_share,
        },
    )
