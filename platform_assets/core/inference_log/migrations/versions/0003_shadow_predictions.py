"""Shadow predictions: a shadow row names the prediction that answered its application (``served_prediction_id``),
so the outcome reported for that answer labels the shadow's score too. Nullable and indexed: the rows that
answered, and the rows before this revision, have none.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("served_prediction_id", sa.String(64)))
    op.create_index("ix_predictions_served_prediction_id", "predictions", ["served_prediction_id"])


def downgrade() -> None:
    op.drop_index("ix_predictions_served_prediction_id", "predictions")
    # A batch operation: SQLite rebuilds the table where it cannot drop a column in place.
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("served_prediction_id")
