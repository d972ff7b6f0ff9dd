"""The kubernetes target: render the kustomize overlay for a Bento and apply it server-side.

The image ``<image_repository>:<bento version>`` must exist in the cluster's registry: build it from
the Bento with ``bentoml containerize credit_risk:<version>`` in CI/CD (it needs a container engine).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from platform_assets.deploy.bento import REPO
from platform_assets.deploy.rollout import RolloutPlan

if TYPE_CHECKING:
    from platform_assets.resources.deployer import ServiceDeployer

ROLLOUT_NAME = "credit-risk-service"
MODEL_VERSION_ANNOTATION = "credit-risk.io/model-version"
FIELD_MANAGER = "credit-risk-platform"


def render(overlay: Path, image: str, model_version: str) -> list[dict[str, Any]]:
    """``kubectl kustomize overlay`` with the service image and model-version annotation set."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("the kubernetes target needs kubectl (with built-in kustomize) on PATH")
    result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed: {result.stderr.strip()}")
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    rollouts = [o for o in objects if o["kind"] == "Rollout" and o["metadata"]["name"] == ROLLOUT_NAME]
    if len(rollouts) != 1:
        raise RuntimeError(f"{overlay} renders {len(rollouts)} Rollouts named {ROLLOUT_NAME}, expected 1")
    rollout = rollouts[0]
    rollout["metadata"].setdefault("annotations", {})[MODEL_VERSION_ANNOTATION] = model_version
    for container in rollout["spec"]["template"]["spec"]["containers"]:
        if container["name"] == ROLLOUT_NAME:
            container["image"] = image
    return objects


def apply_rollout(deployer: ServiceDeployer, bento_tag: str, plan: RolloutPlan) -> list[str]:
    """Server-side apply of the rendered overlay to the cluster in the current kube context."""
    from kubernetes import config, dynamic
    from kubernetes.client import api_client

    image = f"{deployer.image_repository}:{bento_tag.split(':', 1)[1]}"
    version = plan.challenger or plan.champion
    objects = render(REPO / deployer.k8s_overlay, image, version)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    client = dynamic.DynamicClient(api_client.ApiClient())
    applied = []
    for obj in objects:
        resource = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace") or deployer.k8s_namespace
        client.server_side_apply(
            resource,
            body=obj,
            name=obj["metadata"]["name"],
            namespace=namespace if resource.namespaced else None,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        applied.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return applied
