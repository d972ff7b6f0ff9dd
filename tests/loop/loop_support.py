"""Helpers of the closed-loop tests: an inference log with chosen quality, and registries without MLflow."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from record_support import model_version

from platform_assets import model_store
from platform_assets.core.api_keys import create_key
from platform_assets.core.inference_log.migrate import upgrade
from platform_assets.core.inference_log.schema import feedback, make_engine, predictions, utcnow
from platform_assets.core.registry import MODEL_NAME
from platform_assets.defs.resources import resources
from platform_assets.resources.lake import LakeStorage, LocalLake
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.monitoring import LiveMonitoring


class FakeRegistry(ModelRegistry):
    """Aliases, weight and step start (ISO 8601, empty: none) from fields; ``broken`` makes every read fail like
    an unreachable store."""

    tracking_uri: str = "sqlite:///unused.db"
    model_name: str = MODEL_NAME
    current: dict[str, str] = {}
    weight: float = 0.0
    since: str = ""
    broken: bool = False

    def step_started(self) -> datetime | None:
        if self.broken:
            raise OSError("database is locked")
        return datetime.fromisoformat(self.since) if self.since else None

    def aliases(self) -> dict[str, str]:
        if self.broken:
            raise OSError("database is locked")
        return dict(self.current)

    def challenger_weight(self) -> float:
        if self.broken:
            raise OSError("database is locked")
        return self.weight


def log_outcomes(
    db: str,
    version: str,
    n: int,
    *,
    quality: float,
    role: str = "champion",
    labelled: int | None = None,
    seed: int = 0,
    at: datetime | None = None,
    protected: bool = True,
) -> None:
    """Write ``n`` predictions of ``version`` (``labelled`` of them with an outcome) to the log at ``db``.

    ``quality`` 0 gives scores unrelated to the outcome (ROC AUC about 0.5); 3 gives ROC AUC about 0.95.
    """
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.22).astype(int)
    probability = 1 / (1 + np.exp(-(quality * (labels - 0.5) + rng.normal(0, 1, n) - 1.0)))
    take = n if labelled is None else labelled
    log_scored(
        db, version, probability, labels, labelled=np.arange(n) < take, role=role, rng=rng, at=at, protected=protected
    )


def log_scored(
    db: str,
    version: str,
    probabilities: np.ndarray,
    outcomes: np.ndarray,
    *,
    labelled: np.ndarray,
    threshold: float = 0.5,
    role: str = "champion",
    rng: np.random.Generator | None = None,
    at: datetime | None = None,
    protected: bool = True,
    inputs: list[dict[str, int]] | None = None,
) -> list[str]:
    """Write one prediction of ``version`` per probability (declined at ``threshold`` and above), the outcome of the
    rows ``labelled`` marks, and, when given, each row's raw ``inputs`` (the log keeps them for declined rows);
    return the prediction ids."""
    rng = rng or np.random.default_rng(0)
    created = at or utcnow()
    rows = [
        {
            "prediction_id": str(uuid.uuid4()),
            "created_at": created,
            "model_version": version,
            "role": role,
            "application_id": int(rng.integers(1, 10**9)),
            "probability": float(p),
            "threshold": threshold,
            "decision": "decline" if p >= threshold else "approve",
            "sex": int(rng.integers(1, 3)) if protected else None,
            "education": int(rng.integers(1, 4)) if protected else None,
            "marriage": int(rng.integers(1, 3)) if protected else None,
            "age": int(rng.integers(21, 70)) if protected else None,
            "inputs": json.dumps(inputs[i]) if inputs is not None and p >= threshold else None,
        }
        for i, p in enumerate(probabilities)
    ]
    engine = make_engine(db)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(predictions.insert(), rows)
        chosen = [
            {
                "received_at": created,
                "prediction_id": r["prediction_id"],
                "application_id": r["application_id"],
                "defaulted": int(y),
                "known": True,
            }
            for r, y, keep in zip(rows, outcomes, labelled, strict=True)
            if keep
        ]
        if chosen:
            connection.execute(feedback.insert(), chosen)
    engine.dispose()
    return [r["prediction_id"] for r in rows]


def empty_log(db: str) -> None:
    engine = make_engine(db)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(sa.delete(feedback))
        connection.execute(sa.delete(predictions))
    engine.dispose()


def lake_at(path: Path) -> LakeStorage:
    return LocalLake(root=str(path))


def publish_validation(lake: LakeStorage, version: str, roc_auc: float = 0.80, accuracy: float = 0.80) -> None:
    model_store.publish(lake, model_version(version, validation_metrics={"roc_auc": roc_auc, "accuracy": accuracy}))


def monitoring(db: str, **overrides: Any) -> LiveMonitoring:
    settings = {"inference_db": db, "service_url": "", "min_labelled": 200, "canary_min_labelled": 200}
    settings.update(overrides)
    return LiveMonitoring(**settings)


def post_outcomes(db: str, prediction_ids: list[str], outcomes: np.ndarray) -> None:
    """Outcomes arriving now for earlier predictions, as /feedback stores them."""
    engine = make_engine(db)
    with engine.begin() as connection:
        connection.execute(
            feedback.insert(),
            [
                {
                    "received_at": utcnow(),
                    "prediction_id": pid,
                    "application_id": None,
                    "defaulted": int(y),
                    "known": True,
                }
                for pid, y in zip(prediction_ids, outcomes, strict=True)
            ],
        )
    engine.dispose()


def log_shadowed(
    db: str,
    champion: str,
    shadow: str,
    n: int,
    *,
    champion_quality: float,
    shadow_quality: float,
    labelled: int | None = None,
    seed: int = 0,
) -> None:
    """``n`` applications answered by ``champion`` and scored by ``shadow`` as the service logs them: the shadow's
    rows carry the answer's prediction id; ``labelled`` answers (default all) have an outcome, which the reader
    joins to both. Qualities as in ``log_outcomes``."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.22).astype(int)
    noise = rng.normal(0, 1, n)
    scored = {
        version: 1 / (1 + np.exp(-(quality * (labels - 0.5) + noise * 0.5 + rng.normal(0, 0.87, n) - 1.0)))
        for version, quality in ((champion, champion_quality), (shadow, shadow_quality))
    }
    take = n if labelled is None else labelled
    answered = log_scored(db, champion, scored[champion], labels, labelled=np.arange(n) < take, rng=rng)
    engine = make_engine(db)
    with engine.begin() as connection:
        served = {r.prediction_id: r for r in connection.execute(sa.select(predictions)).all()}
        connection.execute(
            predictions.insert(),
            [
                {
                    **{c: getattr(served[pid], c) for c in ("application_id", "sex", "education", "marriage", "age")},
                    "prediction_id": str(uuid.uuid4()),
                    "created_at": utcnow(),
                    "model_version": shadow,
                    "role": "shadow",
                    "probability": float(p),
                    "threshold": 0.5,
                    "decision": "decline" if p >= 0.5 else "approve",
                    "served_prediction_id": pid,
                }
                for pid, p in zip(answered, scored[shadow], strict=True)
            ],
        )
    engine.dispose()


def local_service_replay_key(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str], note: str) -> Iterator[str]:
    """For an end-to-end loop fixture: set ``env``, yield an API key for the replay (predict and feedback) from
    the deployer's key file, and stop the local service the test deployed, if any."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    deployer = resources().resources["deployer"]
    key, _ = create_key(deployer.api_keys_file(), ["predict", "feedback"], note=note)
    yield key
    state = deployer.local_manager().current()
    if state is not None:
        deployer.local_manager().stop(state)
