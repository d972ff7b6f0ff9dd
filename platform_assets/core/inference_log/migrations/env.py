"""Alembic's environment for the inference log: always online, on the connection ``migrate`` hands over."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from platform_assets.core.inference_log.migrate import VERSION_TABLE
from platform_assets.core.inference_log.schema import metadata


def run() -> None:
    connection: sa.Connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():  # ``migrate`` holds the transaction (and its lock) already
        context.run_migrations()


if hasattr(context, "config"):  # run by Alembic; merely imported (e.g. a packaging check), it does nothing
    run()
