"""The kubernetes target: render the kustomize overlay for a Bento and apply it server-side.

Only the model service's objects are applied (those ``k8s/base`` labels ``credit-risk.io/applied-by``), never
Dagster's own: the run pod's service account may not rewrite its own RBAC. Every object is first sent as a
server-side dry run; only when the API server accepts them all is any applied, so a rejected object (a bad
field, a missing CRD, a denied verb) leaves the cluster as it was.

The image ``<image_repository>:<code version>`` must exist in the cluster's registry: build it from the
Bento with ``bentoml containerize credit_risk:<version> -t <image_repository>:<code version>`` in CI/CD (it
needs a container engine); any Bento of that code version gives the same image, since the image carries no
model.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from platform_assets.deploy.bento import REPO

if TYPE_CHECKING:
    from platform_assets.resources.deployer import ServiceDeployer

ROLLOUT_NAME = "credit-risk-service"
FIELD_MANAGER = "credit-risk-platform"
#: The label (and value) ``k8s/base/kustomization.yaml`` puts on what this target applies.
APPLIED_BY_LABEL = "credit-risk.io/applied-by"
APPLIED_BY = "credit-risk-deployment"


class ApplyClient(Protocol):
    """The part of ``kubernetes.dynamic.DynamicClient`` this target uses (tests pass a fake)."""

    @property
    def resources(self) -> Any: ...

    def server_side_apply(
        self,
        resource: Any,
        body: Any = None,
        name: Any = None,
        namespace: Any = None,
        force_conflicts: Any = None,
        **kwargs: Any,
    ) -> Any: ...


def render(overlay: Path, image: str) -> list[dict[str, Any]]:
    """``kubectl kustomize overlay`` with the service image set."""
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
    for container in rollouts[0]["spec"]["template"]["spec"]["containers"]:
        if container["name"] == ROLLOUT_NAME:
            container["image"] = image
    return objects


def service_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects this target applies: the model service's, by their ``credit-risk.io/applied-by`` label."""
    return [o for o in objects if o["metadata"].get("labels", {}).get(APPLIED_BY_LABEL) == APPLIED_BY]


def apply_objects(client: ApplyClient, objects: list[dict[str, Any]], namespace: str) -> list[str]:
    """Server-side apply of ``objects``: all as a dry run first, then all for real; ``kind/name`` of each.

    An object the API server rejects in the dry run (or whose kind it does not know) raises before anything
    is applied.
    """
    resolved = [(client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]), obj) for obj in objects]
    for dry_run in (True, False):
        for resource, obj in resolved:
            target_namespace = obj["metadata"].get("namespace") or namespace
            client.server_side_apply(
                resource,
                body=obj,
                name=obj["metadata"]["name"],
                namespace=target_namespace if resource.namespaced else None,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                **({"dry_run": "All"} if dry_run else {}),
            )
    return [f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects]


def apply_rollout(deployer: ServiceDeployer, code_version: str) -> list[str]:
    """Dry-run, then apply, the service's objects of the rendered overlay in the current kube context, with the
    image of ``code_version``.

    The image is tagged by the code version alone, never by a model version: the pods load the versions the
    registry's aliases name, so a new model version re-applies the same objects (no new Rollout revision) and
    only a code change starts an Argo image rollout.
    """
    from kubernetes import config, dynamic
    from kubernetes.client import api_client

    image = f"{deployer.image_repository}:{code_version}"
    objects = service_objects(render(REPO / deployer.k8s_overlay, image))
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    client = dynamic.DynamicClient(api_client.ApiClient())
    return apply_objects(client, objects, deployer.k8s_namespace)
