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

from platform_assets.core.inference_log.schema import feedback, make_engine, predictions


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
