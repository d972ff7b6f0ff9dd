"""A Docker daemon to build and run the service image: the one already running, or one started here as root.

``docker_engine()`` yields a ``DockerEngine`` for the first daemon that answers, in this order: ``$DOCKER_HOST``
(when set it is the only choice), the daemon this module started earlier under the state directory, the
system's ``/var/run/docker.sock``; failing those, as root it starts Debian's ``dockerd`` with its data under the
state directory (images persist there between runs: the base image is built once per machine) and stops it
when the block ends. Without a daemon and without root it raises ``DockerUnavailable`` saying what to do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SYSTEM_SOCKET: Final = "unix:///var/run/docker.sock"
#: Seconds a started dockerd has to answer, and to stop after SIGTERM.
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 30.0


class DockerUnavailable(RuntimeError):
    """No Docker daemon answers and none can be started here; the message says why and what to do."""


class DockerCommandFailed(RuntimeError):
    """A ``docker`` command exited non-zero; the message has the command and the tail of its output."""


@dataclass(frozen=True)
class DockerEngine:
    """The ``docker`` CLI pointed at one daemon (``host``, a ``DOCKER_HOST`` URL)."""

    host: str
    binary: str = "docker"

    def env(self) -> dict[str, str]:
        """This process's environment with ``DOCKER_HOST`` set to the engine's daemon."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def command(self, *args: str) -> list[str]:
        return [self.binary, *args]

    def run(
        self, *args: str, timeout: float = 600.0, stdin: int | None = None, env: dict[str, str] | None = None
    ) -> str:
        """``docker <args>``'s stdout; ``DockerCommandFailed`` with the output's tail when it fails."""
        command = self.command(*args)
        result = subprocess.run(
            command,
            env={**self.env(), **(env or {})},
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise DockerCommandFailed(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result.stdout

    def answers(self) -> bool:
        """Whether the daemon answers ``docker version`` within 10 seconds."""
        try:
            self.run("version", "--format", "{{.Server.Version}}", timeout=10)
        except (DockerCommandFailed, subprocess.TimeoutExpired):
            return False
        return True

    def image_exists(self, tag: str) -> bool:
        try:
            self.run("image", "inspect", "--format", "{{.Id}}", tag, timeout=30)
        except DockerCommandFailed:
            return False
        return True

    def image_label(self, tag: str, label: str) -> str | None:
        """The value of ``label`` on image ``tag``; None when the image or the label is missing."""
        if not self.image_exists(tag):
            return None
        value = self.run("image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', tag).strip()
        return value if value and value != "<no value>" else None

    def image_size(self, tag: str) -> int:
        """Bytes of image ``tag`` (all its layers, uncompressed), as ``docker image inspect`` reports it."""
        return int(self.run("image", "inspect", "--format", "{{.Size}}", tag).strip())


def docker_binary() -> str:
    found = shutil.which("docker")
    if found is None:
        raise DockerUnavailable("no docker CLI on PATH: apt-get install -y docker.io (make system-packages)")
    return found


def _started_dockerd(state_dir: Path, binary: str) -> tuple[subprocess.Popen[bytes], DockerEngine]:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise DockerUnavailable("no Docker daemon answers and dockerd is missing: apt-get install -y docker.io")
    state_dir.mkdir(parents=True, exist_ok=True)
    engine = DockerEngine(f"unix://{state_dir / 'docker.sock'}", binary)
    command: Sequence[str] = [
        dockerd,
        f"--data-root={state_dir / 'data'}",
        f"--exec-root={state_dir / 'exec'}",
        f"--pidfile={state_dir / 'docker.pid'}",
        f"--host={engine.host}",
        # No docker0 bridge and no iptables rules: the machine's network stays as it was. Builds and
        # containers use the host's network (the test's servers listen on loopback).
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--log-level=warn",
    ]
    with (state_dir / "dockerd.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not engine.answers():
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            tail = (state_dir / "dockerd.log").read_text(errors="replace").splitlines()[-20:]
            raise DockerUnavailable(f"dockerd did not start within {START_TIMEOUT:g} s:\n" + "\n".join(tail))
        time.sleep(0.5)
    return process, engine


def _stop(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        process.terminate()  # dockerd stops its containers and containerd on SIGTERM
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def docker_engine(state_dir: Path) -> Iterator[DockerEngine]:
    """The first Docker daemon that answers (see the module docstring), else one started here (its data,
    socket and log under ``state_dir``) and stopped on exit; ``DockerUnavailable`` when neither is possible."""
    binary = docker_binary()
    configured = os.environ.get("DOCKER_HOST")
    if configured:
        engine = DockerEngine(configured, binary)
        if not engine.answers():
            raise DockerUnavailable(f"DOCKER_HOST={configured} does not answer `docker version`")
        yield engine
        return
    for host in (f"unix://{state_dir / 'docker.sock'}", SYSTEM_SOCKET):
        engine = DockerEngine(host, binary)
        if engine.answers():
            yield engine
            return
    if os.geteuid() != 0:
        raise DockerUnavailable(
            f"no Docker daemon answers ({SYSTEM_SOCKET} or {state_dir / 'docker.sock'}) and starting one needs "
            "root: start dockerd, or set DOCKER_HOST to a daemon you may use"
        )
    process, engine = _started_dockerd(state_dir, binary)
    try:
        yield engine
    finally:
        _stop(process)
