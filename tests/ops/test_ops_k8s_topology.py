"""A rendered overlay configures the whole system from the environment's table (platform_assets/settings.py):
the code location's environment, evaluated by the control plane's own settings, gives the kubernetes target,
the S3 lake, the PostgreSQL inference log and the MLflow server; the service pods, evaluated by the serving
runtime's settings, use the same inference log and MLflow server; every secret comes from a Kubernetes
Secret the README documents, and no pod keeps the inference log on its own disk."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from ops_support import K8S, OVERLAYS, by_kind, kustomize_build, one

from platform_assets import settings
from platform_assets.core.environment import Environment
from platform_assets.deploy.image import RUN_OPTIONS

Obj = dict[str, Any]
#: Variables either settings object reads besides its prefix: cleared so the host's values cannot leak in.
ALIASES = ("MLFLOW_TRACKING_URI", "CREDIT_RISK_INFERENCE_DB", "SPARK_MASTER", "PGPASSWORD")


@cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    return tuple(kustomize_build(K8S / "overlays" / overlay))


def documented_secret_keys() -> dict[str, set[str]]:
    """Secret name -> the keys k8s/README.md's Secret table lists for it."""
    table = re.findall(r"^\| `([a-z0-9-]+)` \| ([^|]+) \|", (K8S / "README.md").read_text(encoding="utf-8"), re.M)
    return {name: set(re.findall(r"`([^`]+)`", keys)) for name, keys in table}


def container_env(objects: tuple[Obj, ...], container: Obj) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(plain values, secret-sourced variables as (Secret, key)) a container gets, as Kubernetes resolves them."""
    config_maps = by_kind(list(objects), "ConfigMap")
    secret_keys = documented_secret_keys()
    values: dict[str, str] = {}
    secrets: dict[str, tuple[str, str]] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(config_maps[source["configMapRef"]["name"]]["data"])
        else:
            name = source["secretRef"]["name"]
            secrets.update({key: (name, key) for key in secret_keys[name]})
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {})
        if "value" in entry:
            values[entry["name"]] = entry["value"]
        elif "configMapKeyRef" in ref:
            values[entry["name"]] = config_maps[ref["configMapKeyRef"]["name"]]["data"][ref["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in ref:
            secrets[entry["name"]] = (ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
    return values, secrets


def code_location(objects: tuple[Obj, ...]) -> tuple[Obj, Obj]:
    template = one(list(objects), "Deployment", "dagster-code-location")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    return template, container


def service(objects: tuple[Obj, ...]) -> tuple[Obj, Obj]:
    template = one(list(objects), "Rollout", "credit-risk-service")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    return template, container


@pytest.fixture(autouse=True)
def no_platform_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table is read without this process's settings: an earlier test may have exported some (MLflow's
    ``set_tracking_uri`` exports MLFLOW_TRACKING_URI), and any of them would override the table."""
    only_env(monkeypatch, {})


def only_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("PLATFORM_", "CREDIT_RISK_", "AWS_")) or name in ALIASES:
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def secret_file(template: Obj, container: Obj, path: str) -> tuple[str, str]:
    """(Secret, key) of the file at ``path`` in a container: a read-only mount of a secret volume."""
    volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        file = PurePosixPath(path)
        if file.parent == PurePosixPath(mount["mountPath"]) and "secret" in volumes[mount["name"]]:
            assert mount.get("readOnly") is True, mount
            return volumes[mount["name"]]["secret"]["secretName"], file.name
    raise AssertionError(f"{container['name']}: no secret volume mounted at {PurePosixPath(path).parent}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_code_location_runs_on_the_environments_table(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = rendered(overlay)
    _, container = code_location(objects)
    values, _ = container_env(objects, container)
    assert values["PLATFORM_ENV"] == overlay
    only_env(monkeypatch, values)
    config = settings.load()
    top = settings.topology(config)
    # Exactly the table's row: no variable in the rendered environment overrides any of it.
    assert top == settings.topology(settings.PlatformSettings(env=Environment(overlay), home=config.home))
    namespace = f"credit-risk-{overlay}"
    assert top.deploy_target == "kubernetes"
    assert (top.k8s_overlay, top.k8s_namespace) == (f"k8s/overlays/{overlay}", namespace)
    assert {obj["metadata"]["namespace"] for obj in objects} == {namespace}
    assert top.lake_uri == f"s3://credit-risk-lake/{overlay}"
    assert top.inference_db.startswith("postgresql+psycopg2://credit_risk@postgres.")
    assert top.inference_db_password_env == settings.INFERENCE_DB_PASSWORD
    assert top.mlflow_tracking_uri == f"http://mlflow.{namespace}.svc.cluster.local:5000"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_code_location_and_run_pods_have_every_secret(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets the table requires (settings.missing_secrets) come from the documented Secrets, in the code
    server and, through the run launcher's config, in every run pod."""
    objects = rendered(overlay)
    template, container = code_location(objects)
    values, secrets = container_env(objects, container)
    only_env(monkeypatch, values | {name: "from-a-secret" for name in secrets})
    assert settings.missing_secrets(settings.load()) == []
    assert secrets[settings.INFERENCE_DB_PASSWORD] == ("credit-risk-inference-db", settings.INFERENCE_DB_PASSWORD)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secrets)
    signing = secret_file(template, container, values["PLATFORM_SIGNING_KEY_FILE"])
    verify = secret_file(template, container, values["PLATFORM_VERIFY_KEY_FILE"])
    assert signing == ("credit-risk-signing-key", "signing_key.pem")
    assert verify == ("credit-risk-verify-key", "verify_key.pem")
    # Run pods: same ConfigMap and Secrets as environment, same key files mounted.
    instance = yaml.safe_load(one(list(objects), "ConfigMap", "dagster-instance")["data"]["dagster.yaml"])
    launcher = instance["run_launcher"]["config"]
    assert {ref["configMapRef"]["name"] for ref in container["envFrom"] if "configMapRef" in ref} == set(
        launcher["env_config_maps"]
    )
    assert {ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref} == set(
        launcher["env_secrets"]
    )
    run_volumes = {volume["name"]: volume["secret"] for volume in launcher["volumes"]}
    for path, (secret, key) in (
        (values["PLATFORM_SIGNING_KEY_FILE"], signing),
        (values["PLATFORM_VERIFY_KEY_FILE"], verify),
    ):
        (mount,) = [
            m for m in launcher["volume_mounts"] if PurePosixPath(path).parent == PurePosixPath(m["mount_path"])
        ]
        assert run_volumes[mount["name"]]["secret_name"] == secret and key in documented_secret_keys()[secret]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_uses_the_shared_inference_log_and_mlflow(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from platform_assets.deploy.tls import create
    from platform_assets.serving.settings import ServingSettings

    objects = rendered(overlay)
    top = settings.topology(settings.PlatformSettings(env=Environment(overlay)))
    template, container = service(objects)
    values, secrets = container_env(objects, container)
    # The settings check the TLS directory's files: stand in what cert-manager's Secret mounts there.
    service_tls, _ = create(tmp_path / "tls")
    only_env(monkeypatch, values | {"CREDIT_RISK_TLS_DIR": str(service_tls)})
    served = ServingSettings.from_environment()
    assert served.platform_env is Environment(overlay)
    assert served.inference_db == top.inference_db, "the service must write the log the pipeline reads"
    assert served.tracking_uri == top.mlflow_tracking_uri
    # The URL has no password: libpq takes it from PGPASSWORD, out of the same Secret the pipeline reads.
    assert secrets["PGPASSWORD"] == ("credit-risk-inference-db", settings.INFERENCE_DB_PASSWORD)
    # The verify key is a Secret file, so staging and prod serve only verified models.
    assert secret_file(template, container, str(served.verify_key_file)) == ("credit-risk-verify-key", "verify_key.pem")
    # No pod-local store: the pods' one emptyDir is the memory-backed /tmp their read-only root filesystem needs
    # for scratch files (tests/prod/test_prod_image.py runs the image so), no SQLite anywhere in the overlay.
    scratch = [volume for volume in template["spec"].get("volumes", []) if "emptyDir" in volume]
    assert [(volume["name"], volume["emptyDir"].get("medium")) for volume in scratch] == [("tmp", "Memory")]
    assert [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "tmp"] == ["/tmp"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The pod gives the service what the image test gives its container (``RUN_OPTIONS``): no more room at /tmp.
    assert "--read-only" in RUN_OPTIONS
    (tmpfs,) = [option.removeprefix("--tmpfs=") for option in RUN_OPTIONS if option.startswith("--tmpfs=")]
    mount_point, mount_options = tmpfs.split(":", 1)
    (size,) = [option.removeprefix("size=") for option in mount_options.split(",") if option.startswith("size=")]
    assert (mount_point, f"{size.removesuffix('m')}Mi") == ("/tmp", scratch[0]["emptyDir"]["sizeLimit"])
    for config_map in by_kind(list(objects), "ConfigMap").values():
        assert "sqlite" not in yaml.safe_dump(config_map["data"]), config_map["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dagster_storage_is_the_environments_postgres(overlay: str) -> None:
    objects = rendered(overlay)
    instance = yaml.safe_load(one(list(objects), "ConfigMap", "dagster-instance")["data"]["dagster.yaml"])
    assert set(instance["storage"]) == {"postgres"}
    env = one(list(objects), "ConfigMap", "credit-risk-pipeline-env")["data"]
    top = settings.topology(settings.PlatformSettings(env=Environment(overlay)))
    # `postgres` in the namespace is the inference log's server (postgres.<namespace>.svc.cluster.local).
    assert top.inference_db.split("@", 1)[1].startswith(f"{env['DAGSTER_PG_HOST']}.credit-risk-{overlay}.svc.")
    job = one(list(objects), "Job", "dagster-instance-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["dagster", "instance", "migrate"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert f"{env['DAGSTER_HOME']}/dagster.yaml" in mounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_image_has_the_inference_logs_driver(overlay: str) -> None:
    """The Bento (the service image) installs the DBAPI driver of the URL the overlay gives the service."""
    from sqlalchemy.engine import make_url

    bentofile = yaml.safe_load((K8S.parent / "bentos" / "credit_risk" / "bentofile.yaml").read_text(encoding="utf-8"))
    packages = {re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0].lower() for spec in bentofile["python"]["packages"]}
    _, container = service(rendered(overlay))
    values, _ = container_env(rendered(overlay), container)
    driver = make_url(values["CREDIT_RISK_INFERENCE_DB"]).get_dialect().driver
    assert driver == "psycopg2"
    assert {"psycopg2", "psycopg2-binary"} & packages, f"bentofile.yaml installs no {driver}"


def _ports(rule: Obj) -> set[tuple[str, int | str]]:
    return {(port["protocol"], port["port"]) for port in rule.get("ports", [])}


def _peer(rule: Obj) -> str:
    """An egress rule's one destination: its pods' name label (or k8s-app), or its CIDR."""
    (peer,) = rule["to"]
    if "ipBlock" in peer:
        return str(peer["ipBlock"]["cidr"])
    labels = peer["podSelector"]["matchLabels"]
    return str(labels.get("app.kubernetes.io/name") or labels["k8s-app"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_lets_the_service_reach_only_its_servers(overlay: str) -> None:
    """In: the gateway and Prometheus, on the port Prometheus scrapes. Out: DNS, and the ports of the table's
    MLflow server and inference log, and HTTPS (S3); nothing else."""
    from sqlalchemy.engine import make_url

    objects = rendered(overlay)
    template, container = service(objects)
    (policy,) = by_kind(list(objects), "NetworkPolicy").values()
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    # Ingress: exactly the gateway namespace and Prometheus' pods, on the container's (scraped) port.
    (ingress,) = spec["ingress"]
    port_name = next(
        p["name"]
        for p in container["ports"]
        if str(p["containerPort"]) == template["metadata"]["annotations"]["prometheus.io/port"]
    )
    assert _ports(ingress) == {("TCP", port_name)}
    sources = [
        (peer.get("namespaceSelector", {}).get("matchLabels"), peer.get("podSelector")) for peer in ingress["from"]
    ]
    assert sources == [
        ({"kubernetes.io/metadata.name": "ingress-nginx"}, None),
        ({"kubernetes.io/metadata.name": "monitoring"}, {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}),
    ]
    # Egress: one rule per server, each on the port the table's URL names.
    top = settings.topology(settings.PlatformSettings(env=Environment(overlay)))
    mlflow_port = int(top.mlflow_tracking_uri.rsplit(":", 1)[1])
    db_port = make_url(top.inference_db).port
    by_target = {_peer(rule): _ports(rule) for rule in spec["egress"]}
    assert by_target == {
        "kube-dns": {("UDP", 53), ("TCP", 53)},
        "mlflow": {("TCP", mlflow_port)},
        "postgres": {("TCP", db_port)},
        "0.0.0.0/0": {("TCP", 443)},
    }
    # The servers' hosts are the `mlflow` and `postgres` Services of the policy's own namespace.
    namespace = policy["metadata"]["namespace"]
    assert top.mlflow_tracking_uri.startswith(f"http://mlflow.{namespace}.svc.")
    assert make_url(top.inference_db).host == f"postgres.{namespace}.svc.cluster.local"
