"""The credit-risk Bento as a real ``bentoml serve`` process: scoring, errors, auth, routing, swaps,
the inference log and metrics."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np
import pytest
from net_support import wait_for_status
from serving_support import Api, Server, Stores, in_process, local_path, quiet, rows_of

from platform_assets.core import observability, registry
from platform_assets.core.inference_log.reader import read_feedback, read_predictions
from platform_assets.core.registry import MODEL_NAME

pytestmark = pytest.mark.slow


@pytest.fixture
def restore_registry(stores: Stores, api: Api) -> Any:
    """Put the registry back to champion=v1, no challenger, weight 0 after a test moves it."""
    yield
    registry.set_alias(registry.CHAMPION, stores.versions["v1"], tracking_uri=stores.tracking_uri)
    registry.set_challenger_weight(0, tracking_uri=stores.tracking_uri)
    try:
        registry.remove_alias(registry.CHALLENGER, tracking_uri=stores.tracking_uri)
    except Exception:
        pass
    wait_for_status(api, lambda s: s["champion"] == "v1" and s["challenger"] is None)


def test_predictions_equal_the_model_in_process(api: Api, stores: Stores) -> None:
    frame = stores.raw.iloc[:300]
    served = api.predict(rows_of(frame))
    expected = in_process(stores.models["v1"], frame)
    got = np.array([p["probability_of_default"] for p in served])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p["application_id"] for p in served] == frame["ID"].tolist()
    assert {p["model_version"] for p in served} == {"v1"} and {p["role"] for p in served} == {"champion"}
    threshold = stores.thresholds["v1"]
    assert [p["decision"] for p in served] == ["decline" if p >= threshold else "approve" for p in got]
    assert len({p["prediction_id"] for p in served}) == len(served)
    # Single rows (another batching path) give the same numbers.
    single = [api.predict(rows_of(frame.iloc[i : i + 1]))[0]["probability_of_default"] for i in range(5)]
    np.testing.assert_allclose(single, expected[:5], atol=1e-5)


def test_probability_of_default_is_the_offline_calibrated_probability(
    api: Api, stores: Stores, restore_registry: Any
) -> None:
    """/predict returns the calibration of the model's raw logit, computed offline from the version's
    calibration record (numpy), for a Platt version (v1) and an isotonic one (v2, pinned as challenger)."""
    from model_support import keras_inputs

    from platform_assets.ml import calibration

    registry.set_alias(registry.CHALLENGER, stores.versions["v2"], tracking_uri=stores.tracking_uri)
    wait_for_status(api, lambda s: s["challenger"] == "v2")
    frame = stores.raw.iloc[:200]
    for label in ("v1", "v2"):
        model, fitted = stores.models[label], stores.calibrations[label]
        offline = calibration.apply(fitted, calibration.raw_logits(model, keras_inputs(frame)))
        response = api.post("/predict", {"applications": rows_of(frame), "model_version": label})
        assert response.status_code == 200, response.text
        served = response.json()["predictions"]
        assert {p["model_version"] for p in served} == {label}, fitted.method
        np.testing.assert_allclose([p["probability_of_default"] for p in served], offline, rtol=0, atol=1e-5)
        # Calibrated, not the raw score: the two differ (class weighting inflates the raw one).
        raw = calibration.sigmoid(calibration.raw_logits(model, keras_inputs(frame)))
        assert np.mean(raw) - np.mean(offline) > 0.05, (fitted.method, np.mean(raw), np.mean(offline))


def test_protected_attributes_are_optional(api: Api, stores: Stores) -> None:
    row = rows_of(stores.raw.iloc[:1])[0]
    bare = {k: v for k, v in row.items() if k not in ("SEX", "EDUCATION", "MARRIAGE", "AGE")}
    with_them, without = api.predict([row])[0], api.predict([bare])[0]
    assert with_them["probability_of_default"] == pytest.approx(without["probability_of_default"], abs=1e-6)


def test_auth_401_and_403(api: Api, server: Server, stores: Stores) -> None:
    rows = rows_of(stores.raw.iloc[:2])
    no_key = httpx.post(server.url + "/predict", json={"applications": rows}, timeout=10)
    assert no_key.status_code == 401 and "missing API key" in no_key.json()["error"]
    wrong = httpx.post(
        server.url + "/predict",
        json={"applications": rows},
        headers={"Authorization": "Bearer crk_not-a-key"},
        timeout=10,
    )
    assert wrong.status_code == 401 and "unknown API key" in wrong.json()["error"]
    forbidden = api.post("/predict", {"applications": rows}, role="feedback")
    assert forbidden.status_code == 403 and "predict" in forbidden.json()["error"]
    outcome = {"outcomes": [{"application_id": 1, "defaulted": 0}]}
    assert api.post("/feedback", outcome, role="predict").status_code == 403
    assert api.post("/admin/status", {}, role="predict").status_code == 403
    # Health and metrics stay open.
    for path in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(server.url + path, timeout=10).status_code == 200


def test_too_large_batch_is_413(api: Api, stores: Stores) -> None:
    rows = rows_of(stores.raw.iloc[:1001])
    response = api.post("/predict", {"applications": rows})
    assert response.status_code == 413 and "1000" in response.json()["error"]


@pytest.mark.parametrize(
    ("mutate", "field", "row"),
    [
        (lambda r: r.pop("BILL_AMT3"), "BILL_AMT3", 2),
        (lambda r: r.update(LIMIT_BAL="NaN-as-text"), "LIMIT_BAL", 2),
        (lambda r: r.update(AGE=12), "AGE", 2),
        (lambda r: r.update(PAY_4=11), "PAY_4", 2),
        (lambda r: r.update(PAY_AMT2=-5), "PAY_AMT2", 2),
        (lambda r: r.update(LIMIT_BAL=0), "LIMIT_BAL", 2),
        (lambda r: r.update(EDUCATION=9), "EDUCATION", 2),
    ],
)
def test_bad_rows_are_422_with_field_and_row(api: Api, stores: Stores, mutate: Any, field: str, row: int) -> None:
    rows = rows_of(stores.raw.iloc[:4])
    mutate(rows[2])
    response = api.post("/predict", {"applications": rows})
    assert response.status_code == 422, response.text
    detail = response.json()
    assert detail["field"] == field and detail["row"] == row
    assert f"row {row}" in detail["error"] and field in detail["error"]


def test_nan_empty_malformed_and_unknown_version(api: Api, stores: Stores) -> None:
    row = rows_of(stores.raw.iloc[:1])[0]
    raw = json.dumps({"applications": [row, row]}).replace(f'"PAY_AMT1": {row["PAY_AMT1"]}', '"PAY_AMT1": NaN', 1)
    nan = api.post("/predict", content=raw.encode(), headers={"content-type": "application/json"})
    assert nan.status_code == 422 and nan.json()["field"] == "PAY_AMT1" and nan.json()["row"] == 0
    empty = api.post("/predict", {"applications": []})
    assert empty.status_code == 422 and "empty" in empty.json()["error"]
    malformed = api.post("/predict", content=b'{"applications": [{', headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
    wrong_type = api.post("/predict", {"applications": {"ID": 1}})
    assert wrong_type.status_code == 422 and wrong_type.json()["field"] == "applications"
    unknown = api.post("/predict", {"applications": [row], "model_version": "v99"})
    assert unknown.status_code == 409 and unknown.json()["field"] == "model_version"
    pinned = api.post("/predict", {"applications": [row], "model_version": "v1"})
    assert pinned.status_code == 200 and pinned.json()["predictions"][0]["model_version"] == "v1"
    bad_feedback = api.post("/feedback", {"outcomes": [{"prediction_id": "x", "defaulted": 3}]}, role="feedback")
    assert bad_feedback.status_code == 422 and bad_feedback.json()["row"] == 0


def test_sticky_routing_at_ten_percent(api: Api, stores: Stores, restore_registry: Any) -> None:
    registry.set_alias(registry.CHALLENGER, stores.versions["v2"], tracking_uri=stores.tracking_uri)
    registry.set_challenger_weight(10, tracking_uri=stores.tracking_uri)
    wait_for_status(api, lambda s: s["challenger"] == "v2" and s["challenger_weight_percent"] == 10.0)
    frame = stores.raw.iloc[:2000]
    first = api.predict(rows_of(frame.iloc[:1000])) + api.predict(rows_of(frame.iloc[1000:]))
    share = sum(p["role"] == "challenger" for p in first) / len(first)
    assert 0.07 <= share <= 0.13, share
    assert {(p["role"], p["model_version"]) for p in first} == {("champion", "v1"), ("challenger", "v2")}
    # Same IDs again, in another order and batching: each lands on the same version.
    again = {p["application_id"]: p["model_version"] for p in api.predict(rows_of(frame.iloc[::-1].iloc[:1000]))}
    again.update({p["application_id"]: p["model_version"] for p in api.predict(rows_of(frame.iloc[::-1].iloc[1000:]))})
    assert {p["application_id"]: p["model_version"] for p in first} == again
    # And the challenger's rows are scored by v2 itself.
    challenger_rows = frame[[p["role"] == "challenger" for p in first]]
    expected = in_process(stores.models["v2"], challenger_rows)
    got = [p["probability_of_default"] for p in first if p["role"] == "challenger"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_weight_and_alias_changes_under_load_fail_no_request(api: Api, stores: Stores, restore_registry: Any) -> None:
    rows = rows_of(stores.raw.iloc[:400])
    stop = threading.Event()
    failures: list[str] = []
    seen: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()

    def client(offset: int) -> None:
        with httpx.Client(base_url=api.client.base_url, timeout=30) as http:
            i = offset
            while not stop.is_set():
                batch = rows[i % 380 : i % 380 + 1 + i % 20]
                try:
                    response = http.post(
                        "/predict",
                        json={"applications": batch},
                        headers={"Authorization": f"Bearer {stores.keys['predict']}"},
                    )
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text}")
                    continue
                with lock:
                    seen.update((p["model_version"], p["role"]) for p in response.json()["predictions"])
                i += 7

    threads = [threading.Thread(target=client, args=(k * 53,)) for k in range(6)]
    for thread in threads:
        thread.start()
    try:
        uri = stores.tracking_uri
        registry.set_alias(registry.CHALLENGER, stores.versions["v2"], tracking_uri=uri)
        for weight in (25, 50, 100):
            registry.set_challenger_weight(weight, tracking_uri=uri)
            wait_for_status(api, lambda s, w=weight: s["challenger_weight_percent"] == w)
            time.sleep(0.5)
        registry.set_alias(registry.CHAMPION, stores.versions["v2"], tracking_uri=uri)  # promote v2
        registry.remove_alias(registry.CHALLENGER, tracking_uri=uri)
        wait_for_status(api, lambda s: s["champion"] == "v2" and s["challenger"] is None)
        time.sleep(0.5)
        registry.set_alias(registry.CHAMPION, stores.versions["v1"], tracking_uri=uri)  # roll back
        wait_for_status(api, lambda s: s["champion"] == "v1")
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert seen[("v1", "champion")] and seen[("v2", "challenger")] and seen[("v2", "champion")]


def test_tampered_model_is_refused_and_previous_keeps_serving(api: Api, stores: Stores, restore_registry: Any) -> None:
    import mlflow
    import model_support

    with quiet():
        tiny = model_support.train_tiny(
            model_support.synthetic_rows(days=1, rows_per_day=800, seed=3), seed=5, epochs=1
        )
        # Into this server's store, whichever store an earlier test made MLflow's current one.
        model_support.prepare_store(stores.tracking_uri, stores.home / "mlflow" / "artifacts")
        registered = model_support.register_tiny(tiny, model_support.keras_inputs(stores.raw.iloc[:10]))
    client = mlflow.MlflowClient(tracking_uri=stores.tracking_uri)
    location = client.get_model_version_download_uri(MODEL_NAME, registered.version)
    path = local_path(location) / registry.MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte
    path.write_bytes(bytes(data))
    registry.set_alias(registry.CHAMPION, registered.version, tracking_uri=stores.tracking_uri)
    status = wait_for_status(api, lambda s: registered.label in s["refused"])
    assert "sha256" in status["refused"][registered.label] and status["champion"] == "v1"
    served = api.predict(rows_of(stores.raw.iloc[:3]))
    assert {p["model_version"] for p in served} == {"v1"}
    assert httpx.get(str(api.client.base_url) + "/readyz", timeout=10).status_code == 200


def test_metrics_carry_the_observability_names(api: Api, server: Server, stores: Stores) -> None:
    served = api.predict(rows_of(stores.raw.iloc[:20]))
    outcome = {"outcomes": [{"prediction_id": served[0]["prediction_id"], "defaulted": 1}]}
    assert api.post("/feedback", outcome, role="feedback").status_code == 200
    api.post("/predict", {"applications": []})
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for name in set(observability.EXPORTED) - set(observability.SHADOW_ONLY):  # test_serving_shadow: the others
        assert name in text, name
    assert 'credit_risk_predictions_total{decision="' in text and 'model_version="v1"' in text
    lines = [line for line in text.splitlines() if line.startswith(observability.SCORE + "_count")]
    assert any('model_version="v1"' in line and 'role="champion"' in line for line in lines)
    assert f'{observability.MODEL_INFO}{{model_version="v1",role="champion"}} 1.0' in text
    # Request metrics carry the model version and role that answered ("none": no model was involved).
    latency = f'{observability.REQUEST_LATENCY_SECONDS}_bucket{{endpoint="/predict",le="0.001"'
    assert f'{latency},model_version="v1",role="champion"}}' in text
    assert (
        'credit_risk_request_errors_total{endpoint="/predict",model_version="none",reason="empty_batch",'
        'role="none",status="422"}' in text
    )
    assert 'credit_risk_feedback_total{known="true"}' in text
    # Decisions per protected group and model version (the rows carry SEX, AGE, MARRIAGE, EDUCATION).
    assert any(
        line.startswith(observability.GROUP_DECISIONS_TOTAL + '{attribute="sex"') and 'model_version="v1"' in line
        for line in text.splitlines()
    )
    # BentoML's own request histogram, with the millisecond buckets the service configures.
    bentoml_buckets = [
        line
        for line in text.splitlines()
        if line.startswith(observability.BENTOML_REQUEST_DURATION_SECONDS + '_bucket{endpoint="/predict"')
    ]
    assert {f'le="{bound}"' for bound in observability.LATENCY_BUCKETS[:3]} <= {
        label for line in bentoml_buckets for label in line.split(",") if label.startswith("le=")
    }


def test_responses_name_the_model_that_answered(api: Api, stores: Stores) -> None:
    response = api.post("/predict", {"applications": rows_of(stores.raw.iloc[:2])})
    assert response.status_code == 200
    assert (response.headers["x-model-version"], response.headers["x-model-role"]) == ("v1", "champion")
    refused = api.post("/predict", {"applications": []})
    assert refused.status_code == 422 and "x-model-version" not in refused.headers


def test_docs_are_served(server: Server) -> None:
    docs = httpx.get(server.url + "/docs", timeout=10, follow_redirects=True)
    assert docs.status_code == 200
    spec = httpx.get(server.url + "/docs.json", timeout=10).json()
    assert {"/predict", "/feedback"} <= set(spec["paths"])


def test_feedback_persists_across_restart(stores: Stores, tmp_path: Any) -> None:
    db = f"sqlite:///{tmp_path / 'restart.db'}"
    env = stores.env(CREDIT_RISK_INFERENCE_DB=db)
    rows = rows_of(stores.raw.iloc[2000:2010])
    first = Server(env, tmp_path / "first.log").start()
    try:
        api = Api(first.url, stores.keys)
        served = api.predict(rows)
        stored = api.post(
            "/feedback",
            {
                "outcomes": [
                    {"prediction_id": served[0]["prediction_id"], "defaulted": 1},
                    {"application_id": rows[1]["ID"], "defaulted": 0},
                    {"application_id": 123456789, "defaulted": 1},
                ]
            },
            role="feedback",
        )
        assert stored.status_code == 200 and stored.json()["known"] == 2 and stored.json()["unknown"] == 1
        last = api.predict(rows[5:])  # logged in the background; must be flushed on shutdown
    finally:
        first.stop()
    logged = read_predictions(db)
    assert set(logged["prediction_id"]) == {p["prediction_id"] for p in served + last}
    assert len(read_feedback(db)) == 3
    second = Server(env, tmp_path / "second.log").start()
    try:
        api = Api(second.url, stores.keys)
        again = api.post(
            "/feedback", {"outcomes": [{"prediction_id": last[0]["prediction_id"], "defaulted": 0}]}, role="feedback"
        )
        assert again.status_code == 200 and again.json()["known"] == 1
    finally:
        second.stop()
    feedback = read_feedback(db)
    assert len(feedback) == 4 and feedback["known"].tolist() == [True, True, False, True]
    labelled = read_predictions(db, labelled_only=True)
    expected = {served[0]["prediction_id"], served[1]["prediction_id"], last[0]["prediction_id"]}
    assert set(labelled["prediction_id"]) == expected


def test_not_ready_without_a_champion(stores: Stores, tmp_path: Any) -> None:
    import model_support

    empty_uri = f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}"
    with quiet():
        model_support.prepare_store(empty_uri, tmp_path / "empty" / "artifacts")
        model_support.prepare_store(stores.tracking_uri, stores.home / "mlflow" / "artifacts")  # back for other tests
    server = Server(stores.env(MLFLOW_TRACKING_URI=empty_uri), tmp_path / "empty.log").start(wait_ready=False)
    try:
        assert httpx.get(server.url + "/readyz", timeout=10).status_code == 503
        response = Api(server.url, stores.keys).post("/predict", {"applications": rows_of(stores.raw.iloc[:1])})
        assert response.status_code == 503 and "champion" in response.json()["error"]
    finally:
        server.stop()
