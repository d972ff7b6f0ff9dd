"""The Bento service as assets: built for a model version, then rolled out."""

import json
from datetime import UTC, datetime

import dagster as dg

from platform_assets import model_store, settings
from platform_assets.defs.governance.assets import model_manifest
from platform_assets.defs.training.assets import model_evaluation
from platform_assets.deploy.bento import build_bento
from platform_assets.deploy.local import DeploymentFailed
from platform_assets.deploy.rollout import plan_rollout
from platform_assets.resources.deployer import ServiceDeployer
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.retries import io_retry_policy
from platform_assets.settings import MODEL_NAME, OWNER

BENTO_POINTER = "serving/bento.json"
DEPLOYMENT_POINTER = "serving/deployment.json"


@dg.asset(
    deps=[model_evaluation, model_manifest],
    group_name="serving",
    kinds={"bentoml"},
    owners=[OWNER],
    retry_policy=io_retry_policy(),
    description=(
        "`bentoml build` of bentos/credit_risk with the project wheel, tagged credit_risk:<model version>-<code "
        "version>. Runs only after the quality, fairness and manifest gates passed."
    ),
)
def credit_risk_bento(context: dg.AssetExecutionContext, lake: LakeStorage) -> dg.MaterializeResult:
    info = model_store.latest_info(lake, MODEL_NAME)
    bento = build_bento(
        info["version"],
        settings.platform_home() / "bentoml",
        labels={"model_version": info["version"], "mlflow_run_id": info["mlflow_run_id"]},
    )
    pointer = {
        "tag": bento.tag,
        "code_version": bento.code_version,
        "model_version": info["version"],
        "data_versions": info["data_versions"],
        "size_bytes": bento.size_bytes,
        "built_at": datetime.now(UTC).isoformat(),
    }
    model_store.write_json(lake, BENTO_POINTER, pointer)
    context.log.info(f"built {bento.tag} ({bento.size_bytes / 1024:.0f} KiB) at {bento.path}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(bento.tag),
        metadata={
            "bento_tag": bento.tag,
            "size_bytes": bento.size_bytes,
            "model_version": info["version"],
            "code_version": bento.code_version,
            "data_versions": dg.MetadataValue.json(info["data_versions"]),
            "path": dg.MetadataValue.path(str(bento.path)),
        },
    )


@dg.asset(
    deps=[credit_risk_bento],
    group_name="serving",
    kinds={"bentoml", "kubernetes"},
    owners=[OWNER],
    retry_policy=io_retry_policy(),
    description=(
        "Rolls the Bento out. Registry aliases decide which versions serve (champion, and a challenger at a "
        "traffic weight on a canary); the local target keeps `bentoml serve` running on 127.0.0.1:3001 and "
        "restarts it only when the code changed, keeping the previous Bento if the new one is not healthy."
    ),
)
def credit_risk_deployment(
    context: dg.AssetExecutionContext, lake: LakeStorage, model_registry: ModelRegistry, deployer: ServiceDeployer
) -> dg.MaterializeResult:
    bento = model_store.read_json(lake, BENTO_POINTER)
    aliases = model_registry.aliases()
    plan = plan_rollout(
        aliases.get("champion"),
        aliases.get("challenger"),
        model_registry.challenger_weight(),
        bento["model_version"],
        deployer.strategy,
        deployer.first_canary_weight,
    )
    if deployer.target == "kubernetes":
        from platform_assets.deploy.kubernetes import apply_rollout

        applied = apply_rollout(deployer, bento["tag"], plan)
        model_registry.apply(plan)
        metadata = {"target": "kubernetes", "objects": dg.MetadataValue.json(applied)}
    else:
        previous_registry = (aliases, model_registry.challenger_weight())
        model_registry.apply(plan)
        try:
            state, restarted = deployer.deploy_local(
                bento["tag"], bento["code_version"], settings.platform_home() / "bentoml"
            )
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
    record = {
        "bento": bento["tag"],
        "action": plan.action,
        "champion": plan.champion,
        "challenger": plan.challenger,
        "challenger_weight": plan.challenger_weight,
        "deployed_at": datetime.now(UTC).isoformat(),
        "dagster_run_id": context.run_id,
    }
    model_store.write_json(lake, DEPLOYMENT_POINTER, record)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(json.dumps([plan.champion, plan.challenger, plan.challenger_weight])),
        metadata={
            **metadata,
            "bento_tag": bento["tag"],
            "action": plan.action,
            "champion": plan.champion,
            "challenger": plan.challenger or "none",
            "challenger_weight_percent": plan.challenger_weight,
        },
    )
