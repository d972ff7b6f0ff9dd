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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
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

LOCAL_SERVICE_PORTS = (3001, 3002)
DAGSTER_UI_PORT = 3000


def run_local(root: Path) -> None:
    """The production profile for a person, until SIGTERM (``make prod-local-stop``) or Ctrl-C: the stores
    (state and logs under ``root``), the inference log's migration, the pipeline once with ``PLATFORM_ENV=prod``
    (``platform_assets.demo``: ingest, train, gates, signed manifest, Bento, deployed by the local deployer as
    replica A on port 3001), replica B of the same Bento on 3002, both on the shared inference log and
    registry, and the Dagster UI and daemon on 3000 with the same settings (its sensors and schedules drive
    the loop from there)."""
    from net_support import dagster_webserver

    from platform_assets.deploy.local import LocalServiceManager

    root.mkdir(parents=True, exist_ok=True)
    (root / "prod-local.pid").write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds every context below: servers stop
    replicas: list[tuple[LocalServiceManager, Any]] = []
    try:
        with prod_stores(root, keep_database_in_root=True) as stores:
            home = root / "platform_home"
            env = stores.platform_env(home) | {
                "PLATFORM_DEPLOY_TARGET": "local",  # no cluster here: the local deployer runs replica A
                "PLATFORM_SERVICE_PORT": str(LOCAL_SERVICE_PORTS[0]),
                "SPARK_MASTER": "local[2]",
                "PYSPARK_PYTHON": sys.executable,
            }
            os.environ.update(env)
            # The admin's step of a first release (the service only checks the inference log's schema).
            subprocess.run([sys.executable, "-m", "platform_assets.migrate", "upgrade"], check=True)
            subprocess.run([sys.executable, "-m", "platform_assets.demo", "--days", "3"], check=True)
            from platform_assets.definitions import bound_to
            from platform_assets.settings import PlatformSettings

            deployer = bound_to(PlatformSettings()).resources["deployer"].process_config_and_initialize()
            replica_a = deployer.local_manager()
            state_a = replica_a.current()
            if state_a is None:
                raise ServerFailed(f"the deployment left no service running; see {home / 'serving'}")
            replicas.append((replica_a, state_a))
            replica_b = LocalServiceManager(root / "replica_b", port=LOCAL_SERVICE_PORTS[1])
            state_b, _ = replica_b.deploy(state_a.bento, deployer.service_env(deployer.bentoml_home()), 240)
            replicas.append((replica_b, state_b))
            with dagster_webserver(dict(os.environ), root / "dagster-dev.log", dev=True, timeout=300) as ui:
                print(
                    f"\nprod-local is up (state under {root}):\n"
                    f"  Dagster UI         {ui}\n"
                    f"  service replicas   {state_a.url}  {state_b.url}  (API keys: make api-key)\n"
                    f"  MLflow server      {stores.mlflow.url}\n"
                    f"  S3 (moto)          {stores.s3.endpoint_url}  lake {stores.lake_uri}\n"
                    f"  PostgreSQL         127.0.0.1:{stores.postgres.port} (inference_log, mlflow, dagster)\n"
                    "Stop with `make prod-local-stop` (or Ctrl-C).",
                    flush=True,
                )
                signal.pause()
    finally:
        for manager, state in replicas:
            manager.stop(state)
        (root / "prod-local.pid").unlink(missing_ok=True)


def stop_local(root: Path) -> int:
    """Ask a running ``run_local(root)`` to stop, and wait for it (up to two minutes)."""
    pid_file = root / "prod-local.pid"
    if not pid_file.is_file():
        print(f"prod-local is not running (no {pid_file})")
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        print(f"prod-local (pid {pid}) was not running; removed {pid_file}")
        return 0
    deadline = time.monotonic() + 120
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    if pid_file.exists():
        print(f"prod-local (pid {pid}) did not stop within 120 s", file=sys.stderr)
        return 1
    print("prod-local stopped")
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="make prod-local / make prod-local-stop")
    parser.add_argument("action", choices=["run", "stop"])
    parser.add_argument("--root", type=Path, required=True, help="state folder, e.g. $(PLATFORM_HOME)/prod-local")
    arguments = parser.parse_args()
    root = arguments.root.resolve()
    if arguments.action == "stop":
        raise SystemExit(stop_local(root))
    run_local(root)
