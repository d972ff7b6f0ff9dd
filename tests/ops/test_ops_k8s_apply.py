"""The kubernetes target (platform_assets/deploy/kubernetes.py) against a fake API server: every object is
accepted by a server-side dry run before any is applied, a rejected object leaves nothing applied, it applies
the model service's objects only, and the dagster service account's Role allows exactly that."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ops_support import K8S, by_kind, kustomize_build

from platform_assets.deploy import kubernetes as target

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class Rejected(Exception):
    """What the fake API server raises for an object it refuses (a 422 from a real one)."""


@dataclass(frozen=True)
class FakeResource:
    api_version: str
    kind: str
    namespaced: bool


@dataclass
class FakeResources:
    unknown_kinds: set[str]

    def get(self, api_version: str, kind: str) -> FakeResource:
        if kind in self.unknown_kinds:
            raise Rejected(f"the server could not find the requested resource {api_version}/{kind}")
        return FakeResource(api_version, kind, kind not in CLUSTER_SCOPED)


@dataclass
class FakeCluster:
    """Records each server-side apply as (phase, kind, name, namespace); refuses the names in ``rejects``."""

    rejects: set[str] = field(default_factory=set)
    unknown_kinds: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    bodies: list[tuple[str, str, Any]] = field(default_factory=list)

    @property
    def resources(self) -> FakeResources:
        return FakeResources(self.unknown_kinds)

    def server_side_apply(
        self,
        resource: FakeResource,
        body: Any = None,
        name: Any = None,
        namespace: Any = None,
        force_conflicts: Any = None,
        **kwargs: Any,
    ) -> Any:
        assert kwargs["field_manager"] == target.FIELD_MANAGER and force_conflicts is True
        phase = "dry-run" if kwargs.get("dry_run") == "All" else "apply"
        assert set(kwargs) <= {"field_manager", "dry_run"}
        if name in self.rejects:
            raise Rejected(f"{resource.kind} {name} is invalid")
        self.calls.append((phase, resource.kind, name, namespace))
        self.bodies.append((phase, resource.kind, body))
        return body

    def applied(self) -> list[tuple[str, str]]:
        return [(kind, name) for phase, kind, name, _ in self.calls if phase == "apply"]


def _applied_bodies(cluster: FakeCluster) -> list[tuple[str, str, Any]]:
    return [entry for entry in cluster.bodies if entry[0] == "apply"]


def _objects() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config"}},
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "credit-risk-service"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "elsewhere"}},
    ]


def test_every_object_is_dry_run_before_any_is_applied() -> None:
    cluster = FakeCluster()
    applied = target.apply_objects(cluster, _objects(), "credit-risk-prod")
    assert applied == ["ConfigMap/config", "Rollout/credit-risk-service", "Service/svc"]
    phases = [phase for phase, *_ in cluster.calls]
    assert phases == ["dry-run"] * 3 + ["apply"] * 3
    dry = [call[1:] for call in cluster.calls if call[0] == "dry-run"]
    real = [call[1:] for call in cluster.calls if call[0] == "apply"]
    assert (
        dry
        == real
        == [
            ("ConfigMap", "config", "credit-risk-prod"),
            ("Rollout", "credit-risk-service", "credit-risk-prod"),
            ("Service", "svc", "elsewhere"),
        ]
    )


def test_an_object_rejected_by_the_dry_run_leaves_nothing_applied() -> None:
    cluster = FakeCluster(rejects={"svc"})  # the last one: the others passed their dry run
    with pytest.raises(Rejected, match="Service svc is invalid"):
        target.apply_objects(cluster, _objects(), "credit-risk-prod")
    assert [phase for phase, *_ in cluster.calls] == ["dry-run", "dry-run"]
    assert cluster.applied() == []


def test_an_unknown_kind_leaves_nothing_applied() -> None:
    """No Argo Rollouts CRD in the cluster: refused before the first request."""
    cluster = FakeCluster(unknown_kinds={"Rollout"})
    with pytest.raises(Rejected, match="argoproj.io/v1alpha1/Rollout"):
        target.apply_objects(cluster, _objects(), "credit-risk-prod")
    assert cluster.calls == []


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    """apply_rollout's own client construction, pointed at a FakeCluster."""
    from kubernetes import config, dynamic

    cluster = FakeCluster()
    monkeypatch.setattr(config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(dynamic, "DynamicClient", lambda _api_client: cluster)
    return cluster


def test_apply_rollout_applies_the_rendered_service_objects_with_the_new_image(
    fake_cluster: FakeCluster, tmp_path: Path
) -> None:
    from platform_assets.resources.deployer import ServiceDeployer

    deployer = ServiceDeployer(
        target="kubernetes",
        platform_home=str(tmp_path),
        tracking_uri="http://mlflow:5000",
        k8s_overlay="k8s/overlays/prod",
        k8s_namespace="credit-risk-prod",
    )
    applied = target.apply_rollout(deployer, "abc123")
    rendered = kustomize_build(K8S / "overlays" / "prod")
    expected = target.service_objects(rendered)
    assert sorted(applied) == sorted(f"{o['kind']}/{o['metadata']['name']}" for o in expected)
    kinds = {kind for kind, _ in fake_cluster.applied()}
    assert {"Rollout", "AnalysisTemplate", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    assert not kinds & {"Deployment", "Role", "RoleBinding", "ServiceAccount", "Job"}, "Dagster's own objects"
    assert {namespace for *_, namespace in fake_cluster.calls} == {"credit-risk-prod"}
    assert len(fake_cluster.calls) == 2 * len(applied)
    [rollout] = [body for _, kind, body in _applied_bodies(fake_cluster) if kind == "Rollout"]
    # The image of the code version, and nothing naming a model version: a new model version re-applies the
    # same Rollout (no new revision), so Argo rolls out images only.
    assert rollout["spec"]["template"]["spec"]["containers"][0]["image"] == "credit-risk-service:abc123"
    assert "model-version" not in json.dumps(rollout)


def _plural(kind: str) -> str:
    """The resource name RBAC uses for a kind (the API's own plural for every kind k8s/ has)."""
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def test_the_run_pods_service_account_may_apply_what_the_target_applies() -> None:
    """The dagster Role grants get/create/patch (a server-side apply, dry run or not) on every kind the target
    applies: without it the first deployment from a run pod would be refused by RBAC."""
    for overlay in ("staging", "prod"):
        rendered = kustomize_build(K8S / "overlays" / overlay)
        rules = by_kind(rendered, "Role")["dagster"]["rules"]
        for obj in target.service_objects(rendered):
            group = obj["apiVersion"].rpartition("/")[0]
            plural = _plural(obj["kind"])
            allowed = {
                verb
                for rule in rules
                if group in rule["apiGroups"] and plural in rule["resources"]
                for verb in rule["verbs"]
            }
            assert {"get", "create", "patch"} <= allowed, f"{overlay}: dagster may not apply {obj['kind']}"
