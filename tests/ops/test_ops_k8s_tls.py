"""Mutual TLS in k8s/ (issue 14): cert-manager issues the platform's CA and a Certificate per party; the service
pods serve with theirs (CREDIT_RISK_TLS_DIR, a mounted Secret) and probe themselves over HTTPS with it; the
Dagster code location and run pods present theirs (PLATFORM_SERVICE_TLS_DIR/client); Prometheus scrapes with
its own. The probe command is run, as the kubelet would, against a real HTTPS server that requires client
certificates."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from ops_support import K8S, OVERLAYS, PROMETHEUS_DIR, by_kind, env_value, kustomize_build, load_yaml, one

from platform_assets.core.service_tls import CA_FILE, CERT_FILE, KEY_FILE, TLSFiles

Obj = dict[str, Any]
TLS_FILES = {CA_FILE, CERT_FILE, KEY_FILE}
SERVICES = ("credit-risk-service", "credit-risk-service-stable", "credit-risk-service-canary")
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


@cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    return tuple(kustomize_build(K8S / "overlays" / overlay))


def certificates(objects: tuple[Obj, ...]) -> dict[str, Obj]:
    return {cert["spec"]["secretName"]: cert for cert in by_kind(list(objects), "Certificate").values()}


def secret_dir(template: Obj, container: Obj, directory: str) -> Obj:
    """The secret volume mounted read-only at ``directory`` in ``container``, whole (no subPath: renewals land)."""
    volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == PurePosixPath(directory)]
    assert mount.get("readOnly") is True and "subPath" not in mount, mount
    secret: Obj = volumes[mount["name"]]["secret"]
    return secret


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cert_manager_issues_every_partys_certificate_from_the_platform_ca(overlay: str) -> None:
    objects = rendered(overlay)
    namespace = f"credit-risk-{overlay}"
    issuers = by_kind(list(objects), "Issuer")
    assert issuers["credit-risk-selfsigned"]["spec"] == {"selfSigned": {}}
    ca = one(list(objects), "Certificate", "credit-risk-ca")["spec"]
    assert ca["isCA"] is True and ca["issuerRef"]["name"] == "credit-risk-selfsigned"
    assert issuers["credit-risk-ca"]["spec"] == {"ca": {"secretName": ca["secretName"]}}
    leaves = {name: cert["spec"] for name, cert in certificates(objects).items() if name != ca["secretName"]}
    assert set(leaves) == {
        "credit-risk-service-tls",
        "credit-risk-gateway-client-tls",
        "credit-risk-prometheus-client-tls",
        "credit-risk-platform-client-tls",
    }
    for name, spec in leaves.items():
        assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": "credit-risk-ca"}, name
        assert "client auth" in spec["usages"], name
        # A renewal gets a new key, and comes well before the old certificate expires.
        assert spec["privateKey"]["rotationPolicy"] == "Always", name
        assert _hours(spec["renewBefore"]) < _hours(spec["duration"]), name
    service = leaves["credit-risk-service-tls"]
    assert {"server auth", "client auth"} <= set(service["usages"])
    assert [name for name in leaves if "server auth" in leaves[name]["usages"]] == ["credit-risk-service-tls"]
    # Every name a client in or out of the namespace reaches the service by, with this overlay's namespace.
    expected = {f"{name}{suffix}" for name in SERVICES for suffix in ("", f".{namespace}.svc")}
    expected |= {f"{name}.{namespace}.svc.cluster.local" for name in SERVICES}
    assert set(service["dnsNames"]) == expected
    assert set(SERVICES) == set(by_kind(list(objects), "Service")) & set(SERVICES)


def _hours(duration: str) -> int:
    assert duration.endswith("h"), duration
    return int(duration[:-1])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_pods_serve_mutual_tls_from_their_secret_and_probe_over_https(overlay: str) -> None:
    objects = rendered(overlay)
    template = one(list(objects), "Rollout", "credit-risk-service")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    tls_dir = env_value(container, "CREDIT_RISK_TLS_DIR")["value"]
    secret = secret_dir(template, container, tls_dir)
    assert secret["secretName"] in certificates(objects)
    assert {item["path"] for item in secret["items"]} == TLS_FILES
    assert [port["name"] for port in container["ports"]] == ["https"]
    for service in (one(list(objects), "Service", name) for name in SERVICES):
        assert [(port["name"], port["targetPort"]) for port in service["spec"]["ports"]] == [("https", "https")]
    policy = one(list(objects), "NetworkPolicy", "credit-risk-service")
    assert [port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]] == ["https"]
    # No plain-HTTP probe left: each one execs the same HTTPS request with the pod's own certificate.
    commands = []
    for probe in PROBES:
        assert set(container[probe]) & {"httpGet", "tcpSocket", "grpc"} == set(), probe
        command = container[probe]["exec"]["command"]
        assert command[3] == tls_dir and command[4].startswith("https://127.0.0.1:3000/"), command
        commands.append(command)
    assert len({tuple(command[:4]) for command in commands}) == 1
    assert [command[4].rsplit("/", 1)[1] for command in commands] == ["livez", "livez", "readyz"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_code_location_and_run_pods_present_the_platforms_client_certificate(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from platform_assets import settings

    objects = rendered(overlay)
    env = one(list(objects), "ConfigMap", "credit-risk-pipeline-env")["data"]
    monkeypatch.setenv("PLATFORM_SERVICE_TLS_DIR", env["PLATFORM_SERVICE_TLS_DIR"])
    tls_dir = settings.load().service_tls_dir
    assert tls_dir is not None
    client_dir = str(tls_dir / "client")  # where the deployer and live monitoring read it (defs/resources.py)
    template = one(list(objects), "Deployment", "dagster-code-location")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    secret = secret_dir(template, container, client_dir)["secretName"]
    cert = certificates(objects)[secret]["spec"]
    assert cert["usages"] == ["digital signature", "client auth"]
    launcher = yaml.safe_load(one(list(objects), "ConfigMap", "dagster-instance")["data"]["dagster.yaml"])
    config = launcher["run_launcher"]["config"]
    (mount,) = [m for m in config["volume_mounts"] if m["mount_path"] == client_dir]
    assert mount["read_only"] is True
    (volume,) = [v for v in config["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secret_name"] == secret


def test_prometheus_scrapes_over_https_with_its_client_certificate() -> None:
    (job,) = load_yaml(PROMETHEUS_DIR / "kubernetes-scrape.yml")["scrape_configs"]
    assert job["scheme"] == "https"
    tls = job["tls_config"]
    directories = {str(PurePosixPath(tls[key]).parent) for key in ("ca_file", "cert_file", "key_file")}
    (directory,) = directories
    assert {PurePosixPath(tls[key]).name for key in ("ca_file", "cert_file", "key_file")} == TLS_FILES
    # Mounted from the Prometheus Certificate's Secret, under its name.
    assert PurePosixPath(directory).name == "credit-risk-prometheus-client-tls"
    assert PurePosixPath(directory).name in certificates(rendered("prod"))
    # Pod IPs are in no certificate: the server is verified under a name its certificate has.
    service = certificates(rendered("prod"))["credit-risk-service-tls"]["spec"]
    assert tls["server_name"] in service["dnsNames"]
    assert "insecure_skip_verify" not in tls


# --- the probe command, run against a real HTTPS server that requires client certificates --------------------


@pytest.fixture(scope="module")
def tls_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from platform_assets.deploy.tls import create

    ours, other = tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("other")
    service, client = create(ours)
    _, stranger = create(other)
    return {"service": service, "client": client, "stranger": stranger}


class _Health(http.server.BaseHTTPRequestHandler):
    """/livez answers 200, /readyz 503 (a live pod without a model): what BentoML's endpoints answer then."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/livez" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(tls_dirs: dict[str, Path]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    files = TLSFiles(tls_dirs["service"]).check()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    context.load_verify_locations(files.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _probe(probe: str, directory: Path, port: int) -> int:
    """Runs the rendered probe's command with this interpreter, the pod's TLS directory and port replaced."""
    template = one(list(rendered("prod")), "Rollout", "credit-risk-service")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    python, flag, script, _, url = container[probe]["exec"]["command"]
    assert (python, flag) == ("python", "-c")
    url = url.replace("127.0.0.1:3000", f"127.0.0.1:{port}")
    command = [sys.executable, flag, script, str(directory), url]
    return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode


def test_the_probe_passes_with_the_pods_certificate_and_fails_otherwise(
    tls_dirs: dict[str, Path], https_server: int
) -> None:
    # The pod's certificate has client auth (its Certificate's usages); so does the client one made here.
    own = tls_dirs["client"]
    assert _probe("livenessProbe", own, https_server) == 0
    assert _probe("startupProbe", own, https_server) == 0
    assert _probe("readinessProbe", own, https_server) != 0, "503 on /readyz must fail readiness"
    assert _probe("livenessProbe", tls_dirs["stranger"], https_server) != 0, "another CA must be refused"
