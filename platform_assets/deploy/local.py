"""A ``bentoml serve`` managed in the background under ``deploy.supervisor``, with health checks.

The service outlives the Dagster run that started it. The supervisor restarts ``bentoml serve`` when
it dies and kills its orphaned workers; every process of the service carries a marker, so status,
stop and the next deployment see all of them, whoever their parent is. A new Bento replaces the
running one only after the new one answers ``/readyz``; if it does not, the previous Bento is started
again and the deployment fails with the new process' log tail. ``desired.json`` remembers what should
be serving until ``retire``, so a dead service can be restored (``service_health_sensor``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil

from platform_assets.core.service_tls import TLSFiles, scheme, verify
from platform_assets.deploy.supervisor import kill_marked, marked


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
    #: The marker every process of this start carries (``deploy.supervisor.MARKER_VARIABLE``).
    marker: str = ""
    #: The supervisor's JSON status: server pid, restarts, exits.
    status_file: str = ""
    #: ``https`` when the service requires client certificates (``core.service_tls``).
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


#: ``serving``: supervisor and service alive; ``unsupervised``: the supervisor died and the service is
#: left; ``down``: nothing runs although a Bento is deployed; ``retired``: nothing is deployed.
Health = Literal["serving", "unsupervised", "down", "retired"]


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

    def __init__(
        self,
        state_dir: Path,
        host: str = "127.0.0.1",
        port: int = 3001,
        python: str = sys.executable,
        tls: TLSFiles | None = None,
    ):
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.python = python
        #: The manager's own client certificate, when the service requires one.
        self.tls = tls
        self.state_file = state_dir / "service.json"
        self.pid_file = state_dir / "service.pid"
        self.desired_file = state_dir / "desired.json"
        #: Marker prefix of every process this manager starts (its state dir names it).
        self.marker_prefix = f"{state_dir.resolve()}|"

    def _recorded(self) -> ServiceState | None:
        if not self.state_file.exists():
            return None
        return ServiceState(**json.loads(self.state_file.read_text()))

    def current(self) -> ServiceState | None:
        """The managed service if its supervisor is alive, else ``None``.

        State whose processes are all gone is removed; a service left without its supervisor is not
        current (``health`` says ``unsupervised``; ``start`` and ``stop`` clear it)."""
        state = self._recorded()
        if state is None:
            return None
        if _alive(state.pid):
            return state
        if not self.processes(state):
            self._forget()
        return None

    def processes(self, state: ServiceState | None = None) -> list[psutil.Process]:
        """Every live process of ``state``'s start (of any start of this manager's when ``None``)."""
        prefix = state.marker if state is not None and state.marker else self.marker_prefix
        return list(marked(prefix))

    def health(self) -> Health:
        state = self._recorded()
        if state is not None and _alive(state.pid):
            return "serving"
        if self.processes():
            return "unsupervised"
        return "down" if self.desired_file.exists() else "retired"

    def supervisor_status(self, state: ServiceState) -> dict[str, Any]:
        """The supervisor's own record (server pid, restarts, exits), ``{}`` before it wrote one."""
        path = Path(state.status_file)
        return json.loads(path.read_text()) if state.status_file and path.exists() else {}

    def _remember(self, state: ServiceState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for path, text in ((self.state_file, json.dumps(asdict(state), indent=2)), (self.pid_file, str(state.pid))):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    def _desire(self, bento: str) -> None:
        tmp = self.desired_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"bento": bento, "since": datetime.now(UTC).isoformat()}))
        os.replace(tmp, self.desired_file)

    def _forget(self) -> None:
        self.state_file.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)

    def start(self, bento: str, env: dict[str, str], cwd: Path | None = None) -> ServiceState:
        leftovers = kill_marked(self.marker_prefix)  # a start of ours whose supervisor died (never another's)
        deadline = time.monotonic() + (10 if leftovers else 0)
        while _port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _port_open(self.host, self.port):
            raise DeploymentFailed(
                f"port {self.host}:{self.port} is taken by a process this platform does not manage: stop it or "
                "configure another port (PLATFORM_SERVICE_PORT)"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.state_dir / f"service-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
        marker = f"{self.marker_prefix}{uuid.uuid4().hex}"
        status_file = self.state_dir / "supervisor.json"
        status_file.unlink(missing_ok=True)
        serve = [self.python, "-m", "bentoml", "serve", bento, "--host", self.host, "--port", str(self.port)]
        command = [
            self.python, "-m", "platform_assets.deploy.supervisor", "--marker", marker, "--host", self.host,
            "--port", str(self.port), "--status-file", str(status_file), "--", *serve,
        ]  # fmt: skip
        with open(log_file, "ab") as log:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: survives the run and its signals
            )
        state = ServiceState(
            pid=process.pid,
            bento=bento,
            host=self.host,
            port=self.port,
            started_at=datetime.now(UTC).isoformat(),
            log_file=str(log_file),
            marker=marker,
            status_file=str(status_file),
            scheme=scheme(self.tls),
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
                if httpx.get(f"{state.url}/readyz", timeout=2, verify=verify(self.tls)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise DeploymentFailed(f"service {state.bento} was not ready within {timeout:.0f} s:\n{self._tail(state)}")

    def stop(self, state: ServiceState | None, timeout: float = 30) -> None:
        """Stop ``state``'s start and anything else this manager started: SIGTERM the supervisor (the
        service drains and flushes its logs), or the service itself when its supervisor is gone;
        SIGKILL whatever is left after ``timeout``."""
        if state is not None and _alive(state.pid):
            os.kill(state.pid, signal.SIGTERM)
        else:  # no supervisor: the arbiter, if it is left, drains its workers; orphaned workers are killed
            for process in self.processes():
                try:
                    if process.cmdline()[1:4] == ["-m", "bentoml", "serve"]:
                        process.terminate()
                except psutil.NoSuchProcess:
                    pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and ((state is not None and _alive(state.pid)) or self.processes()):
            time.sleep(0.2)
        kill_marked(self.marker_prefix)
        if state is not None:
            try:  # reap it when it is our child
                os.waitpid(state.pid, os.WNOHANG)
            except ChildProcessError:
                pass
        self._forget()

    def retire(self) -> None:
        """Stop everything and forget what was deployed (``make service-stop``)."""
        self.stop(self._recorded())
        self.desired_file.unlink(missing_ok=True)

    def restore(self, env: dict[str, str], timeout: float, cwd: Path | None = None) -> ServiceState | None:
        """Serve the deployed Bento again if it is down or unsupervised; ``None`` when nothing is to do."""
        if self.health() not in ("down", "unsupervised"):
            return None
        bento = json.loads(self.desired_file.read_text())["bento"]
        self.stop(self._recorded())
        state = self.start(bento, env, cwd)
        self.wait_ready(state, timeout)
        return state

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
            self._desire(bento)
        except DeploymentFailed as failure:
            self.stop(new)
            if previous is None:
                raise
            restored = self.start(previous.bento, env, cwd)
            self.wait_ready(restored, timeout)
            self._desire(previous.bento)
            raise DeploymentFailed(f"{failure}\nthe previous Bento {previous.bento} is serving again") from failure
        return new, True

    @staticmethod
    def _tail(state: ServiceState, lines: int = 30) -> str:
        path = Path(state.log_file)
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    """``python -m platform_assets.deploy.local status|stop``: the service ``credit_risk_deployment`` started.

    ``status`` exits 0 only when the service runs under its supervisor; ``stop`` stops every process
    the platform started for this home, supervised or not, and forgets the deployment."""
    import argparse

    from platform_assets import settings

    parser = argparse.ArgumentParser(prog="python -m platform_assets.deploy.local", description=main.__doc__)
    parser.add_argument("command", choices=["status", "stop"])
    args = parser.parse_args(argv)
    manager = LocalServiceManager(settings.platform_home() / "serving")
    health, state, processes = manager.health(), manager._recorded(), manager.processes()
    if args.command == "stop":
        manager.retire()
        print(
            f"stopped {len(processes)} process(es) of the credit-risk service"
            if processes
            else "no managed credit-risk service is running"
        )
        return 0
    report: dict[str, Any] = {"health": health, "pids": sorted(process.pid for process in processes)}
    if state is not None:
        report |= {"service": asdict(state), "supervisor": manager.supervisor_status(state)}
    print(json.dumps(report, indent=2))
    return 0 if health == "serving" else 1


if __name__ == "__main__":
    raise SystemExit(main())
