"""Fixtures of the governance suite: small frames shaped like the tensor table's raw columns, UCI predictions."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from platform_assets.ml import features, schema, synthetic, uci
from platform_assets.ml.train import choose_threshold


@pytest.fixture(scope="session")
def synthetic_rows() -> pd.DataFrame:
    """4,000 synthetic raw rows over four days (one seed), the raw columns the drift report reads."""
    days = [date(2026, 10, 1) + timedelta(days=d) for d in range(4)]
    return pd.concat([synthetic.generate_partition(day, 1000, 11) for day in days], ignore_index=True)


@pytest.fixture(scope="session")
def uci_predictions(uci_csv: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, float]:
    """A logistic regression on the model's inputs, trained on half the UCI rows, scoring the other half."""
    frame = uci.read_uci_csv(uci_csv.read_bytes(), str(uci_csv))
    frame = frame[features.quarantine_reasons(frame).isna()].reset_index(drop=True)
    batch = features.build_features(frame)
    flat = np.concatenate([batch.tensor.reshape(len(batch), -1), batch.static], axis=1)
    labels = frame[schema.TARGET].to_numpy()
    train = np.arange(len(frame)) % 2 == 0
    model = LogisticRegression(max_iter=500).fit(flat[train], labels[train])
    scores = model.predict_proba(flat[~train])[:, 1]
    threshold = choose_threshold(labels[~train], scores)
    return frame[~train].reset_index(drop=True), labels[~train], scores, threshold
