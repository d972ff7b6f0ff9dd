"""The inference log's Alembic migrations on SQLite and on a real PostgreSQL server (a throwaway cluster,
``prod_support.postgres_server``): an empty database, one created before Alembic, a downgrade/upgrade round
trip; at the head revision the database is what ``schema.py``'s tables describe."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prod_support import Postgres, postgres_server
from sqlalchemy.engine import Engine

from platform_assets.core.inference_log import migrate, schema
from platform_assets.core.inference_log.migrate import VERSION_TABLE

PASSWORD = "migrations-test"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.slow, pytest.mark.prod_profile])])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database: a SQLite file, or a database of its own on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inference_log.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    name = f"log_{uuid.uuid4().hex[:12]}"
    return server.create_database(name, f"owner_{name}", PASSWORD)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = schema.make_engine(url)
    yield engine
    engine.dispose()


def _differences(engine: Engine) -> list[object]:
    """What separates the database from ``schema.metadata`` (nothing, when the migrations match the code)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return list(compare_metadata(context, schema.metadata))


def _prediction(prediction_id: str, **columns: object) -> dict[str, object]:
    """A prediction row with the columns of revision 0001, plus ``columns``."""
    return {
        "prediction_id": prediction_id,
        "created_at": datetime(2026, 11, 1, 9),
        "model_version": "v1",
        "role": "champion",
        "application_id": 7,
        "probability": 0.25,
        "threshold": 0.5,
        "decision": "approve",
        **columns,
    }


def _log_one(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(schema.predictions).values(**_prediction("p-1")))
        connection.execute(
            sa.insert(schema.feedback).values(
                received_at=datetime(2026, 11, 2), prediction_id="p-1", application_id=7, defaulted=0, known=True
            )
        )


def _tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_from_empty_creates_the_schema_the_code_uses(engine: Engine) -> None:
    problem = migrate.schema_problem(engine)
    assert problem is not None and "has no inference-log schema" in problem and migrate.COMMAND in problem
    with pytest.raises(migrate.SchemaNotCurrent, match="needs revision"):
        migrate.prepare(engine, migrate=False)

    migrate.upgrade(engine)

    assert migrate.current_revision(engine) == migrate.head_revision()
    assert migrate.schema_problem(engine) is None
    assert _differences(engine) == []
    _log_one(engine)
    migrate.upgrade(engine)  # an upgrade with nothing to do
    migrate.prepare(engine, migrate=False)


def test_upgrade_from_the_pre_alembic_schema_keeps_its_rows(engine: Engine) -> None:
    # What the service created before Alembic: revision 0001's tables and no version table.
    with engine.begin() as connection:
        config = migrate._config(connection)
        command.upgrade(config, migrate.BASELINE)
        connection.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
    _log_one(engine)
    assert VERSION_TABLE not in _tables(engine)
    problem = migrate.schema_problem(engine)
    assert problem is not None and "predates Alembic" in problem

    migrate.upgrade(engine)

    assert migrate.current_revision(engine) == migrate.head_revision()
    assert _differences(engine) == []
    with engine.connect() as connection:
        assert connection.execute(sa.select(schema.predictions.c.prediction_id)).scalars().all() == ["p-1"]
        assert connection.execute(sa.select(schema.feedback.c.prediction_id)).scalars().all() == ["p-1"]


def test_reason_columns_are_added_to_a_log_at_0001_and_its_rows_kept(engine: Engine) -> None:
    migrate.upgrade(engine, migrate.BASELINE)
    _log_one(engine)  # a prediction logged before reasons existed
    columns = {c["name"] for c in sa.inspect(engine).get_columns("predictions")}
    assert not columns & {"reasons", "inputs"}

    migrate.upgrade(engine)

    assert _differences(engine) == []
    with engine.begin() as connection:
        declined = _prediction("p-2", decision="decline", reasons='[{"code": "R01"}]', inputs='{"PAY_0": 3}')
        connection.execute(sa.insert(schema.predictions).values(**declined))
        rows = connection.execute(
            sa.select(schema.predictions.c.prediction_id, schema.predictions.c.reasons).order_by("prediction_id")
        ).all()
    assert [tuple(r) for r in rows] == [("p-1", None), ("p-2", '[{"code": "R01"}]')]
    migrate.downgrade(engine, migrate.BASELINE)  # and back: the columns go, the rows stay
    assert not {c["name"] for c in sa.inspect(engine).get_columns("predictions")} & {"reasons", "inputs"}
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM predictions")).scalar() == 2


def test_served_prediction_id_is_added_to_a_log_at_0002_and_its_rows_kept(engine: Engine) -> None:
    migrate.upgrade(engine, "0002")
    with engine.begin() as connection:  # an answer logged before shadows existed
        connection.execute(sa.insert(schema.predictions).values(**_prediction("p-1", reasons="[]", inputs="{}")))
    assert "served_prediction_id" not in {c["name"] for c in sa.inspect(engine).get_columns("predictions")}

    migrate.upgrade(engine)

    assert migrate.current_revision(engine) == "0003" and _differences(engine) == []
    indexes = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("predictions")}
    assert indexes["ix_predictions_served_prediction_id"] == ["served_prediction_id"]
    with engine.begin() as connection:
        shadow = _prediction("p-2", model_version="v2", role="shadow", served_prediction_id="p-1")
        connection.execute(sa.insert(schema.predictions).values(**shadow))
        rows = connection.execute(
            sa.select(schema.predictions.c.prediction_id, schema.predictions.c.served_prediction_id).order_by(
                "prediction_id"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("p-1", None), ("p-2", "p-1")]
    migrate.downgrade(engine, "0002")  # and back: the column and its index go, the rows stay
    assert "served_prediction_id" not in {c["name"] for c in sa.inspect(engine).get_columns("predictions")}
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM predictions")).scalar() == 2


def test_downgrade_and_upgrade_round_trip(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert not _tables(engine) & {"predictions", "feedback"}
    assert migrate.current_revision(engine) is None

    migrate.upgrade(engine)

    assert migrate.current_revision(engine) == migrate.head_revision()
    assert _differences(engine) == []
    _log_one(engine)


def test_tables_of_something_else_are_not_taken_for_an_inference_log(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE predictions (id INTEGER PRIMARY KEY, label VARCHAR(8))"))
    with pytest.raises(migrate.SchemaNotCurrent, match=r"table 'predictions' lacks column\(s\) \['application_id'"):
        migrate.upgrade(engine)
    assert VERSION_TABLE not in _tables(engine)  # nothing stamped, nothing half-applied


def test_the_command_line_checks_and_upgrades(url: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        module = "platform_assets.core.inference_log.migrate"
        return subprocess.run(
            [sys.executable, "-m", module, *args, "--url", url], capture_output=True, text=True, timeout=120
        )

    check = run("check")
    assert check.returncode == 1 and migrate.COMMAND in check.stdout, check.stdout + check.stderr
    upgrade = run("upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.strip() == f"inference log at revision {migrate.head_revision()}"
    assert run("check").returncode == 0
    assert run("current").stdout.strip() == migrate.head_revision()
