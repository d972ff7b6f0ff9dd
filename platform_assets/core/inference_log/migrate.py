"""Schema creation and upgrades of the inference log, through Alembic (revisions in ``migrations/versions``).

Who migrates: a server database (PostgreSQL, shared by every replica and read by the control plane) is
migrated by its operator, once per release, before the new service starts: ``python -m platform_assets.migrate
upgrade`` (the environment's table; the ``inference-log-migrate`` Job in k8s/dagster runs it). The service
only checks that database and stays not-ready, naming the revision it needs, until it is at the head. An
embedded SQLite file belongs to the one service that opens it and is upgraded by that service when it starts
(the local default), under a file lock so that its workers do not race.

A database created before Alembic (the two tables, no version table) is recognised, stamped as revision
``0001`` and upgraded from there. A new revision: copy the newest file in ``versions/``, set ``revision``
and ``down_revision``, write ``upgrade`` and ``downgrade``, and change ``schema.py``'s tables to match (a
test compares them).

Command line without the control plane (URL from ``--url``, else ``CREDIT_RISK_INFERENCE_DB`` or
``PLATFORM_INFERENCE_DB``; a PostgreSQL password from ``PGPASSWORD``, as libpq reads it)::

    python -m platform_assets.core.inference_log.migrate upgrade|check|current|downgrade REVISION
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from platform_assets.core.inference_log.schema import make_engine

#: Its own version table: MLflow's store keeps Alembic's default ``alembic_version``, and an operator may put
#: both in one database.
VERSION_TABLE = "inference_log_version"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: The revision a database created before Alembic is at.
BASELINE = "0001"
COMMAND = "python -m platform_assets.migrate upgrade"
#: A PostgreSQL advisory lock key (any fixed number): two migrations at once wait for each other.
MIGRATION_LOCK = 0x1FE2E4C06


class SchemaNotCurrent(RuntimeError):
    """The inference log's schema is not the revision this code needs; the message says what to run."""


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision: the schema this code reads and writes."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, f"no revisions in {MIGRATIONS / 'versions'}"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; ``None`` for an empty (or pre-Alembic) database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def schema_problem(engine: Engine) -> str | None:
    """Why the database cannot be used by this code (``None``: it is at the head revision). Raises
    SQLAlchemy's ``OperationalError`` when it cannot be reached."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return None
    url = engine.url.render_as_string(hide_password=True)
    if current is None:
        tables = set(sa.inspect(engine).get_table_names())
        state = "has no inference-log schema" if not tables & {"predictions", "feedback"} else "predates Alembic"
        return f"the inference log {url} {state}; this service needs revision {head}: run `{COMMAND}`"
    return f"the inference log {url} is at revision {current}, this service needs {head}: run `{COMMAND}`"


@contextmanager
def _migrating(engine: Engine) -> Iterator[sa.Connection]:
    """One transaction that nobody else migrates at the same time: a PostgreSQL advisory lock held until it
    ends, or a lock file beside a SQLite database (whose workers may all start at once)."""
    database = engine.url.database
    lock_file = None
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        lock_file = open(f"{database}.migrate.lock", "a")  # noqa: SIM115 - closed below
        fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            yield connection
    finally:
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()


def _stamp_pre_alembic(connection: sa.Connection) -> None:
    """Record that tables created before Alembic are at ``BASELINE``, after checking their columns."""
    inspector = sa.inspect(connection)
    tables = set(inspector.get_table_names())
    if VERSION_TABLE in tables or not tables & {"predictions", "feedback"}:
        return
    expected = {"predictions": {"prediction_id", "created_at", "model_version", "application_id", "probability"}}
    expected["feedback"] = {"feedback_id", "received_at", "prediction_id", "defaulted", "known"}
    for table, columns in expected.items():
        found = {c["name"] for c in inspector.get_columns(table)} if table in tables else set()
        if not columns <= found:
            raise SchemaNotCurrent(
                f"table {table!r} lacks column(s) {sorted(columns - found)} of revision {BASELINE}: "
                "not an inference log this code can upgrade"
            )
    command.stamp(_config(connection), BASELINE)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (creating the schema in an empty one)."""
    with _migrating(engine) as connection:
        _stamp_pre_alembic(connection)
        command.upgrade(_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database back to ``revision`` (``base``: drop the schema)."""
    with _migrating(engine) as connection:
        command.downgrade(_config(connection), revision)


def prepare(engine: Engine, *, migrate: bool) -> None:
    """Make the schema usable: upgrade it when ``migrate``, else raise ``SchemaNotCurrent`` naming what to run."""
    if migrate:
        upgrade(engine)
        return
    problem = schema_problem(engine)
    if problem is not None:
        raise SchemaNotCurrent(problem)


def owns_schema(url: str) -> bool:
    """Whether whoever opens ``url`` migrates it: an embedded SQLite file, not a shared server database."""
    return url.startswith("sqlite")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.core.inference_log.migrate", description=__doc__)
    parser.add_argument("action", choices=["upgrade", "check", "current", "downgrade"])
    parser.add_argument("revision", nargs="?", help="target of downgrade (or of upgrade; default head)")
    parser.add_argument("--url", help="SQLAlchemy URL of the inference log (no password: PGPASSWORD)")
    args = parser.parse_args(argv)
    url = args.url or os.environ.get("CREDIT_RISK_INFERENCE_DB") or os.environ.get("PLATFORM_INFERENCE_DB")
    if not url:
        parser.error("no database: pass --url or set CREDIT_RISK_INFERENCE_DB")
    if args.action == "downgrade" and not args.revision:
        parser.error("downgrade needs a REVISION (e.g. base)")
    engine = make_engine(url)
    try:
        if args.action == "upgrade":
            upgrade(engine, args.revision or "head")
            print(f"inference log at revision {current_revision(engine)}")
        elif args.action == "downgrade":
            downgrade(engine, args.revision)
            print(f"inference log at revision {current_revision(engine)}")
        elif args.action == "current":
            print(current_revision(engine) or "none")
        else:
            problem = schema_problem(engine)
            print(problem or f"inference log at revision {head_revision()} (head)")
            return 0 if problem is None else 1
    except (sa.exc.SQLAlchemyError, SchemaNotCurrent) as error:
        print(f"inference log {make_engine(url).url.render_as_string(hide_password=True)}: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
