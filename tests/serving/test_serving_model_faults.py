"""A failing model fails only its own requests, and the request metrics name the model that answered.

The scorer is driven pass by pass (``Scorer._score`` on jobs built here), so "the same pass" is certain; the
models are stand-ins with what the scorer reads. The real-process version of this, a
challenger rolled back by the canary while the champion's clients see no error, is
tests/loop/test_loop_canary_rollback.py.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from platform_assets.ml import schema
from platform_assets.serving.engine import answered_by
from platform_assets.serving.payloads import parse_predict
from platform_assets.serving.scorer import InjectedFault, Job, ModelFailure, Scorer
from platform_assets.serving.settings import InvalidSettings, ServingSettings

ROW = {
    "LIMIT_BAL": 50_000,
    "AGE": 31,
    **{c: 0 for c in schema.PAY_COLUMNS},
    **{c: 1000 for c in schema.BILL_COLUMNS},
    **{c: 500 for c in schema.PAY_AMT_COLUMNS},
}


@dataclass(eq=False)
class StandIn:
    """What the scorer reads of a loaded model; ``broken`` makes every call raise."""

    label: str
    probability: float
    broken: bool = False
    include_protected: bool = False
    threshold: float = 0.5
    #: Only explaining declines raises (the scoring call works).
    unexplainable: bool = False

    def predict(self, tensor: np.ndarray, static: np.ndarray) -> np.ndarray:
        if self.broken:
            raise ValueError("tensor shape mismatch")
        return np.full(len(tensor), self.probability, dtype="float32")

    def explain(self, rows: np.ndarray) -> Any:
        if self.unexplainable:
            raise ValueError("coalition row 0 is not a valid application")
        return SimpleNamespace(reasons=[[{"code": "R01", "row_id": int(r[0])}] for r in rows])


def job(rows: int, groups: list[tuple[StandIn, list[int]]]) -> Job:
    apps = parse_predict(json.dumps({"applications": [{**ROW, "ID": i + 1} for i in range(rows)]}).encode(), 100)
    return Job(apps.matrix, [(model, np.asarray(idx)) for model, idx in groups], Future())  # type: ignore[misc]


def score(scorer: Scorer, jobs: list[Job]) -> None:
    try:
        scorer._score(jobs)
    finally:
        scorer.close()


def test_a_broken_challenger_fails_only_the_requests_routed_to_it() -> None:
    champion, challenger = StandIn("v1", 0.2), StandIn("v2", 0.9, broken=True)
    champion_only = job(2, [(champion, [0, 1])])
    mixed = job(3, [(champion, [0, 2]), (challenger, [1])])
    challenger_only = job(1, [(challenger, [0])])
    score(Scorer(), [champion_only, mixed, challenger_only])
    assert champion_only.future.result().probabilities.tolist() == pytest.approx([0.2, 0.2])
    for failed in (mixed, challenger_only):
        error = failed.future.exception()
        assert isinstance(error, ModelFailure) and error.model is challenger
        assert "model v2 failed to score: ValueError: tensor shape mismatch" in str(error)


def test_a_broken_champion_alone_fails_its_requests() -> None:
    champion = StandIn("v1", 0.2, broken=True)
    only = job(4, [(champion, [0, 1, 2, 3])])
    score(Scorer(), [only])
    assert isinstance(only.future.exception(), ModelFailure)


def test_fault_injection_breaks_the_named_version_only() -> None:
    champion, challenger = StandIn("v1", 0.2), StandIn("v2", 0.9)
    champion_only, challenger_only = job(1, [(champion, [0])]), job(1, [(challenger, [0])])
    score(Scorer(faulty=frozenset({"v2"})), [champion_only, challenger_only])
    assert champion_only.future.result().probabilities.tolist() == pytest.approx([0.2])
    error = challenger_only.future.exception()
    assert isinstance(error, ModelFailure) and "InjectedFault" in str(error)
    assert issubclass(InjectedFault, RuntimeError)


def test_declines_are_explained_per_model_and_a_failing_explanation_fails_only_its_model() -> None:
    champion, challenger = StandIn("v1", 0.7), StandIn("v2", 0.9, unexplainable=True)
    champion_only = job(3, [(champion, [0, 1, 2])])
    challenger_only = job(1, [(challenger, [0])])
    score(Scorer(), [champion_only, challenger_only])
    scored = champion_only.future.result()
    assert scored.declined.tolist() == [True] * 3
    assert scored.reasons == [[{"code": "R01", "row_id": i}] for i in (1, 2, 3)]  # each row's own reasons
    error = challenger_only.future.exception()
    assert isinstance(error, ModelFailure) and "not a valid application" in str(error)
    approving = StandIn("v1", 0.2)
    approvals, asked = job(2, [(approving, [0, 1])]), job(1, [(approving, [0])])
    asked.explain_all = True
    score(Scorer(), [approvals, asked])
    assert approvals.future.result().reasons == [None, None]  # approvals are explained only when asked
    assert asked.future.result().reasons == [[{"code": "R01", "row_id": 1}]]


def test_fault_injection_is_refused_outside_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDIT_RISK_FAULT_INJECTION", "v2, v3")
    assert ServingSettings.from_environment().fault_injection == frozenset({"v2", "v3"})
    assert ServingSettings.from_environment().platform_env.value == "local"
    monkeypatch.setenv("PLATFORM_ENV", "prod")
    monkeypatch.setenv("CREDIT_RISK_API_KEYS", '{"keys": []}')
    with pytest.raises(InvalidSettings, match="CREDIT_RISK_FAULT_INJECTION is a test-only failure drill") as refused:
        ServingSettings.from_environment()
    assert "keys" not in str(refused.value), "a rule across settings never echoes every input"
    monkeypatch.delenv("CREDIT_RISK_FAULT_INJECTION")
    assert ServingSettings.from_environment().fault_injection == frozenset()


def test_a_request_counts_for_the_challenger_when_any_row_went_to_it() -> None:
    champion, challenger = StandIn("v1", 0.2), StandIn("v2", 0.9)
    rows: Any = np.arange(1)
    assert answered_by([(champion, "champion", rows)]) == ("v1", "champion")  # type: ignore[list-item]
    mixed: Any = [(champion, "champion", rows), (challenger, "challenger", rows)]
    assert answered_by(mixed) == ("v2", "challenger")
    assert answered_by([(challenger, "challenger", rows)]) == ("v2", "challenger")  # type: ignore[list-item]
