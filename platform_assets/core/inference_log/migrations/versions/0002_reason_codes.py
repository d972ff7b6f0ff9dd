"""Adverse-action reasons: each explained prediction's ``reasons`` (JSON list) and the raw ``inputs`` (JSON object)
they were computed from, so they can be recomputed offline. Both nullable: rows before this revision, and
approvals that did not ask for reasons, have none.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("reasons", sa.Text))
    op.add_column("predictions", sa.Column("inputs", sa.Text))


def downgrade() -> None:
    # A batch operation: SQLite rebuilds the table where it cannot drop a column in place.
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("inputs")
        batch.drop_column("reasons")
