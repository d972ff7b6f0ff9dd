"""The Dagster UI behind the authenticating gateway (nginx + two webservers), in a real browser and over
GraphQL: no credentials -> 401; a viewer sees the assets and their lineage but cannot launch; an operator
launches a run."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_support import ARTIFACTS, ui_page
from net_support import free_port

from platform_assets.deploy.ui_gateway import GatewayError, UiUsers, render_nginx, serve

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VIEWER, OPERATOR = ("vera", "viewer-pw-1"), ("otto", "operator-pw-2")
LAUNCH = """
mutation($selector: JobOrPipelineSelector!) {
  launchRun(executionParams: {selector: $selector, runConfigData: {}}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
ASSETS = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
PERMISSIONS = "{ permissions { permission value } }"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is missing: make test installs Debian's nginx-light (make system-packages)")
    home = tmp_path_factory.mktemp("gateway_home")
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "MLFLOW_"))},
        "PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
    }
    users = UiUsers(home / "ui" / "ui_users.json")
    users.add(VIEWER[0], "viewer", VIEWER[1])
    users.add(OPERATOR[0], "operator", OPERATOR[1])
    with serve(users.path, home / "ui", REPO / "workspace.yaml", port=free_port(), env=env, with_daemon=False) as url:
        yield url


def graphql(url: str, query: str, who: tuple[str, str], variables: dict[str, object] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, auth=who, timeout=60)


def asset_nodes(url: str, who: tuple[str, str]) -> dict[str, set[str]]:
    deadline = time.monotonic() + 120
    while True:  # the code location loads in the background after the server answers
        nodes = graphql(url, ASSETS, who).json().get("data", {}).get("assetNodes") or []
        if nodes or time.monotonic() > deadline:
            return {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
        time.sleep(2)


def launch(url: str, who: tuple[str, str]) -> dict[str, object]:
    selector = {"repositoryLocationName": "platform_assets", "repositoryName": "__repository__",
                "jobName": "live_performance_job"}  # fmt: skip
    result: dict[str, object] = graphql(url, LAUNCH, who, {"selector": selector}).json()["data"]["launchRun"]
    return result


def test_no_or_wrong_credentials_get_401(gateway: str) -> None:
    assert httpx.get(gateway).status_code == 401
    assert httpx.post(f"{gateway}/graphql", json={"query": ASSETS}).status_code == 401
    assert httpx.get(gateway, auth=(VIEWER[0], "wrong")).status_code == 401
    assert httpx.get(gateway, auth=("mallory", VIEWER[1])).status_code == 401


def test_a_viewer_sees_lineage_but_cannot_launch(gateway: str) -> None:
    lineage = asset_nodes(gateway, VIEWER)
    assert lineage["default_risk_model"] == {"credit_history_tensors"}
    permissions = {
        p["permission"]: p["value"] for p in graphql(gateway, PERMISSIONS, VIEWER).json()["data"]["permissions"]
    }
    assert permissions["launch_pipeline_execution"] is False
    assert launch(gateway, VIEWER)["__typename"] == "UnauthorizedError"


def test_an_operator_launches(gateway: str) -> None:
    asset_nodes(gateway, OPERATOR)
    permissions = {
        p["permission"]: p["value"] for p in graphql(gateway, PERMISSIONS, OPERATOR).json()["data"]["permissions"]
    }
    assert permissions["launch_pipeline_execution"] is True
    result = launch(gateway, OPERATOR)
    assert result["__typename"] == "LaunchRunSuccess", result


def test_in_the_browser(gateway: str) -> None:
    from playwright.sync_api import Error, expect

    with ui_page() as page, pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
        page.goto(f"{gateway}/assets")  # headless Chromium cannot answer the 401's login prompt
    for who, can_launch in ((OPERATOR, True), (VIEWER, False)):
        with ui_page(who) as page:
            page.goto(f"{gateway}/assets/default_risk_model")
            page.get_by_text("credit_history_tensors").first.wait_for()  # the lineage is shown to both
            button = page.get_by_role("button", name="Materialize").first
            if can_launch:
                expect(button).to_be_enabled(timeout=60_000)
            else:  # the operator's page above shows how long the button takes to be enabled; give it as long
                page.wait_for_timeout(5_000)
                expect(button).to_be_disabled()
            page.screenshot(path=str(ARTIFACTS / f"gateway_{who[0]}_default_risk_model.png"))


def test_bad_users_are_refused(tmp_path: Path) -> None:
    users = UiUsers(tmp_path / "users.json")
    with pytest.raises(GatewayError, match="role 'admin'"):
        users.add("eve", "admin", "pw")  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="user name"):
        users.add('eve" operator; "x', "viewer", "pw")
    with pytest.raises(GatewayError, match="empty"):
        users.add("eve", "viewer", "")
    password = "eve's pass phrase"  # spaces and a quote: never inside a crypt hash's [./0-9A-Za-z$] alphabet
    users.add("eve", "viewer", password)
    assert users.path.stat().st_mode & 0o777 == 0o600 and password not in users.path.read_text()
    [stored] = users.load()
    salt = stored.password_hash.split("$")[2]
    again = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password, capture_output=True, text=True
    )
    assert stored.password_hash.startswith("$6$") and again.stdout.strip() == stored.password_hash  # it verifies
    config = render_nginx(users.load(), "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", tmp_path)
    assert "default viewer;" in config and '"eve" operator' not in config
