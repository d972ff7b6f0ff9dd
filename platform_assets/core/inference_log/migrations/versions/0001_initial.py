"""The inference log as the service created it before Alembic: ``predictions`` and ``feedback``.

A revision is a frozen copy of the tables at its time, never an import of ``schema.py``'s (which move on).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("application_id", sa.BigInteger, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("sex", sa.Integer),
        sa.Column("education", sa.Integer),
        sa.Column("marriage", sa.Integer),
        sa.Column("age", sa.Integer),
    )
    for column in ("created_at", "model_version", "application_id"):
        op.create_index(f"ix_predictions_{column}", "predictions", [column])
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("prediction_id", sa.String(64)),
        sa.Column("application_id", sa.BigInteger),
        sa.Column("defaulted", sa.Integer, nullable=False),
        sa.Column("known", sa.Boolean, nullable=False),
    )
    for column in ("received_at", "prediction_id", "application_id"):
        op.create_index(f"ix_feedback_{column}", "feedback", [column])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("predictions")
