"""A ``bentoml serve`` process managed in the background, with a pid file and health checks.

The process outlives the Dagster run that started it. A new Bento replaces the running one only
after the new one answers ``/readyz``; if it does not, the previous Bento is started again and the
deployment fails with the new process' log tail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx


class DeploymentFailed(RuntimeError):
    """The new service did not become healthy; the message says what is serving now."""


@dataclass(frozen=True)
class ServiceState:
    pid: int
    bento: str
    host: str
    port: int
    started_at: str
    log_file: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists" for kill(0): check /proc where there is one.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class LocalServiceManager:
    """Starts, checks and stops the service on ``host:port``; state lives in ``state_dir``."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int = 3001, python: str = sys.executable):
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.python = python
        self.state_file = state_dir / "service.json"
        self.pid_file = state_dir / "service.pid"

    def current(self) -> ServiceState | None:
        """The managed service if its process is alive, else ``None`` (stale state is removed)."""
        if not self.state_file.exists():
            return None
        state = ServiceState(**json.loads(self.state_file.read_text()))
        if _alive(state.pid):
            return state
        self._forget()
        return None

    def _remember(self, state: ServiceState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for path, text in ((self.state_file, json.dumps(asdict(state), indent=2)), (self.pid_file, str(state.pid))):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    def _forget(self) -> None:
        self.state_file.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)

    def start(self, bento: str, env: dict[str, str], cwd: Path | None = None) -> ServiceState:
        if _port_open(self.host, self.port):
            raise DeploymentFailed(
                f"port {self.host}:{self.port} is taken by a process this platform does not manage: stop it or "
                "configure another port (PLATFORM_SERVICE_PORT)"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.state_dir / f"service-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
        command = [self.python, "-m", "bentoml", "serve", bento, "--host", self.host, "--port", str(self.port)]
        with open(log_file, "ab") as log:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: survives the run, stopped as a group
            )
        state = ServiceState(
            pid=process.pid,
            bento=bento,
            host=self.host,
            port=self.port,
            started_at=datetime.now(UTC).isoformat(),
            log_file=str(log_file),
        )
        self._remember(state)
        return state

    def wait_ready(self, state: ServiceState, timeout: float) -> None:
        """Return once ``/readyz`` answers 200; ``DeploymentFailed`` if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(state.pid):
                raise DeploymentFailed(f"service {state.bento} exited during start-up:\n{self._tail(state)}")
            try:
                if httpx.get(f"{state.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise DeploymentFailed(f"service {state.bento} was not ready within {timeout:.0f} s:\n{self._tail(state)}")

    def stop(self, state: ServiceState, timeout: float = 30) -> None:
        """SIGTERM the process group (the service flushes its logs), SIGKILL after ``timeout``."""
        try:
            os.killpg(state.pid, signal.SIGTERM)
        except ProcessLookupError:
            self._forget()
            return
        deadline = time.monotonic() + timeout
        while _alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(state.pid):
            os.killpg(state.pid, signal.SIGKILL)
        try:  # reap it when it is our child
            os.waitpid(state.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        self._forget()

    def deploy(
        self, bento: str, env: dict[str, str], timeout: float, cwd: Path | None = None
    ) -> tuple[ServiceState, bool]:
        """Serve ``bento``; returns ``(state, restarted)``. An already-serving ``bento`` is left running."""
        previous = self.current()
        if previous is not None and previous.bento == bento:
            return previous, False
        if previous is not None:
            self.stop(previous)
        new = self.start(bento, env, cwd)
        try:
            self.wait_ready(new, timeout)
        except DeploymentFailed as failure:
            self.stop(new)
            if previous is None:
                raise
            restored = self.start(previous.bento, env, cwd)
            self.wait_ready(restored, timeout)
            raise DeploymentFailed(f"{failure}\nthe previous Bento {previous.bento} is serving again") from failure
        return new, True

    @staticmethod
    def _tail(state: ServiceState, lines: int = 30) -> str:
        path = Path(state.log_file)
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    """``python -m platform_assets.deploy.local status|stop``: the service ``credit_risk_deployment`` started."""
    import argparse

    from platform_assets import settings

    parser = argparse.ArgumentParser(prog="python -m platform_assets.deploy.local", description=main.__doc__)
    parser.add_argument("command", choices=["status", "stop"])
    args = parser.parse_args(argv)
    manager = LocalServiceManager(settings.platform_home() / "serving")
    state = manager.current()
    if state is None:
        print("no managed credit-risk service is running")
        return 0 if args.command == "stop" else 1
    if args.command == "stop":
        manager.stop(state)
        print(f"stopped {state.bento} (pid {state.pid})")
    else:
        print(json.dumps(asdict(state), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
