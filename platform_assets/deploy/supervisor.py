"""Keeps one ``bentoml serve`` alive, and leaves no orphan behind when it dies.

``bentoml serve`` runs a circus arbiter that starts each worker with ``setsid``: the workers are in
sessions of their own and hold the listening socket. When the arbiter is killed (SIGKILL, OOM killer)
they keep answering on the port, unsupervised, and nothing that signals the arbiter's process group
reaches them. This supervisor is the parent of the arbiter and a *child subreaper*
(``PR_SET_CHILD_SUBREAPER``, Linux), so orphaned workers become its children. It marks every process
of the service with an environment variable (``MARKER_VARIABLE``), which ``LocalServiceManager``
uses to find them all, whoever their parent is now.

When the arbiter exits while the supervisor is not stopping, the supervisor kills the marked
processes that are left, waits for the port to be free, and starts ``bentoml serve`` again. An
arbiter that exits before it ever listened on the port is not restarted: that is a service that
cannot start (bad Bento, bad settings), and the supervisor exits with its status so that the deployer
reports the log instead of a restart loop. SIGTERM stops the arbiter (it drains and flushes
the inference log), then anything marked that is left.

Its state (pids, restarts, last exit) is written atomically to ``--status-file`` as JSON.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger("platform_assets.deploy.supervisor")

#: Every process of a managed service carries this variable; its value is ``<state dir>|<start id>``.
MARKER_VARIABLE = "PLATFORM_SERVICE_MARKER"
_PR_SET_CHILD_SUBREAPER = 36


def marked(prefix: str) -> Iterator[psutil.Process]:
    """The live processes whose marker starts with ``prefix`` (this user's; others' are unreadable)."""
    for process in psutil.process_iter():
        try:
            value = process.environ().get(MARKER_VARIABLE)
            if value is not None and value.startswith(prefix) and process.status() != psutil.STATUS_ZOMBIE:
                yield process
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue


def kill_marked(prefix: str, timeout: float = 10.0, exclude: int | None = None) -> int:
    """SIGKILL every process marked ``prefix`` (but ``exclude``); returns how many there were."""
    victims = [process for process in marked(prefix) if process.pid != exclude]
    for process in victims:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=timeout)
    return len(victims)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) != 0


def write_status(path: Path, status: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, indent=2))
    os.replace(tmp, path)


class Supervisor:
    def __init__(self, command: list[str], marker: str, host: str, port: int, status_file: Path):
        self.command = command
        self.marker = marker
        self.host = host
        self.port = port
        self.status_file = status_file
        self.listening = threading.Event()
        self.stopping = False
        self.server: subprocess.Popen[bytes] | None = None
        self.status: dict[str, Any] = {"supervisor_pid": os.getpid(), "restarts": 0, "exits": []}

    def _on_stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)

    def _start_server(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, MARKER_VARIABLE: self.marker}
        server = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL)
        self.status.update(server_pid=server.pid, server_started_at=datetime.now(UTC).isoformat())
        write_status(self.status_file, self.status)
        self.listening.clear()
        threading.Thread(target=self._watch_port, args=(server,), daemon=True).start()
        return server

    def _watch_port(self, server: subprocess.Popen[bytes]) -> None:
        while server.returncode is None and not self.stopping:
            if not port_free(self.host, self.port):
                self.listening.set()
                return
            time.sleep(0.2)

    def _wait_server(self, server: subprocess.Popen[bytes]) -> int:
        """Reap children (orphaned workers included) until the server exits; its exit status."""
        while True:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:  # nothing left to wait for (it was reaped elsewhere)
                return server.returncode if server.returncode is not None else -1
            if pid == server.pid:
                server.returncode = os.waitstatus_to_exitcode(wait_status)
                return server.returncode

    def run(self) -> int:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            logger.warning("PR_SET_CHILD_SUBREAPER failed (errno %d): orphans go to init", ctypes.get_errno())
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        while True:
            started = time.monotonic()
            self.server = self._start_server()
            code = self._wait_server(self.server)
            uptime = time.monotonic() - started
            left = kill_marked(self.marker, exclude=os.getpid())
            exit_record = {"at": datetime.now(UTC).isoformat(), "code": code, "uptime_s": round(uptime, 1)}
            self.status["exits"] = [*self.status["exits"][-9:], {**exit_record, "orphans_killed": left}]
            write_status(self.status_file, self.status)
            if self.stopping:
                logger.info("stopped bentoml serve (exit %s); %d leftover process(es) killed", code, left)
                return 0
            if not self.listening.is_set():
                logger.error(
                    "bentoml serve exited %s after %.1f s without listening on %s:%d: not restarting "
                    "a service that cannot start",
                    code,
                    uptime,
                    self.host,
                    self.port,
                )
                return code if code > 0 else 1
            logger.warning(
                "bentoml serve died (exit %s) after %.0f s; killed %d orphan(s); restarting", code, uptime, left
            )
            deadline = time.monotonic() + 10
            while not port_free(self.host, self.port) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.status["restarts"] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.deploy.supervisor", description=__doc__)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status-file", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- bentoml serve ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("the command to supervise is missing (after --)")
    log_format = "%(asctime)s supervisor %(levelname)s %(message)s"
    logging.basicConfig(level=logging.INFO, format=log_format, stream=sys.stdout)
    return Supervisor(command, args.marker, args.host, args.port, args.status_file).run()


if __name__ == "__main__":
    raise SystemExit(main())
