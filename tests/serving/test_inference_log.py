"""The inference log without a server: the writer's batching and fast path, the reader's queries, the ids."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from platform_assets.core.inference_log import reader, schema
from platform_assets.serving.inference_log import writer


def test_inference_log_round_trip(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = writer.InferenceLog(url, batch_size=2)
    now = schema.utcnow()
    records = [
        {
            "prediction_id": f"p{i}",
            "created_at": now,
            "model_version": "v1" if i < 3 else "v2",
            "role": "champion" if i < 3 else "challenger",
            "application_id": 100 + i,
            "probability": 0.1 * i,
            "threshold": 0.25,
            "decision": "decline" if 0.1 * i >= 0.25 else "approve",
            "sex": 2 if i == 0 else None,
            "education": None,
            "marriage": None,
            "age": 30,
        }
        for i in range(5)
    ]
    log.log_predictions(records[:3])
    log.log_predictions(records[3:])
    results = log.record_feedback(
        [
            {"prediction_id": "p1", "application_id": None, "defaulted": 1},
            {"prediction_id": None, "application_id": 104, "defaulted": 0},
            {"prediction_id": "missing", "application_id": None, "defaulted": 1},
            {"prediction_id": None, "application_id": 999, "defaulted": 0},
        ]
    )
    assert [r.known for r in results] == [True, True, False, False]
    assert results[1].prediction_id == "p4"
    log.close()

    frame = reader.read_predictions(url, start=now - timedelta(minutes=1), end=now + timedelta(minutes=1))
    assert len(frame) == 5 and frame.set_index("prediction_id")["defaulted"].to_dict()["p1"] == 1
    labelled = reader.read_predictions(url, labelled_only=True, model_versions=["v2"])
    assert labelled["prediction_id"].tolist() == ["p4"]
    assert len(reader.read_feedback(url)) == 4
    summary = reader.summary_by_version(url).set_index("model_version")
    assert summary.loc["v1", "predictions"] == 3 and summary.loc["v2", "labelled"] == 1
    assert reader.read_predictions(url, start=now + timedelta(days=1)).empty


def test_prediction_ids_are_unique_time_ordered_uuid7() -> None:
    import time
    import uuid

    first = schema.new_prediction_ids(2000)
    time.sleep(0.002)
    later = schema.new_prediction_ids(1)[0]
    parsed = [uuid.UUID(i) for i in first]
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert len(set(first)) == 2000 and all(str(u) == i for u, i in zip(parsed, first, strict=True))
    millis = {u.int >> 80 for u in parsed}
    assert len(millis) == 1 and abs(millis.pop() - time.time_ns() // 1_000_000) < 5_000
    assert all(later[:13] > i[:13] for i in first), "a later id sorts after earlier ones (ms prefix)"


@pytest.mark.parametrize("paramstyle", [None, "named"])
def test_inference_log_rows_store_exactly_what_sqlalchemy_reads_back(tmp_path: Path, paramstyle: str | None) -> None:
    """The positional fast path and SQLAlchemy's own insert (taken for named paramstyles) store the same."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = writer.InferenceLog(url)
    if paramstyle is not None:  # the same store through a dialect the fast path does not handle
        log.close()
        engine = sa.create_engine(url, paramstyle=paramstyle)
        log = writer.InferenceLog(url)
        log._insert = writer._Insert(engine)
        assert log._insert._sql is None
    else:
        assert log._insert._sql is not None
    created = schema.utcnow().replace(microsecond=0)  # str() of such a time drops the fraction
    ids = schema.new_prediction_ids(4)
    reasons = (
        '[{"code":"R01","text":"Payment delayed","contribution":0.2,"fields":{"PAY_0":3},"reference":{"PAY_0":0}}]'
    )
    rows = [
        (ids[0], "v1", "champion", 11, 0.125, 0.5, "approve", 2, 1, 2, 40, None, None, None),
        (ids[1], "v2", "challenger", 2**40, 0.75, 0.5, "decline", None, None, None, None, reasons, '{"PAY_0":3}', None),
        (ids[2], "v1", "champion", 13, 1.0, 0.5, "decline", 1, None, 3, None, "[]", '{"PAY_0":0}', None),
        (ids[3], "v3", "shadow", 11, 0.625, 0.4, "decline", 2, 1, 2, 40, None, None, ids[0]),
    ]
    log.log_rows(created, rows)
    log.close()
    frame = reader.read_predictions(url).set_index("prediction_id")
    assert len(frame) == 4
    for row in rows:
        stored = frame.loc[row[0]]
        assert stored["created_at"] == created
        for name, value in zip(schema.ROW_COLUMNS[1:], row[1:], strict=True):
            assert (stored[name] is None or stored[name] != stored[name]) if value is None else stored[name] == value


def test_inference_log_pending_counts_rows_until_committed(tmp_path: Path) -> None:
    import threading

    log = writer.InferenceLog(f"sqlite:///{tmp_path / 'log.db'}", linger_seconds=0.0)
    release = threading.Event()
    write = log._insert

    def stalled(connection: object, batches: object) -> None:
        release.wait(10)
        write(connection, batches)  # type: ignore[arg-type]

    log._insert = stalled  # type: ignore[assignment]
    ids = schema.new_prediction_ids(3)
    log.log_rows(
        schema.utcnow(),
        [(i, "v1", "champion", 1, 0.5, 0.5, "decline", None, None, None, None, "[]", "{}", None) for i in ids],
    )
    assert log.pending == 3
    release.set()
    assert log.flush(timeout=10) and log.pending == 0
    log.close()
    assert len(reader.read_predictions(f"sqlite:///{tmp_path / 'log.db'}")) == 3


def test_inference_log_insert_keeps_sqlalchemy_batching_on_server_databases() -> None:
    """PostgreSQL keeps SQLAlchemy's insert (multi-row VALUES, not a round trip per row); SQLite takes
    the positional fast path. No server is needed to check which path an engine gets."""
    postgres = writer._Insert(sa.create_engine("postgresql+psycopg2://u:p@db.invalid/log"))
    assert postgres._sql is None
    assert postgres._time(moment := schema.utcnow()) is moment  # psycopg2 binds datetimes itself
    sqlite = writer._Insert(sa.create_engine("sqlite://"))
    assert sqlite._sql is not None and sqlite._plain
    assert sqlite._sql.count("?") == len(schema.ROW_COLUMNS) + 1


def test_log_rows_end_with_the_protected_columns_then_the_reasons_in_engine_order() -> None:
    """The engine (and the shadow) zip the protected values (in PROTECTED_LOG_COLUMNS order) after the scored
    fields, then the reasons and the inputs they were computed from, then the answer a shadow row shadows."""
    protected = tuple(schema.PROTECTED_LOG_COLUMNS.values())
    assert schema.ROW_COLUMNS[-3:] == ("reasons", "inputs", "served_prediction_id")
    assert schema.ROW_COLUMNS[-len(protected) - 3 : -3] == protected
    assert schema.ROW_COLUMNS[: -len(protected) - 3] == (
        "prediction_id",
        "model_version",
        "role",
        "application_id",
        "probability",
        "threshold",
        "decision",
    )


def test_an_unreachable_database_leaves_the_log_not_ready_with_the_reason() -> None:
    from net_support import free_port

    from platform_assets.core.inference_log.migrate import SchemaNotCurrent

    log = writer.InferenceLog(f"postgresql+psycopg2://credit_risk@127.0.0.1:{free_port()}/log", retry_seconds=0.2)
    try:
        assert not log.wait_ready(timeout=3)
        assert log.problem is not None and "is unreachable: OperationalError" in log.problem, log.problem
        with pytest.raises(SchemaNotCurrent, match="unreachable"):
            log.record_feedback([{"application_id": 1, "defaulted": 0}])
    finally:
        log.close(timeout=5)


def test_the_services_own_sqlite_log_is_migrated_when_it_opens(tmp_path: Path) -> None:
    from platform_assets.core.inference_log import migrate

    log = writer.InferenceLog(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        assert log.wait_ready(timeout=30) and log.problem is None
        assert migrate.current_revision(log.engine) == migrate.head_revision()
    finally:
        log.close()


def shadowed_log(url: str) -> tuple[writer.InferenceLog, list[str], list[str]]:
    """Three applications answered by champion v1 and shadowed by v3, and one answered by challenger v2 that the
    shadow did not score; returns the log and the answers' and the shadow rows' prediction ids."""
    log = writer.InferenceLog(url, linger_seconds=0.0)
    answers, shadows = schema.new_prediction_ids(4), schema.new_prediction_ids(3)
    answered_at = schema.utcnow()
    log.log_rows(
        answered_at,
        [
            (answers[0], "v1", "champion", 11, 0.125, 0.5, "approve", 2, 1, 2, 40, None, None, None),
            (answers[1], "v1", "champion", 12, 0.75, 0.5, "decline", 1, 2, 1, 55, "[]", "{}", None),
            (answers[2], "v1", "champion", 13, 0.25, 0.5, "approve", None, None, None, 33, None, None, None),
            (answers[3], "v2", "challenger", 14, 0.5, 0.5, "decline", None, None, None, None, "[]", "{}", None),
        ],
    )
    log.log_rows(
        answered_at + timedelta(milliseconds=5),  # the shadow scores after the answer
        [
            (shadows[0], "v3", "shadow", 11, 0.625, 0.4, "decline", 2, 1, 2, 40, None, None, answers[0]),
            (shadows[1], "v3", "shadow", 12, 0.375, 0.4, "approve", 1, 2, 1, 55, None, None, answers[1]),
            (shadows[2], "v3", "shadow", 13, 0.5, 0.4, "decline", None, None, None, 33, None, None, answers[2]),
        ],
    )
    return log, answers, shadows


def test_a_shadow_row_is_labelled_by_the_outcome_of_the_answer_it_shadows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log, answers, shadows = shadowed_log(url)
    results = log.record_feedback(
        [
            {"prediction_id": answers[0], "defaulted": 1},
            # By application ID: the latest answer, not the newer shadow row.
            {"application_id": 12, "defaulted": 0},
        ]
    )
    assert [r.prediction_id for r in results] == [answers[0], answers[1]] and all(r.known for r in results)
    log.close()
    outcome = reader.read_predictions(url).set_index("prediction_id")["defaulted"]
    assert (outcome[answers[0]], outcome[shadows[0]]) == (1, 1)
    assert (outcome[answers[1]], outcome[shadows[1]]) == (0, 0)
    assert outcome.isna()[[answers[2], shadows[2], answers[3]]].all()
    labelled = reader.read_predictions(url, labelled_only=True, model_versions=["v3"])
    assert sorted(labelled["prediction_id"]) == sorted(shadows[:2])


def test_shadow_pairs_put_each_shadow_score_beside_the_answer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log, answers, shadows = shadowed_log(url)
    log.record_feedback([{"prediction_id": answers[1], "defaulted": 1}])
    # A shadow row whose answer is no longer in the log (a retention sweep) has no pair.
    log.log_rows(
        schema.utcnow(), [(schema.new_prediction_ids(1)[0], "v3", "shadow", 15, 0.1, 0.4, "approve", *[None] * 6, "x")]
    )
    log.close()
    pairs = reader.read_shadow_pairs(url, "v3")
    assert list(pairs.columns) == list(reader.SHADOW_PAIR_COLUMNS) and len(pairs) == 3
    second = pairs.set_index("application_id").loc[12]
    assert (second["served_prediction_id"], second["shadow_prediction_id"]) == (answers[1], shadows[1])
    assert (second["served_model_version"], second["served_role"], second["shadow_model_version"]) == (
        "v1",
        "champion",
        "v3",
    )
    assert (second["served_probability"], second["served_decision"], second["served_threshold"]) == (
        0.75,
        "decline",
        0.5,
    )
    assert (second["shadow_probability"], second["shadow_decision"], second["shadow_threshold"]) == (
        0.375,
        "approve",
        0.4,
    )
    assert (second["sex"], second["education"], second["marriage"], second["age"], second["defaulted"]) == (
        1,
        2,
        1,
        55,
        1,
    )
    assert second["created_at"] > second["served_at"]
    assert pairs["defaulted"].isna().sum() == 2 and str(pairs["defaulted"].dtype) == "Int64"
    assert reader.read_shadow_pairs(url, "v1").empty, "v1 answered; it shadowed nothing"
    later = pairs["created_at"].max() + timedelta(seconds=1)
    assert reader.read_shadow_pairs(url, "v3", start=later).empty
    assert len(reader.read_shadow_pairs(url, "v3", end=later)) == 3


@pytest.mark.parametrize(
    "query",
    [
        reader.predictions_query(),
        reader.predictions_query(labelled_only=True),
        reader.predictions_query(labelled_only=True, model_versions=["v1"]),
        reader.shadow_pairs_query("v3"),
    ],
    ids=["all", "labelled", "labelled of v1", "shadow pairs"],
)
def test_each_prediction_finds_its_outcome_by_an_index_search(tmp_path: Path, query: Any) -> None:
    # A join of all outcomes ON COALESCE(served_prediction_id, prediction_id) used no index: SQLite scanned every
    # outcome for every prediction, and a day of traffic took minutes to read. Every sensor and gate reads this.
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log, _, _ = shadowed_log(url)
    log.close()
    engine = sa.create_engine(url)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        plan = [str(row[3]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    # One pass over the predictions (by an index or not); every outcome is found by a search, never a scan.
    assert all(step.startswith(("SCAN predictions", "SCAN shadow")) for step in plan if step.startswith("SCAN")), plan
    assert any("INDEX ix_feedback_prediction_id (prediction_id=?)" in step for step in plan), plan
