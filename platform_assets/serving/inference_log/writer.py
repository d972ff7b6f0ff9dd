"""The service's inference-log writer: predictions in batches off the request path, feedback synchronously."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pydantic_core
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from platform_assets.core.inference_log import migrate
from platform_assets.core.inference_log.schema import (
    FLOAT_COLUMNS,
    ROW_COLUMNS,
    feedback,
    make_engine,
    predictions,
    utcnow,
)
from platform_assets.core.observability import SHADOW_ROLE
from platform_assets.ml import schema
from platform_assets.serving.payloads import MATRIX_COLUMNS

logger = logging.getLogger(__name__)

#: Longest wait between two tries of a prediction write while the database is away (seconds).
MAX_BACKOFF_SECONDS = 2.0
#: Tries left for a write still failing when the writer closes (the service is stopping).
CLOSING_ATTEMPTS = 3


@dataclass(frozen=True)
class FeedbackResult:
    feedback_id: int
    prediction_id: str | None
    application_id: int | None
    known: bool


_FEATURE_POSITIONS = [MATRIX_COLUMNS.index(c) for c in schema.FEATURE_COLUMNS]


def explained_log_fields(
    matrix: np.ndarray, reasons: list[list[dict[str, Any]] | None]
) -> tuple[list[str | None], list[str | None]]:
    """The ``reasons`` and ``inputs`` fields of each prediction row (``core.inference_log.schema``): JSON texts for
    the rows that were explained, ``None`` for the others. ``matrix`` holds the request's rows in
    ``payloads.MATRIX_COLUMNS`` order."""
    texts: list[str | None] = [None] * len(reasons)
    inputs: list[str | None] = [None] * len(reasons)
    for row, row_reasons in enumerate(reasons):
        if row_reasons is not None:
            texts[row] = pydantic_core.to_json(row_reasons).decode()
            values = matrix[row, _FEATURE_POSITIONS].astype("int64").tolist()
            inputs[row] = pydantic_core.to_json(dict(zip(schema.FEATURE_COLUMNS, values, strict=True))).decode()
    return texts, inputs


def _as_is(value: Any) -> Any:
    return value


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
        self._time: Callable[[Any], Any] = column_type.dialect_impl(dialect).bind_processor(dialect) or _as_is
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
    """Writes predictions in the background and feedback synchronously to one SQL store.

    Opening it never waits for the database: the writer thread first makes sure the schema is usable
    (``migrate.prepare``: an embedded SQLite file is upgraded, a server database must already be at the head
    revision) and retries every ``retry_seconds`` until it is; until then ``problem`` says why it is not
    ``ready``, predictions wait in the queue and feedback is refused.
    """

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 2000,
        linger_seconds: float = 0.05,
        max_pending: int = 1_000_000,
        retry_seconds: float = 2.0,
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._migrate = migrate.owns_schema(url)
        self._retry_seconds = retry_seconds
        self._schema_checked = threading.Event()
        self._first_check = threading.Event()  # set once the first attempt has an answer, either way
        self.problem: str | None = "the inference log's schema has not been checked yet"
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
        #: Failed write attempts that a later try made good (a database restart shows here, not in ``dropped``).
        self.write_retries = 0
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
                float(record[c]) if c in FLOAT_COLUMNS and record.get(c) is not None else record.get(c)
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

    @property
    def ready(self) -> bool:
        """Whether the database answers and its schema is the head revision (or was upgraded to it)."""
        return self._schema_checked.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``ready``."""
        return self._schema_checked.wait(timeout)

    def _check_schema(self) -> None:
        """Until the schema is usable or the log is closed: try, record why not, wait ``retry_seconds``."""
        url = self.engine.url.render_as_string(hide_password=True)
        while True:
            try:
                migrate.prepare(self.engine, migrate=self._migrate)
            except migrate.SchemaNotCurrent as exc:
                self.problem = str(exc)
            except sa.exc.SQLAlchemyError as exc:
                cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                self.problem = f"the inference log {url} is unreachable: {type(exc).__name__}: {cause}"
            else:
                self.problem = None
                self._schema_checked.set()
                self._first_check.set()
                logger.info("inference log %s ready (revision %s)", url, migrate.head_revision())
                return
            self._first_check.set()
            logger.error("%s; retrying in %g s", self.problem, self._retry_seconds)
            with self._cond:
                if self._closed or self._cond.wait_for(lambda: self._closed, timeout=self._retry_seconds):
                    return

    def _run(self) -> None:
        self._check_schema()
        if not self.ready:  # closed before the database was usable: what is queued cannot be written
            with self._cond:
                if self._pending_rows:
                    self.dropped += self._pending_rows
                    logger.error(
                        "inference log never became ready (%s): dropped %d rows", self.problem, self._pending_rows
                    )
                self._pending_rows = 0
                self._written = self._enqueued
                self._cond.notify_all()
            return
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
        """Write one gathered batch, retrying (backoff up to ``MAX_BACKOFF_SECONDS``) for as long as the
        database is away: a restart or failover loses nothing. Meanwhile new predictions queue up to
        ``max_pending`` rows (beyond that they are counted in ``dropped``). Only a closing writer gives up,
        after ``CLOSING_ATTEMPTS`` more tries, and counts the rows it could not write."""
        attempt, closing_attempts = 0, 0
        while True:
            try:
                with self.engine.begin() as connection:
                    self._insert(connection, batches)
                if attempt:
                    logger.warning("wrote %d predictions after %d failed attempt(s)", rows, attempt)
                    self.write_retries += attempt
                return
            except sa.exc.SQLAlchemyError as exc:
                attempt += 1
                if self._closed:
                    closing_attempts += 1
                    if closing_attempts > CLOSING_ATTEMPTS:
                        break
                if attempt == 1 or attempt % 10 == 0:
                    logger.warning("writing %d predictions failed (attempt %d), retrying: %s", rows, attempt, exc)
                time.sleep(min(0.2 * 2 ** min(attempt - 1, 10), MAX_BACKOFF_SECONDS))
        self.dropped += rows
        logger.error("closing with the database unreachable: dropped %d predictions", rows)

    # -- feedback: synchronous ------------------------------------------------------------------
    def record_feedback(self, items: Sequence[dict[str, Any]]) -> list[FeedbackResult]:
        """Store outcomes (keys ``prediction_id`` and/or ``application_id``, ``defaulted``) and commit.

        Predictions still queued are flushed first so that an outcome for a prediction made a moment
        ago is matched. Unknown IDs are stored with ``known = False``. Raises ``SchemaNotCurrent`` (with
        ``problem``) while the log is not ready.
        """
        self._first_check.wait(timeout=30)  # a log opened a moment ago: its first check is under way
        if not self.ready:
            raise migrate.SchemaNotCurrent(self.problem or "the inference log is not ready")
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
                    latest = connection.execute(  # the latest answer: a shadow's score answered nobody
                        sa.select(predictions.c.prediction_id)
                        .where(predictions.c.application_id == application_id, predictions.c.role != SHADOW_ROLE)
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
            self._cond.notify_all()  # a writer still waiting for the database gives up
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("inference log writer did not finish within %.0f s", timeout)
        self.engine.dispose()
