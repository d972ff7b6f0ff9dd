"""The shadow without a server: its sticky sample, its thread scoring answered batches into a real SQLite inference
log (role shadow, the answer's prediction id), its failures counted and never raised, a full queue dropping a batch,
and registry polling resolving the ``shadow`` alias. Models are stand-ins with what the shadow and the poller read;
the real-process version is test_serving_shadow.py."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from record_support import registry_without_artifacts

from platform_assets.core import registry as names
from platform_assets.core.environment import Environment
from platform_assets.core.inference_log import reader, schema
from platform_assets.core.observability import SHADOW_FAILURES_TOTAL
from platform_assets.ml import schema as raw_schema
from platform_assets.serving import routing
from platform_assets.serving.inference_log.writer import InferenceLog
from platform_assets.serving.model_loading import ModelRefused
from platform_assets.serving.payloads import parse_predict
from platform_assets.serving.registry_polling import ModelManager
from platform_assets.serving.settings import InvalidSettings, ServingSettings
from platform_assets.serving.shadow import ShadowBatch, ShadowScorer
from platform_assets.serving.signature import VerifyKey

ROW = {
    "LIMIT_BAL": 50_000,
    **{c: 0 for c in raw_schema.PAY_COLUMNS},
    **{c: 1000 for c in raw_schema.BILL_COLUMNS},
    **{c: 500 for c in raw_schema.PAY_AMT_COLUMNS},
}


@dataclass(eq=False)
class StandIn:
    """What the shadow scorer and the registry poller read of a loaded model."""

    label: str
    probability: float = 0.3
    threshold: float = 0.25
    include_protected: bool = False
    broken: bool = False
    #: Set: every predict waits for it (a stalled shadow).
    gate: threading.Event | None = None
    calls: int = 0
    version: str = ""
    sha256: str = "0" * 64
    run_id: str = "run"
    tags: dict[str, str] = field(default_factory=dict)
    signature: str = "unverified"
    backend: str = "stand-in"

    def predict(self, tensor: np.ndarray, static: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        if self.broken:
            raise ValueError("tensor shape mismatch")
        return np.full(len(tensor), self.probability, dtype="float32")


def answered(model: Any, ids: list[int], share: float = 100.0, protected: bool = True) -> ShadowBatch:
    """A batch as the engine offers it after answering applications ``ids``: all send AGE, the ones with an even
    ID also SEX, EDUCATION and MARRIAGE when ``protected``."""
    sent = {"SEX": 2, "EDUCATION": 1, "MARRIAGE": 2}
    rows = [{**ROW, "ID": i, "AGE": 30 + i % 20, **(sent if protected and i % 2 == 0 else {})} for i in ids]
    apps = parse_predict(json.dumps({"applications": rows}).encode(), 1000)
    protected_values = {
        log_name: [v if s else None for v, s in zip(apps.columns[c].tolist(), apps.sent[c].tolist(), strict=True)]
        for c, log_name in schema.PROTECTED_LOG_COLUMNS.items()
    }
    served = schema.new_prediction_ids(len(ids))
    return ShadowBatch(model, share, apps.matrix, apps.ids, served, protected_values)


def failures(version: str, reason: str) -> float:
    name = SHADOW_FAILURES_TOTAL
    return REGISTRY.get_sample_value(name, {"model_version": version, "reason": reason}) or 0.0


def wait_until_called(model: StandIn) -> None:
    """Until the shadow's thread is inside ``model.predict`` (bounded: 10 s)."""
    pause = threading.Event()
    for _ in range(1000):
        if model.calls:
            return
        pause.wait(0.01)
    raise AssertionError(f"the shadow never called {model.label}")


@pytest.fixture
def log(tmp_path: Path) -> Any:
    opened = InferenceLog(f"sqlite:///{tmp_path / 'log.db'}", linger_seconds=0.0)
    assert opened.wait_ready(30)
    yield opened
    opened.close()


def test_the_shadow_sample_is_sticky_proportional_and_independent_of_the_challenger() -> None:
    ids = list(range(1, 20_001))
    sample = routing.to_shadow(ids, 20.0)
    assert sample == routing.to_shadow(ids, 20.0) and 0.19 <= sum(sample) / len(ids) <= 0.21
    assert all(w for s, w in zip(sample, routing.to_shadow(ids, 60.0), strict=True) if s), "a wider share only adds"
    challenger = routing.to_challenger(ids, 20.0)
    both = sum(s and c for s, c in zip(sample, challenger, strict=True)) / len(ids)
    assert 0.03 <= both <= 0.05, "independent: about 20 % of 20 %, not the same 20 %"
    assert not any(routing.to_shadow(ids[:50], 0.0)) and all(routing.to_shadow(ids[:50], 100.0))


def test_the_shadow_logs_its_share_of_each_answered_batch_against_the_answer(log: InferenceLog) -> None:
    shadow = StandIn("v7", probability=0.3, threshold=0.25)
    scorer = ShadowScorer(log, 8)
    ids = list(range(1, 401))
    batch = answered(shadow, ids, share=50.0)
    assert scorer.offer(batch)
    scorer.close()
    assert log.flush(10)
    frame = reader.read_predictions(log.engine)
    chosen = [i for i, picked in zip(ids, routing.to_shadow(ids, 50.0), strict=True) if picked]
    assert sorted(frame["application_id"]) == chosen and scorer.status()["scored"] == len(chosen)
    assert set(frame["role"]) == {"shadow"} and set(frame["model_version"]) == {"v7"}
    assert set(frame["decision"]) == {"decline"} and set(frame["threshold"]) == {0.25}  # its own threshold
    assert frame["reasons"].isna().all() and frame["inputs"].isna().all()
    served = dict(zip(batch.application_ids, batch.served_prediction_ids, strict=True))
    assert all(frame["served_prediction_id"] == frame["application_id"].map(served))
    assert not set(frame["prediction_id"]) & set(served.values()), "its own prediction ids"
    sent = frame.set_index("application_id")
    assert all(sent.loc[i, "sex"] == 2 for i in chosen if i % 2 == 0) and sent["sex"].isna().sum() == sum(
        i % 2 for i in chosen
    )
    assert all(sent.loc[i, "age"] == 30 + i % 20 for i in chosen)


def test_a_failing_shadow_is_counted_logged_once_and_never_raised(
    log: InferenceLog, caplog: pytest.LogCaptureFixture
) -> None:
    shadow = StandIn("v8", broken=True)
    scorer = ShadowScorer(log, 64)
    before = failures("v8", "error")
    for start in range(0, 50, 10):
        assert scorer.offer(answered(shadow, list(range(start + 1, start + 11))))
    scorer.close()
    status = scorer.status()
    assert (
        status["failed"] == 50 and status["scored"] == 0 and "ValueError: tensor shape mismatch" in status["last_error"]
    )
    assert failures("v8", "error") - before == 50
    logged = [r for r in caplog.records if "shadow v8 failed" in r.getMessage()]
    assert shadow.calls >= 1 and len(logged) == 1, "the first failure, then once per LOG_EVERY (100)"
    assert log.flush(10) and reader.read_predictions(log.engine).empty
    # The fault drill breaks a healthy shadow the same way.
    drill = ShadowScorer(log, 4, fails=True)
    assert drill.offer(answered(StandIn("v9"), [1, 2, 3]))
    drill.close()
    assert drill.status()["failed"] == 3 and "InjectedFault" in str(drill.status()["last_error"])


def test_a_full_queue_drops_the_batch_without_waiting(log: InferenceLog) -> None:
    gate = threading.Event()
    shadow = StandIn("v10", gate=gate)
    scorer = ShadowScorer(log, 1)
    before = failures("v10", "queue_full")
    assert scorer.offer(answered(shadow, [1, 2]))  # taken by the thread, which waits at the gate
    wait_until_called(shadow)
    assert scorer.offer(answered(shadow, [3, 4, 5]))  # waits in the queue
    assert not scorer.offer(answered(shadow, [6, 7, 8, 9]))  # no room: dropped at once
    status = scorer.status()
    assert (status["dropped"], status["pending_batches"], status["queue_batches"]) == (4, 1, 1)
    assert failures("v10", "queue_full") - before == 4
    gate.set()
    scorer.close()
    assert scorer.status()["scored"] == 5 and scorer.status()["pending_batches"] == 0
    assert log.flush(10) and sorted(reader.read_predictions(log.engine)["application_id"]) == [1, 2, 3, 4, 5]


def test_a_shadow_that_reads_protected_values_skips_rows_without_them(log: InferenceLog) -> None:
    shadow = StandIn("v11", include_protected=True)
    scorer = ShadowScorer(log, 4)
    assert scorer.offer(answered(shadow, [1, 2, 3, 4]))  # only the even IDs sent every protected value
    scorer.close()
    assert scorer.status()["missing_input"] == 2 and scorer.status()["scored"] == 2
    assert log.flush(10) and sorted(reader.read_predictions(log.engine)["application_id"]) == [2, 4]


def test_a_closing_shadow_drops_what_it_cannot_score_in_time(log: InferenceLog) -> None:
    gate = threading.Event()
    shadow = StandIn("v12", gate=gate)
    scorer = ShadowScorer(log, 8)
    before = failures("v12", "shutdown")
    assert scorer.offer(answered(shadow, [1, 2]))
    wait_until_called(shadow)
    for start in (3, 5):
        assert scorer.offer(answered(shadow, [start, start + 1]))
    threading.Timer(0.5, gate.set).start()  # the pass under way outlives the close's deadline
    scorer.close(timeout=0.1)
    assert scorer.status()["scored"] == 2 and failures("v12", "shutdown") - before == 4
    assert not scorer.offer(answered(shadow, [9])) and failures("v12", "shutdown") - before == 5


def test_the_shadow_fault_drill_is_read_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDIT_RISK_FAULT_INJECTION", "v2, shadow, shadow_slow=1.5")
    settings = ServingSettings.from_environment()
    assert settings.shadow_fails and settings.shadow_delay_seconds == 1.5 and settings.shadow_queue_batches == 64
    monkeypatch.setenv("CREDIT_RISK_FAULT_INJECTION", "shadow_slow")
    assert ServingSettings.from_environment().shadow_delay_seconds == 5.0
    assert not ServingSettings.from_environment().shadow_fails
    monkeypatch.setenv("CREDIT_RISK_FAULT_INJECTION", "shadow_slow=soon")
    with pytest.raises(InvalidSettings, match=r"CREDIT_RISK_FAULT_INJECTION: .*shadow_slow= takes seconds >= 0"):
        ServingSettings.from_environment()
    monkeypatch.delenv("CREDIT_RISK_FAULT_INJECTION")
    monkeypatch.setenv("CREDIT_RISK_SHADOW_QUEUE_BATCHES", "0")
    with pytest.raises(InvalidSettings, match="CREDIT_RISK_SHADOW_QUEUE_BATCHES: Input should be greater than or"):
        ServingSettings.from_environment()


# -- registry polling ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real MLflow registry with versions 1..4 (no artifacts: only aliases and tags are exercised)."""
    return registry_without_artifacts(tmp_path_factory.mktemp("registry"))


class Loader:
    """Stands in for ``model_loading.load_version``: version 4 is refused; counts the loads."""

    def __init__(self) -> None:
        self.loads: list[str] = []

    def __call__(self, client: Any, model_name: str, version: str, tracking_uri: str) -> Any:
        self.loads.append(version)
        if version == "4":
            raise ModelRefused(f"{model_name} v4: manifest verification failed")
        return StandIn(f"v{version}", version=version)


def test_the_poller_resolves_the_shadow_alias_and_its_share(registry_store: str, tmp_path: Path) -> None:
    uri = registry_store
    settings = ServingSettings(tracking_uri=uri, platform_home=tmp_path, platform_env=Environment.LOCAL)
    loader = Loader()
    manager = ModelManager(settings, loader=loader, verify_key=VerifyKey(None, "none (PLATFORM_ENV=local)"))
    names.set_alias(names.CHAMPION, 1, tracking_uri=uri)
    names.set_alias(names.SHADOW, 2, tracking_uri=uri)
    current = manager.refresh()
    assert current.shadow is not None and current.shadow.label == "v2"
    assert current.describe() == {
        "champion": "v1",
        "challenger": None,
        "challenger_weight_percent": 0.0,
        "shadow": "v2",
        "shadow_share_percent": names.DEFAULT_SHADOW_SHARE,
    }
    assert current.find("v2") is None, "the shadow never answers, not even a request that names it"
    assert set(manager.status()["models"]) == {"champion", "shadow"}

    names.set_shadow_share(25, tracking_uri=uri)
    assert manager.refresh().shadow_share == 25.0
    # A refused shadow: the previous one keeps shadowing and the reason is in the status.
    names.set_alias(names.SHADOW, 4, tracking_uri=uri)
    assert manager.refresh().shadow is current.shadow and "manifest" in manager.status()["refused"]["v4"]
    # The gate moves v2 from shadow to challenger: the loaded model moves with it, nothing is downloaded again.
    names.set_alias(names.SHADOW, 2, tracking_uri=uri)
    manager.refresh()
    loads = len(loader.loads)
    names.set_alias(names.CHALLENGER, 2, tracking_uri=uri)  # on the way: v2 named challenger and shadow
    moving = manager.refresh()
    assert moving.challenger is current.shadow and moving.shadow is None, "a version answers or shadows, not both"
    names.remove_alias(names.SHADOW, tracking_uri=uri)
    assert manager.refresh().shadow is None and len(loader.loads) == loads
    # A shadow alias on the champion's version is ignored.
    names.remove_alias(names.CHALLENGER, tracking_uri=uri)
    names.set_alias(names.SHADOW, 1, tracking_uri=uri)
    assert manager.refresh().shadow is None
    names.remove_alias(names.SHADOW, tracking_uri=uri)
