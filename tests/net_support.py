"""Loopback helpers shared by the tests that start real servers: free ports, server processes that are
waited for and always stopped, and polling of the credit-risk service's ``/admin/status``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
#: The Dagster executables of the interpreter running the tests.
DAGSTER_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a server's log file (empty when the file is missing)."""
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the process group ``process`` leads (started with ``start_new_session``), SIGKILL it after
    ``grace`` seconds; a group that is already gone is fine."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def running_server(
    command: Sequence[str],
    *,
    name: str,
    url: str,
    ready: Callable[[str], bool],
    ready_means: str,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path = REPO,
    timeout: float = 120.0,
    poll_interval: float = 1.0,
) -> Iterator[str]:
    """Run ``command`` in its own process group with stdout and stderr in ``log_path``, wait until
    ``ready(url)`` is true, and yield ``url``; the whole group is stopped on exit, however the block ends.

    The test fails, with the tail of the server's log, when the process exits before it is ready or is not
    ready within ``timeout`` seconds (``ready_means`` says what was awaited, for that message).
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited early with code {process.returncode}; {log_path}:\n{log_tail(log_path)}")
            if ready(url):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not {ready_means} within {timeout:g} s; {log_path}:\n{log_tail(log_path)}")
            time.sleep(poll_interval)
        yield url
    finally:
        stop_process_group(process)


def answers_server_info(url: str) -> bool:
    """Whether a Dagster webserver at ``url`` answers ``/server_info`` (its code locations may still load)."""
    try:
        return httpx.get(f"{url}/server_info", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def serves_asset_nodes(url: str) -> bool:
    """Whether a Dagster webserver at ``url`` lists asset nodes over GraphQL: its code location has loaded."""
    query = "{ assetNodes { assetKey { path } } }"
    try:
        return bool(httpx.post(f"{url}/graphql", json={"query": query}, timeout=10).json()["data"]["assetNodes"])
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return False


@contextmanager
def dagster_webserver(
    env: Mapping[str, str],
    log_path: Path,
    *,
    dev: bool = False,
    until_assets_load: bool = False,
    timeout: float = 120.0,
    port: int | None = None,
) -> Iterator[str]:
    """A Dagster webserver on ``workspace.yaml`` at the repository root, on loopback ``port`` (a free one when
    ``None``); yields its URL.

    ``dev`` runs ``dagster dev`` (webserver and daemon) rather than ``dagster-webserver``. The server is ready
    when it answers ``/server_info``, or with ``until_assets_load`` when its code location lists asset nodes.
    Output goes to ``log_path``; the test fails with the log's tail when the server exits or is not ready
    within ``timeout`` seconds, and the server's process group is stopped on exit.
    """
    port = free_port() if port is None else port
    program = [str(DAGSTER_BIN / "dagster"), "dev"] if dev else [str(DAGSTER_BIN / "dagster-webserver")]
    with running_server(
        [*program, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        name="dagster dev" if dev else "dagster-webserver",
        url=f"http://127.0.0.1:{port}",
        ready=serves_asset_nodes if until_assets_load else answers_server_info,
        ready_means="serve the code location" if until_assets_load else "answer on /server_info",
        log_path=log_path,
        env=env,
        timeout=timeout,
    ) as url:
        yield url


class StatusSource(Protocol):
    """A client of the credit-risk service's ``/admin/status`` (``serving_support.Api``)."""

    def status(self, refresh: bool = True) -> dict[str, Any]: ...


def wait_for_status(
    api: StatusSource,
    predicate: Callable[[dict[str, Any]], Any],
    timeout: float = 30.0,
    poll_interval: float = 0.2,
) -> dict[str, Any]:
    """Poll ``/admin/status`` (without forcing a registry refresh) until ``predicate`` holds, and return that
    status; raise ``AssertionError`` with the last status after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = api.status(refresh=False)
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; status: {status}")
        time.sleep(poll_interval)
