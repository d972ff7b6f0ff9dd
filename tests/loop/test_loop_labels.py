"""Labels that arrive late and only for some: the replay tool's realistic label mode (outcomes of approved
applications only, after a delay, by prediction id, for a share of them)."""

from __future__ import annotations

import json
import time
from collections import deque
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from platform_assets import replay as replay_module
from platform_assets.ml import schema
from platform_assets.replay import labelled, replay, synthetic_source


class FakeService:
    """/predict declines every application whose ID is a multiple of 3 and approves the rest; /feedback stores
    what it gets with the time it arrived."""

    def __init__(self) -> None:
        self.predicted_at: dict[str, float] = {}
        self.decisions: dict[str, str] = {}
        self.outcomes: dict[str, tuple[int, float]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        now = time.monotonic()
        if request.url.path == "/predict":
            predictions = []
            for application in body["applications"]:
                pid = f"p{application['ID']}"
                decision = "decline" if application["ID"] % 3 == 0 else "approve"
                self.predicted_at[pid], self.decisions[pid] = now, decision
                predictions.append(
                    {"prediction_id": pid, "model_version": "v1", "role": "champion", "decision": decision}
                )
            return httpx.Response(200, json={"predictions": predictions})
        for outcome in body["outcomes"]:
            self.outcomes[outcome["prediction_id"]] = (outcome["defaulted"], now)
        return httpx.Response(200, json={"stored": len(body["outcomes"])})


def run(frame: pd.DataFrame, service: FakeService, **options: Any) -> replay_module.ReplayStats:
    client = httpx.Client(base_url="http://service", transport=httpx.MockTransport(service))
    return replay("http://service", frame, "pk", "fk", rate=10_000, batch_size=20, client=client, **options)


# -- replay ------------------------------------------------------------------------------------------
def test_realistic_labels_only_approved_after_the_delay() -> None:
    frame = synthetic_source(120, 1, date(2027, 1, 1))
    service = FakeService()
    stats = run(frame, service, labels="realistic", feedback_delay=0.3)
    approved = {pid for pid, d in service.decisions.items() if d == "approve"}
    declined = set(service.decisions) - approved
    assert set(service.outcomes) == approved and declined
    assert stats.labels_posted == {"approve": len(approved)} and stats.feedback_sent == len(approved)
    assert stats.labels_withheld == {"decline": len(declined)}
    truth = dict(zip(frame[schema.ID], frame[schema.TARGET], strict=True))
    for pid, (defaulted, at) in service.outcomes.items():
        assert defaulted == truth[int(pid[1:])]
        assert at - service.predicted_at[pid] >= 0.3


def test_all_labels_is_the_default_and_posts_every_outcome() -> None:
    frame = synthetic_source(60, 2, date(2027, 1, 1))
    service = FakeService()
    stats = run(frame, service)
    assert set(service.outcomes) == set(service.decisions)
    assert sum(stats.labels_posted.values()) == 60 and stats.labels_withheld == {}
    assert set(stats.labels_posted) == {"approve", "decline"}


def test_outcomes_not_yet_due_move_on_to_the_next_call_instead_of_holding_it_back() -> None:
    """What ``loop_demo.Traffic`` does chunk after chunk: a call that need not wait leaves the outcomes not yet due
    in ``pending`` and returns; the next call posts them once due, and counts them."""
    first, second = synthetic_source(40, 4, date(2027, 1, 1)), synthetic_source(40, 5, date(2027, 1, 2))
    second[schema.ID] += 1000
    service, pending = FakeService(), deque[Any]()
    sent = run(first, service, feedback_delay=0.5, pending=pending, wait_for_outcomes=False)
    assert sent.sent == 40 and sent.feedback_sent == 0 and service.outcomes == {}
    assert sum(len(outcomes) for _, outcomes, _ in pending) == 40
    time.sleep(0.5)
    sent = run(second, service, feedback_delay=0.5, pending=pending, wait_for_outcomes=False)
    assert sent.feedback_sent >= 40  # the first call's, due before the second call's first batch was sent
    last = run(first.iloc[:0], service, feedback_delay=0.5, pending=pending)
    assert not pending and sent.feedback_sent + last.feedback_sent == 80
    assert set(service.outcomes) == set(service.decisions)
    for pid, (_, at) in service.outcomes.items():
        assert at - service.predicted_at[pid] >= 0.5


def test_label_share_keeps_a_seeded_share_of_the_approved() -> None:
    frame = synthetic_source(3000, 3, date(2027, 1, 1))
    service = FakeService()
    stats = run(frame, service, labels="realistic", label_share=0.4, seed=5)
    approved = sum(1 for d in service.decisions.values() if d == "approve")
    assert 0.35 < stats.labels_posted["approve"] / approved < 0.45
    assert stats.labels_withheld["approve"] == approved - stats.labels_posted["approve"]
    assert stats.labels_withheld["decline"] == 3000 - approved
    assert all(service.decisions[pid] == "approve" for pid in service.outcomes)
    again = run(frame, FakeService(), labels="realistic", label_share=0.4, seed=5)
    assert again.labels_posted == stats.labels_posted


def test_labelled_rejects_bad_modes() -> None:
    rng = np.random.default_rng(0)
    assert labelled(["approve", "decline"], "realistic", 1.0, rng).tolist() == [True, False]
    assert labelled(["approve", "decline"], "all", 1.0, rng).tolist() == [True, True]
    with pytest.raises(ValueError, match="label mode"):
        labelled(["approve"], "some", 1.0, rng)  # type: ignore[arg-type]
    frame = synthetic_source(5, 1, date(2027, 1, 1))
    with pytest.raises(ValueError, match="label_share applies to labels='realistic' only"):
        run(frame, FakeService(), label_share=0.5)
    with pytest.raises(ValueError, match="within 0..1"):
        run(frame, FakeService(), labels="realistic", label_share=1.5)


def test_cli_label_options_and_the_old_delay_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def fake_replay(url: str, frame: pd.DataFrame, predict_key: str, feedback_key: str, **options: Any) -> Any:
        seen.append(options)
        return replay_module.ReplayStats()

    monkeypatch.setattr(replay_module, "replay", fake_replay)
    key = tmp_path / "key"
    key.write_text("k\n")
    base = ["--api-key-file", str(key), "--rows", "5"]
    assert replay_module.main([*base, "--feedback-delay", "7"]) == 0
    assert (seen[-1]["feedback_delay"], seen[-1]["labels"], seen[-1]["label_share"]) == (7.0, "all", 1.0)
    assert replay_module.main([*base, "--labels", "realistic", "--label-delay", "2", "--label-share", "0.5"]) == 0
    assert (seen[-1]["feedback_delay"], seen[-1]["labels"], seen[-1]["label_share"]) == (2.0, "realistic", 0.5)
    with pytest.raises(SystemExit):
        replay_module.main([*base, "--label-share", "0.5"])  # a share without the realistic mode
    with pytest.raises(SystemExit):
        replay_module.main([*base, "--labels", "realistic", "--label-delay", "-1"])
