"""The shadow with real processes: ``bentoml serve`` with champion v1 and shadow v2 from a real MLflow registry.

Every response comes from the champion; the shadow scores the same applications off the response path, and the
inference log gets its rows (role shadow, the answer's prediction id, v2's own probabilities and threshold), which
the outcome posted for the answer labels. A shadow made to fail, or to stall for a minute, changes no response:
every /predict is answered by the champion while the shadow's failures and dropped batches are counted.

The versions are the session's tiny models, registered again under a model name of this module's own, so the
session server (which serves ``default_risk_model``) never sees this module's aliases.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from net_support import wait_for_status
from serving_support import Api, Server, Stores, in_process, metric, rows_of

from platform_assets.core import observability, registry
from platform_assets.core.inference_log import reader
from platform_assets.core.observability import SHADOW_FAILURES_TOTAL
from platform_assets.serving import routing

pytestmark = pytest.mark.slow

MODEL = "default_risk_model_shadow_test"
#: Seconds the stalled shadow sleeps per pass: far longer than the test needs to send its requests.
STALL_SECONDS = 60


@pytest.fixture(scope="module")
def shadowed(stores: Stores) -> str:
    """``MODEL`` with the session's v1 as champion and v2 as shadow (the same artifacts and tags)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=stores.tracking_uri)
    client.create_registered_model(MODEL)
    for label in ("v1", "v2"):
        source = client.get_model_version(registry.MODEL_NAME, stores.versions[label])
        copy = client.create_model_version(MODEL, source=source.source, run_id=source.run_id)
        assert f"v{copy.version}" == label
        for key, value in source.tags.items():
            client.set_model_version_tag(MODEL, copy.version, key, value)
    registry.set_alias(registry.CHAMPION, 1, model_name=MODEL, tracking_uri=stores.tracking_uri)
    registry.set_alias(registry.SHADOW, 2, model_name=MODEL, tracking_uri=stores.tracking_uri)
    return MODEL


def serve(stores: Stores, tmp_path: Path, **env: str) -> tuple[Server, str]:
    db = f"sqlite:///{tmp_path / 'inference_log.db'}"
    overrides = {"CREDIT_RISK_MODEL_NAME": MODEL, "CREDIT_RISK_INFERENCE_DB": db, **env}
    return Server(stores.env(**overrides), tmp_path / "server.log").start(), db


@pytest.fixture
def service(shadowed: str, stores: Stores, tmp_path: Path) -> Iterator[tuple[Api, Server, str]]:
    server, db = serve(stores, tmp_path)
    try:
        yield Api(server.url, stores.keys), server, db
    finally:
        server.stop()
        registry.client(stores.tracking_uri).delete_registered_model_tag(MODEL, registry.SHADOW_SHARE_TAG)


def champion_answers(predictions: list[dict[str, Any]]) -> None:
    assert {(p["model_version"], p["role"]) for p in predictions} == {("v1", "champion")}


def test_the_shadow_scores_what_the_champion_answered_and_is_labelled_by_its_outcome(
    service: tuple[Api, Server, str], stores: Stores
) -> None:
    api, server, db = service
    status = api.status()
    assert (status["champion"], status["shadow"], status["shadow_share_percent"]) == ("v1", "v2", 100.0), status
    assert status["models"]["shadow"]["threshold"] == pytest.approx(stores.thresholds["v2"])
    frame = stores.raw.iloc[:120]
    answers = [p for start in range(0, 120, 40) for p in api.predict(rows_of(frame.iloc[start : start + 40]))]
    champion_answers(answers)
    wait_for_status(api, lambda s: s["shadow_scoring"]["scored"] == 120)

    outcome = {"outcomes": [{"prediction_id": answers[0]["prediction_id"], "defaulted": 1}]}
    assert api.post("/feedback", outcome, role="feedback").status_code == 200  # it flushes the log first
    pairs = reader.read_shadow_pairs(db, "v2").set_index("application_id").loc[frame["ID"].tolist()]
    assert pairs["served_prediction_id"].tolist() == [p["prediction_id"] for p in answers]
    assert (set(pairs["served_model_version"]), set(pairs["served_role"])) == ({"v1"}, {"champion"})
    np.testing.assert_allclose(pairs["served_probability"], [p["probability_of_default"] for p in answers], atol=0)
    # The shadow's own scores: v2's probabilities, decided at v2's threshold, never returned to anyone.
    np.testing.assert_allclose(pairs["shadow_probability"], in_process(stores.models["v2"], frame), atol=1e-5)
    threshold = stores.thresholds["v2"]
    assert (pairs["shadow_threshold"] == threshold).all()
    assert pairs["shadow_decision"].tolist() == [
        "decline" if p >= threshold else "approve" for p in pairs["shadow_probability"]
    ]
    assert pairs["sex"].tolist() == frame["SEX"].tolist() and pairs["age"].tolist() == frame["AGE"].tolist()
    labelled = pairs["defaulted"].dropna()
    assert labelled.to_dict() == {answers[0]["application_id"]: 1}, "the answer's outcome labels the shadow's row"
    logged = reader.read_predictions(db)
    assert (logged["role"] == "shadow").sum() == 120 and logged[logged["role"] == "shadow"]["reasons"].isna().all()

    assert metric(server, "credit_risk_model_info", role="shadow", model_version="v2") == 1.0
    assert metric(server, "credit_risk_traffic_weight", role="shadow") == 1.0
    assert metric(server, "credit_risk_predictions_total", model_version="v2", role="shadow") == 120
    assert metric(server, "credit_risk_predictions_total", role="champion") == 120

    # A share of 30 %: the shadow scores the sticky 30 % of application IDs, the champion still answers all.
    registry.set_shadow_share(30, model_name=MODEL, tracking_uri=stores.tracking_uri)
    wait_for_status(api, lambda s: s["shadow_share_percent"] == 30.0, timeout=30)
    second = stores.raw.iloc[200:600]
    champion_answers(api.predict(rows_of(second)))
    chosen = [i for i, s in zip(second["ID"], routing.to_shadow(second["ID"].tolist(), 30.0), strict=True) if s]
    wait_for_status(api, lambda s: s["shadow_scoring"]["scored"] == 120 + len(chosen))
    api.post(
        "/feedback", {"outcomes": [{"application_id": int(second["ID"].iloc[0]), "defaulted": 0}]}, role="feedback"
    )
    shadowed_ids = set(reader.read_shadow_pairs(db, "v2")["application_id"]) - set(frame["ID"])
    assert shadowed_ids == set(chosen) and 0.2 < len(chosen) / len(second) < 0.4


def test_a_failing_shadow_never_touches_the_champions_answers(shadowed: str, stores: Stores, tmp_path: Path) -> None:
    server, db = serve(stores, tmp_path, CREDIT_RISK_FAULT_INJECTION="shadow")
    try:
        api = Api(server.url, stores.keys)
        for start in range(0, 100, 10):
            response = api.post("/predict", {"applications": rows_of(stores.raw.iloc[start : start + 10])})
            assert response.status_code == 200, response.text
            champion_answers(response.json()["predictions"])
        status = wait_for_status(api, lambda s: s["shadow_scoring"]["failed"] == 100)
        assert status["shadow_scoring"]["scored"] == 0 and "InjectedFault" in status["shadow_scoring"]["last_error"]
        assert status["ready"] and status["shadow"] == "v2"
        assert metric(server, SHADOW_FAILURES_TOTAL, model_version="v2", reason="error") == 100
        assert all(metric(server, name) > 0 for name in observability.SHADOW_ONLY), "the contract's shadow series"
        assert metric(server, "credit_risk_request_errors_total", endpoint="/predict") == 0
        api.post("/feedback", {"outcomes": [{"application_id": 1, "defaulted": 0}]}, role="feedback")  # flushes
        logged = reader.read_predictions(db)
        assert len(logged) == 100 and set(logged["role"]) == {"champion"}
        assert server.log_path.read_text().count("shadow v2 failed to score") == 1, "logged once, counted always"
    finally:
        server.stop()


def test_a_stalled_shadow_drops_batches_and_every_request_is_still_answered(
    shadowed: str, stores: Stores, tmp_path: Path
) -> None:
    fault = f"shadow_slow={STALL_SECONDS}"
    server, _ = serve(stores, tmp_path, CREDIT_RISK_FAULT_INJECTION=fault, CREDIT_RISK_SHADOW_QUEUE_BATCHES="2")
    try:
        api = Api(server.url, stores.keys)
        answers = [api.post("/predict", {"applications": rows_of(stores.raw.iloc[i : i + 3])}) for i in range(0, 60, 3)]
        assert [r.status_code for r in answers] == [200] * 20
        for response in answers:
            champion_answers(response.json()["predictions"])
        # All 20 answered while the shadow still sleeps in its first pass: it has scored nothing, two batches wait,
        # the rest were dropped (3 applications each), and nothing else.
        shadow = api.status()["shadow_scoring"]
        assert (shadow["scored"], shadow["pending_batches"], shadow["queue_batches"]) == (0, 2, 2), shadow
        assert shadow["dropped"] >= 16 * 3 and shadow["dropped"] % 3 == 0 and shadow["failed"] == 0, shadow
        assert metric(server, SHADOW_FAILURES_TOTAL, model_version="v2", reason="queue_full") == shadow["dropped"]
    finally:
        server.stop()
