"""The seed-style baseline: FastAPI, the same features, and ``model.predict`` on every request.

Run: ``BASELINE_MODEL=/path/model.keras uvicorn baseline_app:app --workers 2`` (from this folder).
"""

from __future__ import annotations

import os
from typing import Any

import keras
import pandas as pd
from fastapi import FastAPI, HTTPException

from platform_assets.ml import features, schema

app = FastAPI()
model = keras.saving.load_model(os.environ["BASELINE_MODEL"], compile=False)
THRESHOLD = float(os.environ.get("BASELINE_THRESHOLD", "0.5"))
COLUMNS = [c for c in schema.RAW_COLUMNS if c != schema.TARGET]


@app.post("/predict")
def predict(body: dict[str, Any]) -> dict[str, Any]:
    frame = pd.DataFrame(body["applications"])
    for column in schema.PROTECTED_COLUMNS:
        if column not in frame:
            frame[column] = {"SEX": 1, "EDUCATION": 0, "MARRIAGE": 0, "AGE": 35}[column]
    frame = features.coerce_raw_frame(frame[COLUMNS], "request", require_target=False)
    rows = features.featurize_rows(frame)
    if rows[features.REASON].notna().any():
        raise HTTPException(422, str(rows[features.REASON].dropna().iloc[0]))
    batch = features.batch_from_rows(rows)
    probabilities = model.predict({"history": batch.tensor, "static": batch.static}, verbose=0).reshape(-1)
    return {
        "predictions": [
            {"probability_of_default": float(p), "decision": "decline" if p >= THRESHOLD else "approve"}
            for p in probabilities
        ]
    }
