"""The inference log's tables, the field order of a prediction row, id and time formats, and the store.

The tables here are what the code reads and writes; the database gets them from the Alembic revisions that
``migrate`` runs (a test checks that both agree).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("prediction_id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),
    sa.Column("model_version", sa.String(64), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("application_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("sex", sa.Integer),
    sa.Column("education", sa.Integer),
    sa.Column("marriage", sa.Integer),
    sa.Column("age", sa.Integer),
    # Adverse-action reasons of an explained row (every decline; approvals when asked): the JSON list of
    # ml.reason_codes dicts the response carried. NULL when the row was not explained. (Revision 0002.)
    sa.Column("reasons", sa.Text),
    # The raw application fields of an explained row (JSON object, schema.FEATURE_COLUMNS -> whole number),
    # so its reasons can be recomputed offline; with the protected columns above, all the model read.
    sa.Column("inputs", sa.Text),
    # A shadow row (role "shadow"): the prediction that answered its application, whose outcome labels it too.
    # NULL on the rows that answered. (Revision 0003.)
    sa.Column("served_prediction_id", sa.String(64), index=True),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime, nullable=False, index=True),
    # The prediction the outcome belongs to: as sent, or the latest answer (not a shadow row) for the application ID.
    sa.Column("prediction_id", sa.String(64), index=True),
    sa.Column("application_id", sa.BigInteger, index=True),
    sa.Column("defaulted", sa.Integer, nullable=False),
    sa.Column("known", sa.Boolean, nullable=False),
)

PROTECTED_LOG_COLUMNS = {"SEX": "sex", "EDUCATION": "education", "MARRIAGE": "marriage", "AGE": "age"}
#: The fields of a prediction row handed to ``InferenceLog.log_rows``, in this order (``created_at``
#: is given once per call).
ROW_COLUMNS = tuple(c.name for c in predictions.columns if c.name != "created_at")
FLOAT_COLUMNS = frozenset(c.name for c in predictions.columns if isinstance(c.type, sa.Float))


def new_prediction_ids(n: int) -> list[str]:
    """``n`` UUIDv7 strings (RFC 9562): the current Unix time in ms, then 74 random bits.

    Time-ordered ids keep the log's primary-key index append-only; random (v4) ids made every insert
    land on a random page and doubled the writer's cost on a growing log.
    """
    stamp = f"{time.time_ns() // 1_000_000:012x}"
    head = f"{stamp[:8]}-{stamp[8:]}-7"
    entropy = os.urandom(10 * n).hex()  # 20 hex digits per id: 3 + 1 (2 bits used) + 3 + 12 + 1 spare
    return [
        f"{head}{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:19]}" for r in (entropy[20 * i : 20 * i + 20] for i in range(n))
    ]


#: The RFC 4122 variant (binary 10) in the top bits of the 4th group's first digit, two random bits below.
_VARIANT = {f"{d:x}": f"{0x8 | (d & 0x3):x}" for d in range(16)}


def utcnow() -> datetime:
    """Naive UTC (what every SQL backend stores the same way)."""
    return datetime.now(UTC).replace(tzinfo=None)


def inference_db_under(platform_home: Path) -> str:
    """The inference log's SQLAlchemy URL when none is configured: SQLite under the platform home."""
    return f"sqlite:///{platform_home / 'serving' / 'inference_log.db'}"


#: Seconds a PostgreSQL connection attempt may take before it fails.
CONNECT_TIMEOUT_SECONDS = 10


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for PostgreSQL with a connect timeout; for SQLite: the folder created, WAL
    journal, full fsync, a busy timeout."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("postgresql"):
        # A host that drops packets would otherwise hold a connect (and whoever waits on it) for minutes.
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine
