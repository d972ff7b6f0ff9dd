"""The production profile's servers, real and on loopback, for tests (and ``make prod-local``).

What staging and prod run on (``python -m platform_assets.settings --env prod``), started here from the
machine's own programs, each in a folder of its own and stopped however the caller ends:

* ``postgres_server(root)``: a throwaway PostgreSQL cluster (Debian's ``initdb``/``pg_ctl``) on 127.0.0.1,
  password (SCRAM) over TCP, trust on its Unix socket for the superuser. ``Postgres.create_database``
  adds a login role and its database and returns their SQLAlchemy URL.
* ``s3_server(root)``: moto's S3 API server (``python -m moto.server``); ``S3Server.create_bucket``.
* ``mlflow_server(root, backend_store_uri, artifacts_destination, s3)``: ``mlflow server`` with its
  backend store in PostgreSQL and artifacts proxied to S3.
* ``prod_stores(root)``: all three wired together the way the cluster is (databases ``inference_log`` and
  ``mlflow``, buckets ``credit-risk-lake`` and ``mlflow-artifacts``); ``ProdStores.env()`` is the
  environment a process (the service, Dagster, a container) needs to use them, ``ProdStores.platform_env``
  adds a Dagster home on PostgreSQL and a manifest key pair: the whole control plane with ``PLATFORM_ENV=prod``.

``python tests/prod_support.py run|stop`` is ``make prod-local``/``make prod-local-stop``: the profile for a
person, with the pipeline run once, two replicas and the Dagster UI (see ``run_local``).

Every server can be stopped and started again on the same port (``stop()``/``start()``), for tests of a
store that goes away and comes back. Nothing downloads: the programs are the machine's and the venv's.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from net_support import free_port, log_tail, stop_process_group

#: Credentials of the fake AWS account moto serves (never real ones).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "prod-profile",
    "AWS_SECRET_ACCESS_KEY": "prod-profile",
    "AWS_DEFAULT_REGION": "us-east-1",
}
LAKE_BUCKET = "credit-risk-lake"
ARTIFACT_BUCKET = "mlflow-artifacts"
START_TIMEOUT = 120.0


class ServerFailed(RuntimeError):
    """A server did not start; the message names it and ends with its log's tail."""


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL server's ``bin`` folder (Debian: ``/usr/lib/postgresql/N/bin``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise ServerFailed("no PostgreSQL server binaries: apt-get install -y postgresql")
    return Path(found[-1]).parent


@dataclass
class Postgres:
    """A PostgreSQL cluster in ``data`` serving 127.0.0.1:``port``; its Unix socket is in ``data`` too."""

    data: Path
    port: int
    bindir: Path = field(default_factory=postgres_bindir)
    as_postgres: tuple[str, ...] = ()  # run as Debian's postgres account when we are root (initdb refuses root)

    def _pg(self, *command: str) -> None:
        result = subprocess.run(
            [*self.as_postgres, *command], capture_output=True, text=True, timeout=START_TIMEOUT, check=False
        )
        if result.returncode != 0:
            raise ServerFailed(f"{' '.join(command[:1])} failed: {result.stdout}{result.stderr}\n{self.log_tail()}")

    def init(self) -> None:
        self._pg(
            str(self.bindir / "initdb"),
            *("-D", str(self.data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"),
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        log = str(self.data / "server.log")
        self._pg(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended); a stopped server is fine."""
        if (self.data / "postmaster.pid").exists():
            self._pg(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def log_tail(self) -> str:
        return log_tail(self.data / "server.log")

    def sql(
        self, statement: str, *, db: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run ``statement`` in ``db`` and return its rows: as the superuser over the Unix socket, or as
        ``user`` with ``password`` over TCP (the way a service connects)."""
        import psycopg2

        if password is None:
            connection = psycopg2.connect(host=str(self.data), port=self.port, user=user, dbname=db)
        else:
            connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=user, password=password, dbname=db)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def url(self, user: str, database: str, password: str | None = None) -> str:
        """The SQLAlchemy URL of ``database`` on this server as ``user`` (with ``password`` if given)."""
        secret = f":{password}" if password else ""
        return f"postgresql+psycopg2://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, owner: str, password: str) -> str:
        """A login role ``owner`` and a database ``name`` it owns; their URL, password included."""
        self.sql(f"CREATE ROLE {owner} LOGIN PASSWORD '{password}'")
        self.sql(f"CREATE DATABASE {name} OWNER {owner}")
        return self.url(owner, name, password)


@contextmanager
def postgres_server(root: Path | None = None) -> Iterator[Postgres]:
    """A new cluster in ``root/postgres`` (a fresh temporary folder when ``root`` is None; a cluster left
    there by an earlier run is replaced), started on a free port; stopped and, when temporary, deleted on exit."""
    temporary = root is None
    data = Path(tempfile.mkdtemp(prefix="credit-risk-pg-")) if root is None else root / "postgres"
    if not temporary:
        shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True, exist_ok=True)
    as_postgres: tuple[str, ...] = ()
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(data, account.pw_uid, account.pw_gid)
        os.chmod(data, 0o700)
        as_postgres = ("runuser", "-u", "postgres", "--")
    server = Postgres(data, free_port(), as_postgres=as_postgres)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        if temporary:
            shutil.rmtree(data, ignore_errors=True)


@dataclass
class Process:
    """A server started as ``command`` in its own process group, ready when ``health`` answers 200."""

    name: str
    command: list[str]
    env: dict[str, str]
    health: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerFailed(f"{self.name} exited with {self.process.returncode}:\n{log_tail(self.log_path)}")
            try:
                if httpx.get(self.health, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"{self.name} not healthy within {timeout:g} s:\n{log_tail(self.log_path)}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process_group(self.process)
        self.process = None


@dataclass
class S3Server:
    """moto's S3 API at ``endpoint_url``."""

    endpoint_url: str
    server: Process

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, **_boto_credentials())

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without AWS/MLflow/platform settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "PLATFORM_", "CREDIT_RISK_"))}
    return env | AWS_ENV | dict(extra)


@contextmanager
def s3_server(root: Path) -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port (log in ``root/moto.log``); stopped on exit."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Process(
        "moto S3 server",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        _clean_env({}),
        f"{url}/moto-api/",
        root / "moto.log",
    )
    server.start()
    try:
        yield S3Server(url, server)
    finally:
        server.stop()


@dataclass
class MlflowServer:
    """``mlflow server`` at ``url``: backend store in a database, artifacts proxied to S3."""

    url: str
    server: Process

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


@contextmanager
def mlflow_server(
    root: Path, backend_store_uri: str, artifacts_destination: str, s3: S3Server
) -> Iterator[MlflowServer]:
    """An MLflow tracking server on a free loopback port (log in ``root/mlflow-server.log``); stopped on exit.

    Clients reach artifacts through the server (``mlflow-artifacts:`` URIs), so only the server needs the
    S3 endpoint and credentials, as in the cluster.
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", backend_store_uri),
        *("--artifacts-destination", artifacts_destination, "--serve-artifacts"),
    ]
    env = _clean_env({"MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url, "HOME": str(root)})
    server = MlflowServer(url, Process("mlflow server", command, env, f"{url}/health", root / "mlflow-server.log"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class ProdStores:
    """The production profile's stores on loopback (see the module docstring)."""

    root: Path
    postgres: Postgres
    s3: S3Server
    mlflow: MlflowServer
    inference_db: str  # SQLAlchemy URL with its password
    inference_db_password: str
    inference_db_without_password: str  # what the service and the settings table are given

    @property
    def lake_uri(self) -> str:
        return f"s3://{LAKE_BUCKET}/prod"

    def env(self) -> dict[str, str]:
        """Variables that point a service replica and the control plane (``PLATFORM_ENV=prod``) at these
        stores; the inference log's password travels separately, as in the cluster."""
        return {
            **AWS_ENV,
            "PLATFORM_ENV": "prod",
            "MLFLOW_TRACKING_URI": self.mlflow.url,
            "PLATFORM_LAKE_URI": self.lake_uri,
            "PLATFORM_S3_ENDPOINT": self.s3.endpoint_url,
            "CREDIT_RISK_INFERENCE_DB": self.inference_db_without_password,
            "PGPASSWORD": self.inference_db_password,
            "PLATFORM_INFERENCE_DB_PASSWORD": self.inference_db_password,
        }

    def platform_env(self, home: Path) -> dict[str, str]:
        """``env()`` for the control plane and its services with ``PLATFORM_ENV=prod``: the platform home
        ``home``, a Dagster home whose storage is this PostgreSQL (database ``dagster``, as ``k8s/dagster``
        has it), a manifest-signing key pair under ``home/keys``, and the settings' overrides that point the
        prod table's stores here. The deploy target stays ``kubernetes`` unless the caller overrides it."""
        from platform_assets.core import signing

        dagster_url = self.postgres.create_database("dagster", "dagster", "dagster-password")
        dagster_home = home / "dagster"
        dagster_home.mkdir(parents=True, exist_ok=True)
        instance = f"telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url: {dagster_url}\n"
        (dagster_home / "dagster.yaml").write_text(instance)
        private_key, public_key = signing.write_key_pair(home / "keys", overwrite=True)
        env = self.env()
        del env["PGPASSWORD"]  # the control plane's password is PLATFORM_INFERENCE_DB_PASSWORD, as in a pod
        return env | {
            "PLATFORM_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
            "PLATFORM_INFERENCE_DB": self.inference_db_without_password,
            "PLATFORM_SIGNING_KEY_FILE": str(private_key),
            "PLATFORM_VERIFY_KEY_FILE": str(public_key),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }


@contextmanager
def prod_stores(root: Path, *, keep_database_in_root: bool = False) -> Iterator[ProdStores]:
    """PostgreSQL (databases ``inference_log`` and ``mlflow``), moto S3 (buckets ``credit-risk-lake`` and
    ``mlflow-artifacts``) and an MLflow server on them, with logs under ``root`` (the database cluster too
    with ``keep_database_in_root``, else in a temporary folder deleted on exit)."""
    with ExitStack() as stack:
        postgres = stack.enter_context(postgres_server(root if keep_database_in_root else None))
        inference_password = "inference-log-password"
        inference_db = postgres.create_database("inference_log", "credit_risk", inference_password)
        inference_db_without_password = postgres.url("credit_risk", "inference_log")
        mlflow_db = postgres.create_database("mlflow", "mlflow", "mlflow-password")
        s3 = stack.enter_context(s3_server(root))
        s3.create_bucket(LAKE_BUCKET)
        s3.create_bucket(ARTIFACT_BUCKET)
        mlflow = stack.enter_context(mlflow_server(root, mlflow_db, f"s3://{ARTIFACT_BUCKET}", s3))
        yield ProdStores(root, postgres, s3, mlflow, inference_db, inference_password, inference_db_without_password)


# -- make prod-local ------------------------------------------------------------------------------------

#: Where ``make prod-local`` serves unless ``PROD_LOCAL_UI_PORT`` / ``PROD_LOCAL_SERVICE_PORTS`` say otherwise.
DAGSTER_UI_PORT = 3000
LOCAL_SERVICE_PORTS = (3001, 3002)
PID_FILE = "prod-local.pid"
#: Seconds ``make prod-local-stop`` waits: the Dagster UI, both replicas, MLflow, moto and PostgreSQL stop in turn.
STOP_TIMEOUT = 180.0


class ProdLocalError(RuntimeError):
    """``make prod-local`` cannot start or stop as asked; the message says why and what to do."""


@dataclass(frozen=True)
class LocalPorts:
    """The loopback ports of ``make prod-local``: the Dagster UI and the service's replicas A and B."""

    ui: int
    replicas: tuple[int, int]

    @classmethod
    def parse(cls, ui: str, replicas: str) -> LocalPorts:
        """From ``PROD_LOCAL_UI_PORT`` (a port) and ``PROD_LOCAL_SERVICE_PORTS`` (two ports, ``A,B``)."""

        def port(text: str, variable: str) -> int:
            if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
                raise ProdLocalError(f"{variable}: {text!r} is not a TCP port (1-65535)")
            return int(text)

        parts = replicas.split(",")
        if len(parts) != 2:
            raise ProdLocalError(f"PROD_LOCAL_SERVICE_PORTS: {replicas!r} is not two ports A,B (replica A, replica B)")
        replica_a, replica_b = (port(part, "PROD_LOCAL_SERVICE_PORTS") for part in parts)
        ports = cls(port(ui, "PROD_LOCAL_UI_PORT"), (replica_a, replica_b))
        if len(set(ports.all())) != 3:
            raise ProdLocalError(f"PROD_LOCAL_UI_PORT and PROD_LOCAL_SERVICE_PORTS repeat a port: {ports.all()}")
        return ports

    def all(self) -> tuple[int, int, int]:
        return (self.ui, *self.replicas)


def taken_ports(ports: Sequence[int], host: str = "127.0.0.1") -> list[int]:
    """Those of ``ports`` that cannot be bound on ``host`` now (another process holds them)."""
    taken = []
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed connection's TIME_WAIT is no owner
            try:
                sock.bind((host, port))
            except OSError:
                taken.append(port)
    return taken


def write_pid_file(root: Path) -> None:
    """``root``/prod-local.pid: this process' pid and start time (a reused pid is then told apart)."""
    me = psutil.Process()
    tmp = root / f"{PID_FILE}.tmp"
    tmp.write_text(f"{me.pid} {me.create_time()}")
    os.replace(tmp, root / PID_FILE)


def running_process(root: Path) -> psutil.Process | None:
    """The ``make prod-local`` of ``root`` if it runs; ``None`` when there is no pid file or it is stale (its process
    exited, or the pid now belongs to another process, which is then never signalled)."""
    try:
        pid, started = (root / PID_FILE).read_text().split()
        process = psutil.Process(int(pid))
        if process.create_time() != float(started) or process.status() == psutil.STATUS_ZOMBIE:
            return None
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        return None
    return process


def run_step(command: Sequence[str]) -> None:
    """``command`` to its end in a process group of its own, which is stopped (SIGTERM, then SIGKILL) if
    prod-local stops meanwhile; ``ProdLocalError`` naming it when it fails."""
    process = subprocess.Popen(list(command), start_new_session=True)
    try:
        code = process.wait()
    finally:
        if process.poll() is None:
            stop_process_group(process)
    if code != 0:
        raise ProdLocalError(f"{' '.join(command[1:])} failed (exit {code}); its output is above")


def own_bentoml_home(bento: str, shared_home: Path, home: Path) -> Path:
    """``home``, a BentoML home holding only ``bento`` (exported from ``shared_home``). A replica needs a home
    of its own: ``bentoml serve`` empties its home's Prometheus folder when it starts, and every replica on a
    home reports the counters of all of them from ``/metrics``."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    archive = home.parent / "bento-export.bento"
    for command, bentoml_home in ((["export", bento, str(archive)], shared_home), (["import", str(archive)], home)):
        result = subprocess.run(
            [sys.executable, "-m", "bentoml", *command],
            env={**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ProdLocalError(f"bentoml {' '.join(command)} failed: {result.stdout}{result.stderr}")
    archive.unlink()
    return home


def run_local(root: Path, ports: LocalPorts) -> None:
    """The production profile for a person, until SIGTERM (``make prod-local-stop``) or Ctrl-C: the stores
    (state and logs under ``root``), the inference log's migration, the pipeline once with ``PLATFORM_ENV=prod``
    (``platform_assets.demo``: ingest, train, gates, signed manifest, Bento, deployed by the local deployer as
    replica A), replica B of the same Bento, both on the shared inference log and registry, and the Dagster UI
    and daemon with the same settings (its sensors and schedules drive the loop from there).

    Refuses (``ProdLocalError``), before starting anything, when it already runs for ``root`` or a port is taken.
    """
    from net_support import dagster_webserver

    from platform_assets.deploy.local import LocalServiceManager

    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    running = running_process(root)
    if running is not None:
        raise ProdLocalError(f"prod-local already runs for {root} (pid {running.pid}): make prod-local-stop first")
    taken = taken_ports(ports.all())
    if taken:
        raise ProdLocalError(
            f"port(s) {', '.join(map(str, taken))} of 127.0.0.1 are taken: stop what holds them or choose others, "
            f"e.g. make prod-local PROD_LOCAL_UI_PORT=3100 PROD_LOCAL_SERVICE_PORTS=3101,3102 (now {ports.all()})"
        )
    write_pid_file(root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds every context below: servers stop
    managers: list[LocalServiceManager] = []  # each stopped on the way out, whatever it got to start
    try:
        with prod_stores(root, keep_database_in_root=True) as stores:
            home = root / "platform_home"
            env = stores.platform_env(home) | {
                "PLATFORM_DEPLOY_TARGET": "local",  # no cluster here: the local deployer runs replica A
                "PLATFORM_SERVICE_PORT": str(ports.replicas[0]),
                "SPARK_MASTER": "local[2]",
                "PYSPARK_PYTHON": sys.executable,
            }
            os.environ.update(env)
            from platform_assets.definitions import bound_to
            from platform_assets.settings import PlatformSettings

            deployer = bound_to(PlatformSettings()).resources["deployer"].process_config_and_initialize()
            managers.append(deployer.local_manager())  # the pipeline's deployment starts replica A under it
            # The admin's step of a first release (the service only checks the inference log's schema).
            run_step([sys.executable, "-m", "platform_assets.migrate", "upgrade"])
            run_step([sys.executable, "-m", "platform_assets.demo", "--days", "3"])
            state_a = managers[0].current()
            if state_a is None:
                raise ServerFailed(f"the deployment left no service running; see {home / 'serving'}")
            replica_b = LocalServiceManager(root / "replica_b", port=ports.replicas[1])
            managers.append(replica_b)
            bentoml_b = own_bentoml_home(state_a.bento, deployer.bentoml_home(), root / "replica_b" / "bentoml")
            state_b, _ = replica_b.deploy(state_a.bento, deployer.service_env(bentoml_b), 240)
            log = root / "dagster-dev.log"
            with dagster_webserver(dict(os.environ), log, dev=True, timeout=300, port=ports.ui) as ui:
                print(
                    f"\nprod-local is up after {time.monotonic() - started:.0f} s (state under {root}):\n"
                    f"  Dagster UI         {ui}\n"
                    f"  service replicas   {state_a.url}  {state_b.url}\n"
                    f"  API keys           make api-key ROLE=predict PLATFORM_HOME={home}  "
                    f"(a demo key: {home / 'serving' / 'demo.key'})\n"
                    f"  MLflow server      {stores.mlflow.url}\n"
                    f"  S3 (moto)          {stores.s3.endpoint_url}  lake {stores.lake_uri}\n"
                    f"  PostgreSQL         127.0.0.1:{stores.postgres.port} (inference_log, mlflow, dagster)\n"
                    "Stop with `make prod-local-stop` (or Ctrl-C).",
                    flush=True,
                )
                signal.pause()
    finally:
        for manager in managers:
            manager.stop(manager.current())
        (root / PID_FILE).unlink(missing_ok=True)


def stop_local(root: Path, timeout: float = STOP_TIMEOUT) -> int:
    """Ask the ``run_local(root)`` that runs to stop, and wait until its process is gone; 1 if it is not gone
    within ``timeout`` seconds. A stale pid file is removed, and its pid never signalled."""
    pid_file = root / PID_FILE
    process = running_process(root)
    if process is None:
        if pid_file.exists():
            pid_file.unlink()
            print(f"prod-local was not running; removed the stale {pid_file}")
        else:
            print(f"prod-local is not running (no {pid_file})")
        return 0
    try:
        process.terminate()
        process.wait(timeout)
    except psutil.NoSuchProcess:
        pass  # it ended between the check and the signal
    except psutil.TimeoutExpired:
        print(f"prod-local (pid {process.pid}) did not stop within {timeout:g} s", file=sys.stderr)
        return 1
    print(f"prod-local (pid {process.pid}) stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``make prod-local`` (``run``) and ``make prod-local-stop`` (``stop``); 2 when it cannot do as asked."""
    import argparse

    parser = argparse.ArgumentParser(prog="tests/prod_support.py", description="make prod-local / make prod-local-stop")
    parser.add_argument("action", choices=["run", "stop"])
    parser.add_argument("--root", type=Path, required=True, help="state folder, e.g. $(PLATFORM_HOME)/prod-local")
    arguments = parser.parse_args(argv)
    root = arguments.root.resolve()
    try:
        if arguments.action == "stop":
            return stop_local(root)
        ports = LocalPorts.parse(
            os.environ.get("PROD_LOCAL_UI_PORT", str(DAGSTER_UI_PORT)),
            os.environ.get("PROD_LOCAL_SERVICE_PORTS", ",".join(map(str, LOCAL_SERVICE_PORTS))),
        )
        run_local(root, ports)
    except (ProdLocalError, ServerFailed) as error:
        print(f"prod-local: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: everything above has been stopped on the way out
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
