"""Queries of the inference log, for monitoring, audit and retention.

``source`` is the log's SQLAlchemy URL or an engine on it (``schema.make_engine``); times are UTC,
windows are ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from platform_assets.core.inference_log.schema import PROTECTED_LOG_COLUMNS, feedback, make_engine, predictions
from platform_assets.core.observability import SHADOW_ROLE


def _engine(source: str | Engine) -> Engine:
    return source if isinstance(source, Engine) else make_engine(source)


def _window(query: Any, column: Any, start: datetime | None, end: datetime | None) -> Any:
    if start is not None:
        query = query.where(column >= _naive_utc(start))
    if end is not None:
        query = query.where(column < _naive_utc(end))
    return query


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _latest_outcome(prediction_id: Any, correlate: Any) -> Any:
    """The ``feedback_id`` of the latest outcome of ``prediction_id`` (a column of ``correlate``), looked up per row
    by an index search. A join of all outcomes on an expression can use no index: SQLite then scanned every
    outcome for every prediction, quadratic in the log's size (25 s for 16,000 predictions)."""
    outcomes = feedback.alias("outcomes")
    return (
        sa.select(sa.func.max(outcomes.c.feedback_id))
        .where(outcomes.c.prediction_id == prediction_id)
        .correlate(correlate)
        .scalar_subquery()
    )


def predictions_query(
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    model_versions: Iterable[str] | None = None,
    labelled_only: bool = False,
) -> Any:
    """The SELECT of ``read_predictions``: each prediction with its latest outcome."""
    # The outcome belongs to the application that was answered: a shadow row takes its answer's.
    labelled_by = sa.func.coalesce(predictions.c.served_prediction_id, predictions.c.prediction_id)
    latest = _latest_outcome(labelled_by, predictions)
    join = (predictions.join if labelled_only else predictions.outerjoin)(feedback, feedback.c.feedback_id == latest)
    query = sa.select(*predictions.c, feedback.c.defaulted, feedback.c.received_at.label("feedback_at"))
    query = _window(query.select_from(join), predictions.c.created_at, start, end)
    if model_versions is not None:
        query = query.where(predictions.c.model_version.in_(list(model_versions)))
    return query.order_by(predictions.c.created_at)


def read_predictions(
    source: str | Engine,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    model_versions: Iterable[str] | None = None,
    labelled_only: bool = False,
) -> pd.DataFrame:
    """Predictions made in ``[start, end)`` (UTC), joined with their latest outcome.

    One row per prediction with the ``predictions`` columns plus ``defaulted`` (nullable 0/1) and
    ``feedback_at``; ``labelled_only`` keeps the rows that have an outcome. A shadow row (role ``shadow``) has
    the outcome of the prediction that answered its application (``served_prediction_id``).
    """
    engine = _engine(source)
    query = predictions_query(start=start, end=end, model_versions=model_versions, labelled_only=labelled_only)
    with engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all())
    if frame.empty:
        frame = pd.DataFrame(columns=[*predictions.c.keys(), "defaulted", "feedback_at"])
    frame["defaulted"] = frame["defaulted"].astype("Int64")
    return frame


#: The columns of ``read_shadow_pairs``, in order.
SHADOW_PAIR_COLUMNS = (
    "application_id",
    "served_prediction_id",
    "served_model_version",
    "served_role",
    "served_probability",
    "served_threshold",
    "served_decision",
    "shadow_prediction_id",
    "shadow_model_version",
    "shadow_probability",
    "shadow_threshold",
    "shadow_decision",
    *PROTECTED_LOG_COLUMNS.values(),
    "defaulted",
    "feedback_at",
    "served_at",
    "created_at",
)


def shadow_pairs_query(shadow_version: str, start: datetime | None = None, end: datetime | None = None) -> Any:
    """The SELECT of ``read_shadow_pairs``: each shadow prediction beside its answer and the answer's outcome."""
    shadow = predictions.alias("shadow")
    served = predictions.alias("served")
    join = shadow.join(served, served.c.prediction_id == shadow.c.served_prediction_id).outerjoin(
        feedback, feedback.c.feedback_id == _latest_outcome(served.c.prediction_id, served)
    )
    query = (
        sa.select(
            served.c.application_id,
            served.c.prediction_id.label("served_prediction_id"),
            served.c.model_version.label("served_model_version"),
            served.c.role.label("served_role"),
            served.c.probability.label("served_probability"),
            served.c.threshold.label("served_threshold"),
            served.c.decision.label("served_decision"),
            shadow.c.prediction_id.label("shadow_prediction_id"),
            shadow.c.model_version.label("shadow_model_version"),
            shadow.c.probability.label("shadow_probability"),
            shadow.c.threshold.label("shadow_threshold"),
            shadow.c.decision.label("shadow_decision"),
            *(served.c[column] for column in PROTECTED_LOG_COLUMNS.values()),
            feedback.c.defaulted,
            feedback.c.received_at.label("feedback_at"),
            served.c.created_at.label("served_at"),
            shadow.c.created_at,
        )
        .select_from(join)
        .where(shadow.c.role == SHADOW_ROLE, shadow.c.model_version == shadow_version)
    )
    return _window(query, shadow.c.created_at, start, end).order_by(shadow.c.created_at)


def read_shadow_pairs(
    source: str | Engine, shadow_version: str, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Each prediction ``shadow_version`` made as the shadow in ``[start, end)`` (UTC, by the shadow row's
    ``created_at``) beside the prediction that answered the same application: one row per shadow prediction,
    ``SHADOW_PAIR_COLUMNS`` (probabilities of default, decisions at each model's own threshold, the protected
    values sent, the answer's latest outcome ``defaulted`` as nullable 0/1, ``served_at`` when it answered and
    ``created_at`` when the shadow scored). A shadow row whose answer is no longer in the log is left out.
    """
    engine = _engine(source)
    with engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(shadow_pairs_query(shadow_version, start, end)).mappings().all())
    frame = frame.reindex(columns=list(SHADOW_PAIR_COLUMNS))
    frame["defaulted"] = frame["defaulted"].astype("Int64")
    return frame


def read_feedback(source: str | Engine, *, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
    """Every outcome received in ``[start, end)``, known or not."""
    engine = _engine(source)
    query = _window(sa.select(feedback), feedback.c.received_at, start, end).order_by(feedback.c.feedback_id)
    with engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all())
    return frame if not frame.empty else pd.DataFrame(columns=feedback.c.keys())


def summary_by_version(
    source: str | Engine, *, start: datetime | None = None, end: datetime | None = None
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
