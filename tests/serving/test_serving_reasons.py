"""Adverse-action reasons from a real ``bentoml serve``: on every decline, on request for approvals, in the
OpenAPI schema and the inference log, and recomputed offline from the log."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from serving_support import Api, Server, Stores, rows_of, served_model

from platform_assets.core.inference_log.reader import read_predictions
from platform_assets.core.inference_log.schema import inference_db_under
from platform_assets.core.reason_codes import ReasonCodes
from platform_assets.ml import reason_codes, schema
from platform_assets.ml.train import predict_cnn

pytestmark = pytest.mark.slow


def table(stores: Stores, label: str = "v1") -> ReasonCodes:
    codes: ReasonCodes = stores.reason_codes[label]
    return codes


def logged(stores: Stores, prediction_ids: list[str], timeout: float = 20.0) -> pd.DataFrame:
    """The log rows of ``prediction_ids``, once the service's background writer has committed them."""
    url = inference_db_under(stores.home)
    deadline = time.monotonic() + timeout
    while True:
        frame = read_predictions(url)
        frame = frame[frame["prediction_id"].isin(prediction_ids)]
        if len(frame) == len(prediction_ids) or time.monotonic() > deadline:
            return frame.set_index("prediction_id").loc[prediction_ids].reset_index()
        time.sleep(0.2)


def test_every_decline_has_up_to_four_reasons_and_approvals_have_none(api: Api, stores: Stores) -> None:
    served = api.predict(rows_of(stores.raw.iloc[:400]))
    declines = [p for p in served if p["decision"] == "decline"]
    approvals = [p for p in served if p["decision"] == "approve"]
    assert declines and approvals
    assert all(p["reasons"] is None for p in approvals)
    codes = {c.code: c for c in table(stores).codes}
    for prediction in declines:
        reasons = prediction["reasons"]
        assert 1 <= len(reasons) <= 4
        contributions = [r["contribution"] for r in reasons]
        assert contributions == sorted(contributions, reverse=True) and contributions[-1] > 0
        for reason in reasons:
            assert reason["text"] == codes[reason["code"]].text
            assert set(reason["fields"]) == set(codes[reason["code"]].fields) == set(reason["reference"])
            assert not set(reason["fields"]) & set(schema.PROTECTED_COLUMNS)


def test_an_approval_gets_its_reasons_when_the_request_asks(api: Api, stores: Stores) -> None:
    rows = rows_of(stores.raw.iloc[400:500])
    response = api.post("/predict", {"applications": rows, "reasons": "all"})
    assert response.status_code == 200, response.text
    served = response.json()["predictions"]
    assert all(isinstance(p["reasons"], list) for p in served)
    # Reasons do not depend on whether the approvals were explained too.
    declined = [p["reasons"] for p in api.predict(rows) if p["decision"] == "decline"]
    assert declined == [p["reasons"] for p in served if p["decision"] == "decline"]
    bad = api.post("/predict", {"applications": rows[:1], "reasons": "some"})
    assert bad.status_code == 422 and bad.json()["field"] == "reasons" and "'declines', 'all'" in bad.json()["error"]


def test_a_later_payment_delay_raises_the_pd_and_ranks_the_delay_reason_first(api: Api, stores: Stores) -> None:
    applicant = dict(table(stores).reference.values, ID=77, SEX=2, EDUCATION=1, MARRIAGE=1, AGE=40)
    response = api.post("/predict", {"applications": [applicant], "reasons": "all"})
    assert response.json()["predictions"][0]["reasons"] == []  # the reference itself: nothing raises its PD
    scored = []
    for months in (1, 3, 6, 8):
        response = api.post("/predict", {"applications": [dict(applicant, PAY_0=months)], "reasons": "all"})
        scored.append(response.json()["predictions"][0])
    pds = [p["probability_of_default"] for p in scored]
    assert pds[0] < pds[1] < pds[2] < pds[3]
    assert [p["reasons"][0]["code"] for p in scored] == ["R01"] * 4
    assert [p["reasons"][0]["fields"] for p in scored] == [{"PAY_0": m} for m in (1, 3, 6, 8)]


def test_reasons_are_logged_and_recomputed_identically_offline(api: Api, stores: Stores) -> None:
    served = api.predict(rows_of(stores.raw.iloc[500:800]))
    declined = [p for p in served if p["decision"] == "decline"]
    rows = logged(stores, [p["prediction_id"] for p in served]).to_dict("records")
    approved_rows = [r for r in rows if r["decision"] == "approve"]
    assert all(r["reasons"] is None and r["inputs"] is None for r in approved_rows)
    explained = [r for r in rows if r["decision"] == "decline"]
    assert [json.loads(r["reasons"]) for r in explained] == [p["reasons"] for p in declined]
    codes = table(stores)
    # With the runtime the service runs (the registered model.onnx in ONNX Runtime): exactly the served reasons.
    served_runtime = served_model(stores, "v1").predict
    recomputed = reason_codes.recompute_from_log(explained, codes, served_runtime, include_protected=False)
    assert recomputed == [p["reasons"] for p in declined]
    # With Keras, as the audit CLI recomputes them: the same codes and fields, contributions within tolerance.
    keras_model = stores.models["v1"]
    by_keras = reason_codes.recompute_from_log(
        explained,
        codes,
        lambda t, s: predict_cnn(keras_model, {"history": t, "static": s}),
        include_protected=False,
    )
    assert [reason_codes.difference(p["reasons"], r) for p, r in zip(declined, by_keras, strict=True)] == [None] * len(
        declined
    )


def test_reasons_are_in_the_openapi_response_schema(server: Server) -> None:
    spec = httpx.get(server.url + "/docs.json", timeout=10).json()
    components = spec["components"]["schemas"]
    reason = components["Reason"]
    assert set(reason["required"]) == {"code", "text", "contribution", "fields", "reference"}
    prediction = components["Prediction"]["properties"]["reasons"]
    options = prediction["anyOf"]
    assert {"type": "null"} in options
    array = next(o for o in options if o.get("type") == "array")
    assert array["items"]["$ref"].endswith("/Reason") and array["maxItems"] == 4
    predict_input = next(
        s for name, s in components.items() if "reasons" in s.get("properties", {}) and name != "Prediction"
    )
    assert predict_input["properties"]["reasons"]["enum"] == ["declines", "all"]


def test_shapley_values_of_the_served_model_add_up(stores: Stores) -> None:
    """Efficiency on the served runtime: the values sum to PD(applicant) - PD(reference)."""
    explainer = reason_codes.Explainer(table(stores), reason_codes.LOG_COLUMNS)
    runtime = served_model(stores, "v1").predict
    predict = reason_codes.model_predictor(runtime, reason_codes.LOG_COLUMNS, include_protected=False)
    frame = stores.raw.iloc[:50]
    explanation = explainer.explain(frame[list(reason_codes.LOG_COLUMNS)].to_numpy("float64"), predict)
    np.testing.assert_allclose(
        explanation.shapley.sum(axis=1), explanation.probability - explanation.reference_probability, atol=1e-9
    )
