"""The inference log: every prediction and every outcome (feedback), in a SQL store monitoring can read.

SQLite in WAL mode under ``$PLATFORM_HOME/serving/inference_log.db`` by default, any SQLAlchemy URL by
``CREDIT_RISK_INFERENCE_DB``. Predictions are written by a background thread in batches (the request
only enqueues them) and flushed on shutdown; feedback is written synchronously, so the service
acknowledges an outcome only once it is committed. Times are UTC.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

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
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime, nullable=False, index=True),
    # The prediction the outcome belongs to: as sent, or the latest prediction for the application ID.
    sa.Column("prediction_id", sa.String(64), index=True),
    sa.Column("application_id", sa.BigInteger, index=True),
    sa.Column("defaulted", sa.Integer, nullable=False),
    sa.Column("known", sa.Boolean, nullable=False),
)

PROTECTED_LOG_COLUMNS = {"SEX": "sex", "EDUCATION": "education", "MARRIAGE": "marriage", "AGE": "age"}
#: The fields of a prediction row handed to ``InferenceLog.log_rows``, in this order (``created_at``
#: is given once per call).
ROW_COLUMNS = tuple(c.name for c in predictions.columns if c.name != "created_at")
_FLOAT_COLUMNS = frozenset(c.name for c in predictions.columns if isinstance(c.type, sa.Float))


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


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite: the folder created, WAL journal, full fsync, a busy timeout."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
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


def create_tables(engine: Engine) -> None:
    """Create the tables if missing; tolerate another worker creating them at the same moment."""
    for attempt in range(3):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except sa.exc.OperationalError:
            if attempt == 2:
                raise
            time.sleep(0.2)


@dataclass(frozen=True)
class FeedbackResult:
    feedback_id: int
    prediction_id: str | None
    application_id: int | None
    known: bool


class _Insert:
    """Inserts prediction tuples; on SQLite with one DB-API ``executemany``.

    SQLAlchemy's Core ``insert()`` with a list of dicts still processes every row in Python, which
    cost the service as much CPU as SQLite's own work. For SQLite (in process: ``executemany`` is a C
    loop) the statement is built once, ``created_at`` is converted once per batch by the column type's
    own bind processor (so it is stored exactly as SQLAlchemy would store it and reads back the same),
    and the tuples go to the driver as they are. Server databases keep SQLAlchemy's insert, whose
    "insertmanyvalues" batching saves the round trip per row that a plain ``executemany`` would pay.
    """

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        self._columns = (*ROW_COLUMNS, "created_at")
        placeholder = "?" if dialect.name == "sqlite" and dialect.paramstyle == "qmark" else None
        self._sql = None
        if placeholder is not None:
            preparer = dialect.identifier_preparer
            names = ", ".join(preparer.quote(c) for c in self._columns)
            values = ", ".join([placeholder] * len(self._columns))
            self._sql = f"INSERT INTO {preparer.quote(predictions.name)} ({names}) VALUES ({values})"
        column_type = predictions.c.created_at.type
        self._time = column_type.dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)
        # Every other column holds a str, int, float or None that the driver takes as it is (the service
        # passes Python floats, for which a Float column's processor is the identity).
        self._plain = all(
            c.type.dialect_impl(dialect).bind_processor(dialect) is None
            for c in predictions.columns
            if c.name != "created_at" and not isinstance(c.type, sa.Float)
        )

    def __call__(self, connection: sa.Connection, batches: list[tuple[datetime, list[tuple[Any, ...]]]]) -> None:
        if self._sql is not None and self._plain:
            rows = []
            for created_at, batch in batches:
                stamp = (self._time(created_at),)
                rows += [row + stamp for row in batch]
            connection.exec_driver_sql(self._sql, rows)
            return
        records = [
            {**dict(zip(ROW_COLUMNS, row, strict=True)), "created_at": created_at}
            for created_at, batch in batches
            for row in batch
        ]
        connection.execute(predictions.insert(), records)


class InferenceLog:
    """Writes predictions in the background and feedback synchronously to one SQL store."""

    def __init__(
        self, url: str, *, batch_size: int = 2000, linger_seconds: float = 0.05, max_pending: int = 1_000_000
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
        create_tables(self.engine)
        self._batch_size = batch_size
        self._linger = linger_seconds  # gather a busy service's predictions into fewer transactions
        self._flush_requested = threading.Event()
        self._max_pending = max_pending
        self._queue: queue.SimpleQueue[tuple[datetime, list[tuple[Any, ...]]] | None] = queue.SimpleQueue()
        self._insert = _Insert(self.engine)
        self._cond = threading.Condition()
        self._enqueued = 0  # batches
        self._written = 0
        self._pending_rows = 0
        self.dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()

    # -- predictions: off the request path ------------------------------------------------------
    def log_predictions(self, records: list[dict[str, Any]]) -> None:
        """Enqueue prediction rows given as dicts with the ``predictions`` columns (``created_at`` may
        differ per row); never blocks on the DB."""
        by_time: dict[datetime, list[tuple[Any, ...]]] = {}
        for record in records:
            row = tuple(
                float(record[c]) if c in _FLOAT_COLUMNS and record.get(c) is not None else record.get(c)
                for c in ROW_COLUMNS
            )
            by_time.setdefault(record["created_at"], []).append(row)
        for created_at, rows in by_time.items():
            self.log_rows(created_at, rows)

    def log_rows(self, created_at: datetime, rows: list[tuple[Any, ...]]) -> None:
        """Enqueue predictions made at ``created_at``: one tuple per prediction with the ``ROW_COLUMNS``
        fields in that order (the service's path: no per-row dicts). Never blocks on the DB."""
        if not rows:
            return
        with self._cond:
            if self._closed:
                raise RuntimeError("the inference log is closed")
            if self._pending_rows + len(rows) > self._max_pending:
                self.dropped += len(rows)
                logger.error("inference log backlog full (%d rows): dropped %d rows", self._pending_rows, len(rows))
                return
            self._pending_rows += len(rows)
            self._enqueued += 1
        self._queue.put((created_at, rows))

    @property
    def pending(self) -> int:
        """Predictions queued and not yet committed (this process)."""
        with self._cond:
            return self._pending_rows

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every prediction enqueued before this call is committed; False on timeout."""
        with self._cond:
            target = self._enqueued
            if self._written >= target:
                return True
            self._flush_requested.set()
            return self._cond.wait_for(lambda: self._written >= target, timeout=timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batches = [item]
            rows = len(item[1])
            stop = False
            deadline = time.monotonic() + self._linger
            while rows < self._batch_size:
                wait = deadline - time.monotonic()
                try:
                    if wait <= 0 or self._flush_requested.is_set():
                        more = self._queue.get_nowait()
                    else:
                        more = self._queue.get(timeout=min(wait, 0.01))
                except queue.Empty:
                    if wait <= 0 or self._flush_requested.is_set():
                        break
                    continue
                if more is None:
                    stop = True
                    break
                batches.append(more)
                rows += len(more[1])
            self._write(batches, rows)
            with self._cond:
                self._written += len(batches)
                self._pending_rows -= rows
                if self._written >= self._enqueued:
                    self._flush_requested.clear()
                self._cond.notify_all()
            if stop:
                return

    def _write(self, batches: list[tuple[datetime, list[tuple[Any, ...]]]], rows: int) -> None:
        for attempt in range(5):
            try:
                with self.engine.begin() as connection:
                    self._insert(connection, batches)
                return
            except sa.exc.SQLAlchemyError as exc:
                logger.warning("writing %d predictions failed (attempt %d): %s", rows, attempt + 1, exc)
                time.sleep(0.2 * 2**attempt)
        self.dropped += rows
        logger.error("dropped %d predictions after 5 failed writes", rows)

    # -- feedback: synchronous ------------------------------------------------------------------
    def record_feedback(self, items: Sequence[dict[str, Any]]) -> list[FeedbackResult]:
        """Store outcomes (keys ``prediction_id`` and/or ``application_id``, ``defaulted``) and commit.

        Predictions still queued are flushed first so that an outcome for a prediction made a moment
        ago is matched. Unknown IDs are stored with ``known = False``.
        """
        self.flush()
        now = utcnow()
        out: list[FeedbackResult] = []
        with self.engine.begin() as connection:
            for item in items:
                prediction_id = item.get("prediction_id")
                application_id = item.get("application_id")
                known = False
                if prediction_id is not None:
                    found = connection.execute(
                        sa.select(predictions.c.application_id).where(predictions.c.prediction_id == prediction_id)
                    ).first()
                    if found is not None:
                        known = True
                        application_id = application_id if application_id is not None else int(found[0])
                elif application_id is not None:
                    latest = connection.execute(
                        sa.select(predictions.c.prediction_id)
                        .where(predictions.c.application_id == application_id)
                        .order_by(predictions.c.created_at.desc())
                        .limit(1)
                    ).first()
                    if latest is not None:
                        known = True
                        prediction_id = latest[0]
                result = connection.execute(
                    feedback.insert().values(
                        received_at=now,
                        prediction_id=prediction_id,
                        application_id=application_id,
                        defaulted=int(item["defaulted"]),
                        known=known,
                    )
                )
                (feedback_id,) = result.inserted_primary_key or (0,)
                out.append(FeedbackResult(int(feedback_id), prediction_id, application_id, known))
        return out

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued, then stop the writer."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("inference log writer did not finish within %.0f s", timeout)
        self.engine.dispose()


# -- reading, for the monitoring assets -----------------------------------------------------------
def _engine(source: str | Engine | None) -> Engine:
    if isinstance(source, Engine):
        return source
    from platform_assets.serving.config import default_inference_db

    return make_engine(source or default_inference_db())


def _window(query: Any, column: Any, start: datetime | None, end: datetime | None) -> Any:
    if start is not None:
        query = query.where(column >= _naive_utc(start))
    if end is not None:
        query = query.where(column < _naive_utc(end))
    return query


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def read_predictions(
    source: str | Engine | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    model_versions: Iterable[str] | None = None,
    labelled_only: bool = False,
) -> pd.DataFrame:
    """Predictions made in ``[start, end)`` (UTC), joined with their latest outcome.

    One row per prediction with the ``predictions`` columns plus ``defaulted`` (nullable 0/1) and
    ``feedback_at``; ``labelled_only`` keeps the rows that have an outcome.
    """
    engine = _engine(source)
    latest = (
        sa.select(feedback.c.prediction_id, sa.func.max(feedback.c.feedback_id).label("feedback_id"))
        .where(feedback.c.prediction_id.is_not(None))
        .group_by(feedback.c.prediction_id)
        .subquery()
    )
    outcome = (
        sa.select(feedback.c.prediction_id, feedback.c.defaulted, feedback.c.received_at.label("feedback_at"))
        .join(latest, latest.c.feedback_id == feedback.c.feedback_id)
        .subquery()
    )
    join = predictions.outerjoin(outcome, outcome.c.prediction_id == predictions.c.prediction_id)
    if labelled_only:
        join = predictions.join(outcome, outcome.c.prediction_id == predictions.c.prediction_id)
    query = sa.select(*predictions.c, outcome.c.defaulted, outcome.c.feedback_at).select_from(join)
    query = _window(query, predictions.c.created_at, start, end)
    if model_versions is not None:
        query = query.where(predictions.c.model_version.in_(list(model_versions)))
    with engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query.order_by(predictions.c.created_at)).mappings().all())
    if frame.empty:
        frame = pd.DataFrame(columns=[*predictions.c.keys(), "defaulted", "feedback_at"])
    frame["defaulted"] = frame["defaulted"].astype("Int64")
    return frame


def read_feedback(
    source: str | Engine | None = None, *, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Every outcome received in ``[start, end)``, known or not."""
    engine = _engine(source)
    query = _window(sa.select(feedback), feedback.c.received_at, start, end).order_by(feedback.c.feedback_id)
    with engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all())
    return frame if not frame.empty else pd.DataFrame(columns=feedback.c.keys())


def summary_by_version(
    source: str | Engine | None = None, *, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Per model version and role: predictions, decline rate, mean score, labelled outcomes, default rate."""
    frame = read_predictions(source, start=start, end=end)
    columns = ["model_version", "role", "predictions", "decline_rate", "mean_probability", "labelled", "default_rate"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["declined"] = (frame["decision"] == "decline").astype(float)
    grouped = frame.groupby(["model_version", "role"], sort=True)
    out = grouped.agg(
        predictions=("prediction_id", "size"),
        decline_rate=("declined", "mean"),
        mean_probability=("probability", "mean"),
        labelled=("defaulted", "count"),
        default_rate=("defaulted", lambda s: float(s.dropna().mean()) if s.notna().any() else float("nan")),
    )
    return out.reset_index()[columns]
