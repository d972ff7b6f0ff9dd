"""k8s/: every kustomization builds with a real kustomize, the objects refer to each other correctly, and an
overlay changes nothing but what its own kustomization.yaml asks for."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_support import (
    K8S,
    OVERLAYS,
    PROMETHEUS_DIR,
    REPO,
    by_kind,
    containers,
    env_value,
    kustomize_build,
    load_yaml,
    one,
    pod_specs,
)

Obj = dict[str, Any]
ROLLOUT = "credit-risk-service"
TEMPLATE = "credit-risk-canary-gate"
SERVICE_IMAGE = "credit-risk-service"
PLATFORM_IMAGE = "credit-risk-platform"
BASES = ("base", "dagster", "tls")
ALL = (*BASES, *(f"overlays/{name}" for name in OVERLAYS))


@cache
def render(path: str) -> tuple[Obj, ...]:
    return tuple(kustomize_build(K8S / path))


def objects(path: str) -> list[Obj]:
    return list(render(path))


def base_objects() -> list[Obj]:
    """What every overlay starts from: the two bases, built on their own."""
    return [obj for base in BASES for obj in render(base)]


def overlay_kustomization(name: str) -> Obj:
    return load_yaml(K8S / "overlays" / name / "kustomization.yaml")


def external_secrets() -> set[str]:
    """The Secrets k8s/README.md tells operators to create (first column of its Secret table)."""
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", (K8S / "README.md").read_text(encoding="utf-8"), re.M))


def issued_secrets() -> set[str]:
    """The Secrets cert-manager writes for the Certificates of k8s/tls."""
    return {cert["spec"]["secretName"] for cert in by_kind(objects("tls"), "Certificate").values()}


# --- shape of every rendered object ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL)
def test_builds_and_every_object_is_well_formed(path: str) -> None:
    rendered = objects(path)
    assert rendered
    keys = [(obj["kind"], obj["metadata"]["name"]) for obj in rendered]
    for obj in rendered:
        assert obj.get("apiVersion") and obj.get("kind") and obj.get("metadata", {}).get("name"), obj
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "credit-risk-platform"
    assert len(keys) == len(set(keys)), "duplicate objects"


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_puts_everything_in_its_namespace(name: str) -> None:
    namespace = overlay_kustomization(name)["namespace"]
    assert namespace == f"credit-risk-{name}"
    for obj in objects(f"overlays/{name}"):
        assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
    for binding in by_kind(objects(f"overlays/{name}"), "RoleBinding").values():
        assert {subject["namespace"] for subject in binding["subjects"]} == {namespace}


def test_base_holds_the_service_resources() -> None:
    kinds = {(obj["apiVersion"], obj["kind"]) for obj in objects("base")}
    assert {
        ("argoproj.io/v1alpha1", "Rollout"),
        ("argoproj.io/v1alpha1", "AnalysisTemplate"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
    } <= kinds
    assert "ServiceMonitor" not in {kind for _, kind in kinds}
    assert set(by_kind(objects("base"), "Service")) == {ROLLOUT, f"{ROLLOUT}-stable", f"{ROLLOUT}-canary"}


# --- the Rollout and what it refers to ---------------------------------------------------------------------


def _steps(rendered: list[Obj]) -> list[Obj]:
    return one(rendered, "Rollout", ROLLOUT)["spec"]["strategy"]["canary"]["steps"]


@pytest.mark.parametrize(
    ("path", "weights"),
    [("base", [10, 50, 100]), ("overlays/staging", [50, 100]), ("overlays/prod", [5, 50, 100])],
)
def test_canary_steps_gate_every_promotion_on_the_analysis(path: str, weights: list[int]) -> None:
    steps = _steps(objects(path))
    assert [step["setWeight"] for step in steps if "setWeight" in step] == weights
    assert steps[-1] == {"setWeight": 100}
    # Between each partial weight and the next weight there is an analysis step.
    positions = [i for i, step in enumerate(steps) if "setWeight" in step]
    for start, end in zip(positions, positions[1:], strict=False):
        assert any("analysis" in step for step in steps[start + 1 : end]), f"no analysis after {steps[start]}"


@pytest.mark.parametrize("path", ("base", *(f"overlays/{name}" for name in OVERLAYS)))
def test_analysis_steps_reference_the_real_template_with_its_args(path: str) -> None:
    rendered = objects(path)
    templates = by_kind(rendered, "AnalysisTemplate")
    rollout = one(rendered, "Rollout", ROLLOUT)
    analyses = [step["analysis"] for step in _steps(rendered) if "analysis" in step]
    assert analyses
    for analysis in analyses:
        for ref in analysis["templates"]:
            assert ref["templateName"] in templates, f"no AnalysisTemplate {ref['templateName']}"
            template_args = {arg["name"]: arg for arg in templates[ref["templateName"]]["spec"]["args"]}
            given = {arg["name"]: arg for arg in analysis["args"]}
            assert set(given) <= set(template_args)
            required = {name for name, arg in template_args.items() if "value" not in arg}
            assert required <= set(given), f"args {required - set(given)} not passed"
        # The gate reads the new ReplicaSet's pods: an image rollout, never a model version.
        assert given["canary-hash"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
    assert "credit-risk.io/model-version" not in rollout["metadata"].get("annotations", {})


@pytest.mark.parametrize("path", ("base", *(f"overlays/{name}" for name in OVERLAYS)))
def test_analysis_template_uses_only_declared_args(path: str) -> None:
    template = one(objects(path), "AnalysisTemplate", TEMPLATE)
    declared = {arg["name"] for arg in template["spec"]["args"]}
    used = set(re.findall(r"\{\{\s*args\.([\w-]+)\s*\}\}", yaml.safe_dump(template["spec"]["metrics"])))
    assert used == declared
    for metric in template["spec"]["metrics"]:
        assert metric["successCondition"] and metric["failureCondition"]
        assert metric["provider"]["prometheus"]["query"].strip()


@pytest.mark.parametrize("path", ("base", *(f"overlays/{name}" for name in OVERLAYS)))
def test_services_hpa_and_pdb_point_at_the_rollout(path: str) -> None:
    rendered = objects(path)
    rollout = one(rendered, "Rollout", ROLLOUT)
    pod_labels = rollout["spec"]["template"]["metadata"]["labels"]
    assert rollout["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    canary = rollout["spec"]["strategy"]["canary"]
    services = by_kind(rendered, "Service")
    for name in (canary["stableService"], canary["canaryService"], ROLLOUT):
        assert services[name]["spec"]["selector"].items() <= pod_labels.items(), name
        assert services[name]["spec"]["ports"][0]["targetPort"] == "https"
    hpa = one(rendered, "HorizontalPodAutoscaler", ROLLOUT)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": ROLLOUT}
    cpu = [metric for metric in hpa["spec"]["metrics"] if metric["type"] == "Resource"]
    assert cpu[0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = one(rendered, "PodDisruptionBudget", ROLLOUT)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] or hpa["spec"]["minReplicas"] == 1


def test_service_container() -> None:
    rollout = one(objects("base"), "Rollout", ROLLOUT)
    template = rollout["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["image"] == f"{SERVICE_IMAGE}:latest"
    assert container["ports"] == [{"name": "https", "containerPort": 3000, "protocol": "TCP"}]
    # Mutual TLS: the probes exec an HTTPS request with the pod's certificate (tests/ops/test_ops_k8s_tls.py).
    assert container["livenessProbe"]["exec"]["command"][-1] == "https://127.0.0.1:3000/livez"
    assert container["readinessProbe"]["exec"]["command"][-1] == "https://127.0.0.1:3000/readyz"
    # Sized for a 2-core node.
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert _cpu(requests["cpu"]) <= _cpu(limits["cpu"]) <= 2.0
    # BentoML workers x ONNX Runtime threads (platform_assets/serving/settings.py) fit the CPU limit.
    workers = int(env_value(container, "CREDIT_RISK_WORKERS")["value"])
    threads = int(env_value(container, "CREDIT_RISK_ONNX_THREADS")["value"])
    assert workers * threads <= _cpu(limits["cpu"])
    assert env_value(container, "OMP_NUM_THREADS")["value"] == str(threads)
    assert env_value(container, "MLFLOW_TRACKING_URI")["valueFrom"]["configMapKeyRef"]["key"] == "MLFLOW_TRACKING_URI"
    # The API keys are a file from a Secret volume.
    key_file = Path(env_value(container, "CREDIT_RISK_API_KEYS_FILE")["value"])
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
    mount = next(m for m in mounts.values() if key_file.parent == Path(m["mountPath"]))
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert [item["path"] for item in secret["items"]] == [key_file.name]
    # Scraped by annotation (no ServiceMonitor) on the container's port.
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]
    assert annotations["prometheus.io/path"] == "/metrics"


def _cpu(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _meta_label(key: str) -> str:
    """A Kubernetes label or annotation key as Prometheus spells it in __meta_kubernetes_pod_* names."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def test_kubernetes_scrape_config_keeps_what_the_rollout_sets() -> None:
    """grafana/prometheus/kubernetes-scrape.yml (not checkable by Debian's promtool) matches the pod labels,
    the prometheus.io annotations and the job name the alerts select on."""
    rollout = one(objects("base"), "Rollout", ROLLOUT)
    template = rollout["spec"]["template"]["metadata"]
    (job,) = load_yaml(PROMETHEUS_DIR / "kubernetes-scrape.yml")["scrape_configs"]
    assert job["job_name"] == "credit-risk-service"
    keeps = {
        relabel["source_labels"][0]: relabel["regex"]
        for relabel in job["relabel_configs"]
        if relabel.get("action") == "keep"
    }
    for label, value in template["labels"].items():
        meta = f"__meta_kubernetes_pod_label_{_meta_label(label)}"
        if meta in keeps:
            assert re.fullmatch(keeps[meta], value)
    assert re.fullmatch(
        keeps["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], template["annotations"]["prometheus.io/scrape"]
    )
    sources = {label for relabel in job["relabel_configs"] for label in relabel["source_labels"]}
    for annotation in template["annotations"]:
        assert f"__meta_kubernetes_pod_annotation_{_meta_label(annotation)}" in sources


# --- references that must resolve in every deployable render ------------------------------------------------


def _config_map_refs(template: Obj) -> Iterator[tuple[str, str | None]]:
    spec = template["spec"]
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield volume["configMap"]["name"], None
    for container in spec["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                yield ref["name"], ref["key"]
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield source["configMapRef"]["name"], None


def _secret_refs(template: Obj) -> Iterator[str]:
    spec = template["spec"]
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            yield volume["secret"]["secretName"]
    for container in spec["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                yield ref["name"]
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                yield source["secretRef"]["name"]


@pytest.mark.parametrize("path", ALL)
def test_config_maps_exist_and_secrets_are_documented(path: str) -> None:
    rendered = objects(path)
    config_maps = by_kind(rendered, "ConfigMap")
    for workload, template in pod_specs(rendered):
        for name, key in _config_map_refs(template):
            assert name in config_maps, f"{workload['metadata']['name']} needs ConfigMap {name}"
            if key is not None:
                assert key in config_maps[name]["data"], f"ConfigMap {name} has no key {key}"
        for name in _secret_refs(template):
            documented = external_secrets() | issued_secrets()
            assert name in documented, f"Secret {name} is neither in k8s/README.md's table nor issued by k8s/tls"
        service_account = template["spec"].get("serviceAccountName")
        if service_account:
            assert service_account in by_kind(rendered, "ServiceAccount")


@pytest.mark.parametrize("path", ALL)
def test_probes_and_services_use_declared_ports(path: str) -> None:
    rendered = objects(path)
    for _, container in containers(rendered):
        port_names = {port["name"] for port in container.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = container.get(probe, {}).get("httpGet", {}).get("port")
            if port is not None:
                assert port in port_names, f"{container['name']} {probe} port {port}"
    for service in by_kind(rendered, "Service").values():
        selector = service["spec"]["selector"]
        backing = [t for _, t in pod_specs(rendered) if selector.items() <= t["metadata"]["labels"].items()]
        assert backing, f"Service {service['metadata']['name']} selects no pods"
        names = {port["name"] for c in backing[0]["spec"]["containers"] for port in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names


# --- Dagster ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ("dagster", *(f"overlays/{name}" for name in OVERLAYS)))
def test_dagster_instance_refers_to_rendered_objects(path: str) -> None:
    rendered = objects(path)
    instance = yaml.safe_load(one(rendered, "ConfigMap", "dagster-instance")["data"]["dagster.yaml"])
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    config = launcher["config"]
    config_maps = by_kind(rendered, "ConfigMap")
    assert config["instance_config_map"] in config_maps
    assert set(config["env_config_maps"]) <= set(config_maps)
    assert set(config["env_secrets"]) | {config["postgres_password_secret"]} <= external_secrets()
    assert config["service_account_name"] in by_kind(rendered, "ServiceAccount")
    # Runs go to the daemon's own namespace, through the downward API.
    namespace_var = config["job_namespace"]["env"]
    assert namespace_var in config["env_vars"]
    for workload, template in pod_specs(rendered):
        if workload["kind"] == "Deployment":
            (container,) = template["spec"]["containers"]
            ref = env_value(container, namespace_var)["valueFrom"]["fieldRef"]
            assert ref == {"fieldPath": "metadata.namespace"}
    # The instance is mounted where the launcher tells run pods it lives.
    for name in ("dagster-webserver", "dagster-daemon", "dagster-code-location"):
        (container,) = one(rendered, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        mount_paths = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert f"{config['dagster_home']}/dagster.yaml" in mount_paths, name
        assert env_value(container, "DAGSTER_PG_PASSWORD")["valueFrom"]["secretKeyRef"] == {
            "name": config["postgres_password_secret"],
            "key": "postgresql-password",
        }
    assert config_maps["credit-risk-pipeline-env"]["data"]["DAGSTER_HOME"] == config["dagster_home"]


@pytest.mark.parametrize("path", ("dagster", *(f"overlays/{name}" for name in OVERLAYS)))
def test_dagster_workspace_points_at_the_code_location(path: str) -> None:
    rendered = objects(path)
    (workspace_map,) = [
        cm for name, cm in by_kind(rendered, "ConfigMap").items() if name.startswith("dagster-workspace")
    ]
    (entry,) = yaml.safe_load(workspace_map["data"]["workspace.yaml"])["load_from"]
    server = entry["grpc_server"]
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert f'code_location_name = "{server["location_name"]}"' in pyproject
    service = one(rendered, "Service", server["host"])
    assert server["port"] in {port["port"] for port in service["spec"]["ports"]}
    code = one(rendered, "Deployment", "dagster-code-location")
    (container,) = code["spec"]["template"]["spec"]["containers"]
    module = container["command"][container["command"].index("--module-name") + 1]
    assert f'module_name = "{module}"' in pyproject
    assert container["command"][container["command"].index("--port") + 1] == str(server["port"])


@pytest.mark.parametrize("path", ("dagster", *(f"overlays/{name}" for name in OVERLAYS)))
def test_runs_use_the_code_location_image(path: str) -> None:
    code = one(objects(path), "Deployment", "dagster-code-location")
    (container,) = code["spec"]["template"]["spec"]["containers"]
    assert env_value(container, "DAGSTER_CURRENT_IMAGE")["value"] == container["image"]


# --- overlays: images, and nothing but the patches ----------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_tags_every_image(name: str) -> None:
    tags = {image["name"]: image["newTag"] for image in overlay_kustomization(name)["images"]}
    assert set(tags) == {SERVICE_IMAGE, PLATFORM_IMAGE}
    for _, container in containers(objects(f"overlays/{name}")):
        image, _, tag = container["image"].rpartition(":")
        assert image in tags and tag == tags[image] != "latest", container["image"]


def _generated_names() -> set[str]:
    """ConfigMaps whose names kustomize suffixes with a content hash."""
    names = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        for generator in load_yaml(kustomization).get("configMapGenerator", []):
            if not generator.get("options", {}).get("disableNameSuffixHash"):
                names.add(generator["name"])
    return names


def _normalize(value: Any, generated: set[str]) -> Any:
    """Drops kustomize's content hash from generated names, wherever they appear."""
    if isinstance(value, str):
        match = re.fullmatch(r"(.+)-[a-z0-9]{10}", value)
        return match.group(1) if match and match.group(1) in generated else value
    if isinstance(value, dict):
        return {key: _normalize(item, generated) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalize(item, generated) for item in value]
    return value


Path_ = tuple[Any, ...]


def _key(item: Any, index: int) -> Any:
    return f"[name={item['name']}]" if isinstance(item, dict) and "name" in item else index


def _flatten(value: Any, prefix: Path_ = ()) -> dict[Path_, Any]:
    if isinstance(value, dict) and value:
        return {path: leaf for key, item in value.items() for path, leaf in _flatten(item, (*prefix, key)).items()}
    if isinstance(value, list) and value:
        return {
            path: leaf
            for index, item in enumerate(value)
            for path, leaf in _flatten(item, (*prefix, _key(item, index))).items()
        }
    return {prefix: value}


def _pointer_path(obj: Obj, pointer: str) -> Path_:
    """A JSON6902 path (/spec/x/0/y) as a _flatten path; an index into a list keeps the whole list."""
    tokens = [token.replace("~1", "/").replace("~0", "~") for token in pointer.strip("/").split("/")]
    path: list[Any] = []
    node: Any = obj
    for token in tokens:
        if isinstance(node, list):
            return tuple(path)  # elements shift on add/remove: the list as a whole may change
        path.append(token)
        node = node.get(token) if isinstance(node, dict) else None
    return tuple(path)


def _field_path(spec: str) -> Path_:
    """A kustomize replacements fieldPath (a.b.[name=x].c, a list index as a.b.3) as a _flatten path."""
    return tuple(int(token) if token.isdigit() else token for token in spec.split("."))


def _allowed_changes(name: str, base: dict[tuple[str, str], Obj]) -> dict[tuple[str, str], list[Path_]]:
    """What overlays/NAME/kustomization.yaml may change, per object: derived from the kustomization itself."""
    kustomization = overlay_kustomization(name)
    directory = K8S / "overlays" / name
    allowed: dict[tuple[str, str], list[Path_]] = {key: [] for key in base}
    for key, obj in base.items():
        if "namespace" in kustomization:
            allowed[key].append(("metadata", "namespace"))
            if obj["kind"] == "RoleBinding":
                allowed[key] += [("subjects", _key(s, i), "namespace") for i, s in enumerate(obj["subjects"])]
    image_names = {image["name"] for image in kustomization.get("images", [])}
    for workload, container in containers(list(base.values())):
        if container["image"].rpartition(":")[0] in image_names:
            key = (workload["kind"], workload["metadata"]["name"])
            allowed[key].append(("spec", "template", "spec", "containers", f"[name={container['name']}]", "image"))
    for generator in kustomization.get("configMapGenerator", []):
        assert generator.get("behavior") == "merge", "an overlay only merges into the bases' ConfigMaps"
        for literal in generator.get("literals", []):
            allowed[("ConfigMap", generator["name"])].append(("data", literal.partition("=")[0]))
    for patch in kustomization.get("patches", []):
        body = yaml.safe_load((directory / patch["path"]).read_text(encoding="utf-8"))
        if isinstance(body, list):  # JSON6902
            target = patch["target"]
            key = (target["kind"], target["name"])
            allowed[key] += [_pointer_path(base[key], op["path"]) for op in body]
        else:  # strategic merge: the leaves it sets
            key = (body["kind"], body["metadata"]["name"])
            allowed[key] += [path for path in _flatten(body) if path[0] not in ("apiVersion", "kind", "metadata")]
    for replacement in kustomization.get("replacements", []):
        for target in replacement["targets"]:
            key = (target["select"]["kind"], target["select"]["name"])
            allowed[key] += [_field_path(spec) for spec in target["fieldPaths"]]
    return allowed


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_changes_only_what_it_patches(name: str) -> None:
    generated = _generated_names()
    base = {(o["kind"], _normalize(o["metadata"]["name"], generated)): _normalize(o, generated) for o in base_objects()}
    overlay = {
        (o["kind"], _normalize(o["metadata"]["name"], generated)): _normalize(o, generated)
        for o in objects(f"overlays/{name}")
    }
    assert set(overlay) == set(base), "an overlay adds or drops no object: patches only"
    allowed = _allowed_changes(name, base)
    used: set[tuple[tuple[str, str], Path_]] = set()
    for key in base:
        before, after = _flatten(base[key]), _flatten(overlay[key])
        changed = {path for path in before.keys() | after.keys() if before.get(path, ...) != after.get(path, ...)}
        for path in changed:
            prefixes = [p for p in allowed[key] if path[: len(p)] == p]
            assert prefixes, f"overlays/{name} changes {key} at {'.'.join(map(str, path))} without patching it"
            used |= {(key, p) for p in prefixes}
    # ... and every patch, image and merge it declares does change something.
    unused = {(key, path) for key, paths in allowed.items() for path in paths} - used
    unused = {(key, path) for key, path in unused if path not in (("metadata", "namespace"),) and path[0] != "subjects"}
    assert not unused, f"overlays/{name} declares changes that change nothing: {sorted(unused, key=str)}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_files_are_thin(name: str) -> None:
    """No copy of a base resource: every file in the overlay is its kustomization or a patch it lists."""
    directory = K8S / "overlays" / name
    kustomization = overlay_kustomization(name)
    listed = {"kustomization.yaml"} | {patch["path"] for patch in kustomization.get("patches", [])}
    assert {p.name for p in directory.iterdir()} == listed
    assert kustomization["resources"] == [f"../../{base}" for base in BASES]
    for patch in kustomization.get("patches", []):
        assert len((directory / patch["path"]).read_text(encoding="utf-8").splitlines()) <= 30
