"""Offline validation of k8s/ (`make k8s-validate`): every kustomization renders, and every object validates
strictly (an undeclared field is an error, as with `kubectl apply`) against the schemas of the Kubernetes
version the manifests target, with kubernetes-validate (PyPI); the Argo Rollouts and cert-manager kinds against
their CRD schemas, from @kubernetes-models/argo-rollouts and @kubernetes-models/cert-manager (npm, installed by
`make k8s-validate` into tests/ops/argo_rollouts/node_modules), the Rollout's pod template against Kubernetes'
own; and the Job dagster-k8s'
K8sRunLauncher creates for a run, built by dagster-k8s itself from k8s/dagster/dagster.yaml."""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_support import K8S, OVERLAYS, REPO, kustomize_build, one, run

#: The Kubernetes release the manifests target (its API schemas, bundled with kubernetes-validate).
KUBERNETES_VERSION = "1.33.0"
ARGO_DIR = REPO / "tests" / "ops" / "argo_rollouts"
ARGO_KINDS = {"Rollout", "AnalysisTemplate"}
CERT_MANAGER_KINDS = {"Issuer", "Certificate"}
#: The npm package of each custom resource group's schemas (pinned in tests/ops/argo_rollouts/package.json).
CRD_PACKAGES = {"argoproj.io": "argo-rollouts", "cert-manager.io": "cert-manager"}
PATHS = ("base", "dagster", "tls", *(f"overlays/{name}" for name in OVERLAYS))
INSTALL = "make k8s-validate (or: npm ci --prefix tests/ops/argo_rollouts)"

Obj = dict[str, Any]


@cache
def rendered(path: str) -> tuple[Obj, ...]:
    return tuple(kustomize_build(K8S / path))


def kubernetes_errors(obj: Obj) -> list[str]:
    """Errors of ``obj`` against the target version's schema, strict; [] when valid."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(part) for part in error.path)
        return [f"{obj['kind']} {obj['metadata']['name']}: /{where}: {error.message}"]
    return []


def is_custom(obj: Obj) -> bool:
    return obj["apiVersion"].split("/")[0] in CRD_PACKAGES


def crd_errors(objects: list[Obj]) -> list[list[str]]:
    """Per object, its errors against its CRD's schemas (tests/ops/argo_rollouts/validate.js)."""
    node = shutil.which("node")
    for package in {CRD_PACKAGES[obj["apiVersion"].split("/")[0]] for obj in objects}:
        if node is None or not (ARGO_DIR / "node_modules" / "@kubernetes-models" / package).is_dir():
            pytest.fail(
                f"the schemas of @kubernetes-models/{package} are not installed (needs node and npm: apt-get install"
                f" -y npm). Run: {INSTALL}",
                pytrace=False,
            )
    assert node is not None
    result = run([node, str(ARGO_DIR / "validate.js"), "-"], timeout=60, stdin=json.dumps(objects))
    assert result.returncode == 0, result.stderr
    errors: list[list[str]] = json.loads(result.stdout)
    return errors


@pytest.mark.parametrize("path", PATHS)
def test_every_object_validates_against_the_kubernetes_schemas(path: str) -> None:
    errors = []
    for obj in rendered(path):
        if is_custom(obj):
            continue
        errors += kubernetes_errors(obj)
    for rollout in (obj for obj in rendered(path) if obj["kind"] == "Rollout"):
        # Argo's CRD embeds a PodTemplateSpec: Kubernetes' own schema for it is the stricter, current one.
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": rollout["metadata"]["name"]},
            "template": rollout["spec"]["template"],
        }
        errors += kubernetes_errors(pod_template)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", ("base", "tls", *(f"overlays/{name}" for name in OVERLAYS)))
def test_custom_resources_validate_against_their_crd_schemas(path: str) -> None:
    objects = [obj for obj in rendered(path) if is_custom(obj)]
    expected = {"base": ARGO_KINDS, "tls": CERT_MANAGER_KINDS}.get(path, ARGO_KINDS | CERT_MANAGER_KINDS)
    assert {obj["kind"] for obj in objects} == expected
    errors = crd_errors(objects)
    problems = [
        f"{obj['kind']} {obj['metadata']['name']}: {e}" for obj, errs in zip(objects, errors, strict=True) for e in errs
    ]
    assert not problems, "\n".join(problems)


def test_the_validators_reject_what_a_cluster_rejects() -> None:
    """The Kubernetes and Argo validators are strict: an unknown field and a wrongly typed one fail (a guard
    against a validator that passes everything). cert-manager's precompiled schemas cannot be closed
    (validate.js), but refuse a wrong type, an unknown key usage and a missing required field."""
    rollout = json.loads(json.dumps(one(list(rendered("overlays/prod")), "Rollout", "credit-risk-service")))
    rollout["spec"]["strategy"]["canary"]["stepz"] = []
    rollout["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = "five"
    certificate = json.loads(json.dumps(one(list(rendered("tls")), "Certificate", "credit-risk-service-tls")))
    certificate["spec"]["usages"].append("client autth")
    certificate["spec"]["duration"] = 2160
    issuer = json.loads(json.dumps(one(list(rendered("tls")), "Issuer", "credit-risk-ca")))
    del issuer["spec"]["ca"]["secretName"]
    argo, cert, ca = crd_errors([rollout, certificate, issuer])
    assert any("/spec/usages/" in error and "allowed values" in error for error in cert), cert
    assert any("/spec/duration must be string" in error for error in cert), cert
    assert any("secretName" in error for error in ca), ca
    assert any("stepz" in error for error in argo) and any("setWeight must be integer" in error for error in argo)
    deployment = json.loads(json.dumps(one(list(rendered("dagster")), "Deployment", "dagster-daemon")))
    deployment["spec"]["template"]["spec"]["containers"][0]["envFromm"] = []
    assert kubernetes_errors(deployment)
    deployment = json.loads(json.dumps(one(list(rendered("dagster")), "Deployment", "dagster-daemon")))
    deployment["spec"]["replicas"] = "one"
    assert kubernetes_errors(deployment)


@pytest.fixture
def run_launcher(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The K8sRunLauncher k8s/dagster/dagster.yaml configures, as the daemon builds it (no cluster)."""
    import kubernetes
    from dagster._config import process_config
    from dagster._serdes import ConfigurableClassData
    from dagster_k8s import K8sRunLauncher

    monkeypatch.setenv("DAGSTER_K8S_JOB_NAMESPACE", "credit-risk-prod")
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    instance = yaml.safe_load(
        one(list(rendered("overlays/prod")), "ConfigMap", "dagster-instance")["data"]["dagster.yaml"]
    )
    data = instance["run_launcher"]
    result = process_config(K8sRunLauncher.config_type(), data["config"])
    assert result.success, [error.message for error in result.errors or []]
    inst_data = ConfigurableClassData(data["module"], data["class"], yaml.safe_dump(data["config"]))
    return K8sRunLauncher.from_config_value(inst_data, result.value)


def test_the_run_job_dagster_k8s_creates_validates(run_launcher: Any) -> None:
    """The Job of a run pod, built by dagster-k8s from the rendered instance config exactly as
    K8sRunLauncher.launch_run does, is a valid Kubernetes object that mounts the key pair and gets the
    pipeline's environment and secrets."""
    import kubernetes
    from dagster import DagsterRun
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import construct_dagster_k8s_job

    rendered_prod = list(rendered("overlays/prod"))
    code = one(rendered_prod, "Deployment", "dagster-code-location")
    (code_container,) = code["spec"]["template"]["spec"]["containers"]
    run = DagsterRun(job_name="release_job", run_id="0123456789abcdef")
    context = K8sContainerContext.create_for_run(run, run_launcher, include_run_tags=False)
    job_config = context.get_k8s_job_config(job_image=code_container["image"], run_launcher=run_launcher)
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-0123456789abcdef",
        pod_name="dagster-run-0123456789abcdef",
        component="run_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": "release_job", "dagster/run-id": run.run_id},
    )
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    assert not kubernetes_errors(manifest), kubernetes_errors(manifest)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "dagster"
    (container,) = pod["containers"]
    assert container["image"] == code_container["image"]
    sources = {ref.get("configMapRef", ref.get("secretRef", {})).get("name") for ref in container["envFrom"]}
    code_sources = {ref.get("configMapRef", ref.get("secretRef", {})).get("name") for ref in code_container["envFrom"]}
    assert code_sources <= sources
    secrets = {volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume}
    assert {"credit-risk-signing-key", "credit-risk-verify-key"} <= secrets
    code_mounts = {(m["name"], m["mountPath"]) for m in code_container["volumeMounts"] if m["name"].endswith("-key")}
    assert code_mounts <= {(m["name"], m["mountPath"]) for m in container["volumeMounts"]}


def test_make_k8s_validate_runs_these_tests() -> None:
    dry_run = run(["make", "-n", "k8s-validate"], cwd=REPO)
    assert dry_run.returncode == 0, dry_run.stderr
    (pytest_line,) = [line for line in dry_run.stdout.splitlines() if "-m pytest" in line]
    for test_file in sorted(Path(__file__).parent.glob("test_ops_k8s_*.py")):
        assert f"tests/ops/{test_file.name}" in pytest_line.split()
    lock = json.loads((ARGO_DIR / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/@kubernetes-models/argo-rollouts"]["version"] == "0.3.2"
    assert lock["packages"]["node_modules/@kubernetes-models/cert-manager"]["version"] == "4.4.4"
    # "node_modules" (no slash) also ignores a node_modules symlink, as a git worktree may have.
    assert {"node_modules", "node_modules/"} & set((REPO / ".gitignore").read_text(encoding="utf-8").splitlines())
