"""Mutual TLS on a real service: a client without a certificate, or with one from another CA, is refused
during the handshake; the platform's own clients (the deployer's readiness and status checks, the live
monitoring's /metrics read, the replay tool) present theirs and are served."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from net_support import free_port
from serving_support import BENTO_DIR, Stores

from platform_assets.core.service_tls import TLSFiles
from platform_assets.deploy import tls
from platform_assets.deploy.local import LocalServiceManager, ServiceState
from platform_assets.resources.monitoring import LiveMonitoring

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("tls")
    service, client = tls.create(base / "ours")
    _, stranger = tls.create(base / "another_ca", client="stranger")
    return service, client, stranger


@pytest.fixture(scope="module")
def service(
    certificates: tuple[Path, Path, Path], stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalServiceManager, ServiceState]]:
    service_dir, client_dir, _ = certificates
    state_dir = tmp_path_factory.mktemp("tls_state")
    manager = LocalServiceManager(state_dir, port=free_port(), tls=TLSFiles(client_dir))
    # A BentoML home of its own: a start empties its home's Prometheus folder (the session server's).
    env = stores.env(CREDIT_RISK_TLS_DIR=str(service_dir), CREDIT_RISK_WORKERS="1", BENTOML_HOME=str(state_dir / "bm"))
    state, _ = manager.deploy("service:CreditRiskService", env, 180, cwd=BENTO_DIR)  # its readiness check is mTLS
    yield manager, state
    manager.retire()


def body(stores: Stores) -> dict[str, object]:
    return {"applications": stores.raw.head(2).to_dict(orient="records")}


def test_only_clients_with_our_certificate_are_served(
    service: tuple[LocalServiceManager, ServiceState], certificates: tuple[Path, Path, Path], stores: Stores
) -> None:
    _, state = service
    service_dir, client_dir, stranger_dir = certificates
    assert state.url.startswith("https://")
    headers = {"Authorization": f"Bearer {stores.keys['predict']}"}
    ours = TLSFiles(client_dir).client_context
    response = httpx.post(f"{state.url}/predict", json=body(stores), headers=headers, verify=ours)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2

    no_certificate = ssl.create_default_context(cafile=str(TLSFiles(service_dir).ca))
    with pytest.raises(httpx.HTTPError):  # handshake refused (or the connection reset right after it)
        httpx.post(f"{state.url}/predict", json=body(stores), headers=headers, verify=no_certificate)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{state.url}/readyz", verify=no_certificate)

    another_ca = ssl.create_default_context(cafile=str(TLSFiles(service_dir).ca))
    another_ca.load_cert_chain(str(TLSFiles(stranger_dir).cert), str(TLSFiles(stranger_dir).key))
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{state.url}/predict", json=body(stores), headers=headers, verify=another_ca)

    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
        httpx.post(state.url.replace("https://", "http://") + "/predict", json=body(stores), headers=headers)


def test_the_platforms_clients_use_their_certificate(
    service: tuple[LocalServiceManager, ServiceState], certificates: tuple[Path, Path, Path], stores: Stores
) -> None:
    _, state = service
    _, client_dir, _ = certificates
    monitoring = LiveMonitoring(service_url=state.url, tls_client_dir=str(client_dir))
    served = monitoring.served({"champion": "v1"})
    assert served is not None and "champion" in served

    key_file = stores.home / "replay.key"
    key_file.write_text(stores.keys["predict"])
    replay = [sys.executable, "-m", "platform_assets.replay", "--url", state.url, "--api-key-file", str(key_file)]
    options = ["--rows", "20", "--rate", "200", "--batch", "10", "--feedback-delay", "0"]
    done = subprocess.run(
        [*replay, *options, "--tls-dir", str(client_dir)], capture_output=True, text=True, timeout=120, env=stores.env()
    )
    stats = json.loads(done.stdout[done.stdout.index("{") :])
    assert stats["predict_failures"] == 0 and stats["sent"] == 20, done.stdout + done.stderr


def test_a_missing_certificate_file_is_named(tmp_path: Path) -> None:
    code = "from platform_assets.serving.settings import ServerSettings as S; S.from_environment()"
    env = {**os.environ, "CREDIT_RISK_TLS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "CREDIT_RISK_TLS_DIR" in done.stderr and "ca.crt" in done.stderr
