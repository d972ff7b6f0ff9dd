"""``make prod-local`` / ``make prod-local-stop`` (``tests/prod_support.py run|stop``): what they refuse before
starting anything, and whom the stop signals. Processes here are stand-ins (``sleep``-like Pythons), never a
real profile: the profile itself is run by hand (README, "The production profile on one machine")."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prod_support import PID_FILE, LocalPorts, ProdLocalError, main, stop_local

#: A process that stops on SIGTERM (Python's default) and one that ignores it.
OBEYS = "import time; time.sleep(120)"
IGNORES = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"
)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(timeout=10)


def start(processes: list[subprocess.Popen[str]], code: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    processes.append(process)
    if code == IGNORES:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"  # the handler is in place
    return process


def record(root: Path, pid: int, started: float | None = None) -> Path:
    """A pid file as ``run_local`` writes it; ``started`` other than the process' own: a reused pid."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / PID_FILE
    path.write_text(f"{pid} {psutil.Process(pid).create_time() if started is None else started}")
    return path


def test_ports_default_and_refuse_what_is_not_two_distinct_ports() -> None:
    assert LocalPorts.parse("3000", "3001,3002") == LocalPorts(3000, (3001, 3002))
    for ui, replicas, named in [
        ("web", "3001,3002", "PROD_LOCAL_UI_PORT"),
        ("70000", "3001,3002", "PROD_LOCAL_UI_PORT"),
        ("3000", "3001", "PROD_LOCAL_SERVICE_PORTS"),
        ("3000", "3001,x", "PROD_LOCAL_SERVICE_PORTS"),
        ("3000", "3000,3002", "repeat a port"),
    ]:
        with pytest.raises(ProdLocalError, match=named):
            LocalPorts.parse(ui, replicas)


def test_a_taken_port_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        monkeypatch.setenv("PROD_LOCAL_UI_PORT", str(taken))
        monkeypatch.setenv("PROD_LOCAL_SERVICE_PORTS", f"{taken + 1},{taken + 2}")
        assert main(["run", "--root", str(tmp_path / "prod-local")]) == 2
    error = capsys.readouterr().err
    assert f"port(s) {taken} of 127.0.0.1 are taken" in error and "PROD_LOCAL_UI_PORT" in error
    assert sorted(p.name for p in (tmp_path / "prod-local").iterdir()) == []  # no database, no pid file


def test_a_second_run_is_refused_and_stop_ends_the_first(
    tmp_path: Path, processes: list[subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "prod-local"
    first = start(processes, OBEYS)
    pid_file = record(root, first.pid)

    assert main(["run", "--root", str(root)]) == 2
    assert f"already runs for {root} (pid {first.pid})" in capsys.readouterr().err
    assert first.poll() is None and pid_file.exists()

    assert main(["stop", "--root", str(root)]) == 0
    assert first.poll() is not None, "stop returned before the process was gone"
    assert f"prod-local (pid {first.pid}) stopped" in capsys.readouterr().out


def test_stop_never_signals_a_pid_that_is_no_longer_prod_local(
    tmp_path: Path, processes: list[subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "prod-local"
    assert stop_local(root) == 0
    assert "prod-local is not running" in capsys.readouterr().out

    # The pid was prod-local's once; now another process (started later) has it.
    other = start(processes, OBEYS)
    pid_file = record(root, other.pid, started=psutil.Process(other.pid).create_time() - 3600)
    assert stop_local(root) == 0
    assert "removed the stale" in capsys.readouterr().out
    assert not pid_file.exists()
    assert other.poll() is None, "stop signalled a process that is not prod-local"


def test_stop_fails_when_prod_local_does_not_end(
    tmp_path: Path, processes: list[subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    stubborn = start(processes, IGNORES)
    record(tmp_path, stubborn.pid)
    assert stop_local(tmp_path, timeout=1.0) == 1
    assert f"prod-local (pid {stubborn.pid}) did not stop within 1 s" in capsys.readouterr().err
    assert stubborn.poll() is None
