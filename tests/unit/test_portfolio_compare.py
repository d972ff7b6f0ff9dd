"""Two versions' past-day scores joined per client with the known outcome (the candidate's offline evidence)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions
from platform_assets.dataplane.objects import LocalObjects
from platform_assets.dataplane.portfolio_compare import PAIRED_COLUMNS, paired_scores
from platform_assets.dataplane.scoring import DECISION, MODEL_VERSION, PROBABILITY
from platform_assets.ml import schema


@pytest.fixture
def store(tmp_path: Path) -> LocalObjects:
    return LocalObjects(str(tmp_path / "lake"))


def scores(store: LocalObjects, version: str, day: str, probabilities: dict[int, float]) -> None:
    frame = pd.DataFrame(
        {
            schema.ID: list(probabilities),
            PROBABILITY: list(probabilities.values()),
            DECISION: ["decline" if p >= 0.5 else "approve" for p in probabilities.values()],
            MODEL_VERSION: version,
        }
    )
    partitions.write_partition(store, lake_keys.portfolio_scores(version, day), [frame])


def outcomes(store: LocalObjects, day: str, defaulted: dict[int, int]) -> None:
    frame = pd.DataFrame({schema.ID: list(defaulted), schema.TARGET: list(defaulted.values())})
    for i, column in enumerate(schema.PROTECTED_COLUMNS):
        frame[column] = [i + 1] * len(frame)
    partitions.write_partition(store, lake_keys.tensors(day), [frame])


def test_clients_scored_by_both_versions_are_joined_with_their_outcome(store: LocalObjects) -> None:
    outcomes(store, "2026-10-01", {1: 0, 2: 1, 3: 0})
    scores(store, "v1", "2026-10-01", {1: 0.1, 2: 0.7, 3: 0.4})
    scores(store, "v2", "2026-10-01", {1: 0.2, 2: 0.4, 3: 0.6})
    scores(store, "v1", "2026-10-02", {4: 0.1})  # v2 has no scores that day: reported, not joined

    paired = paired_scores(store, "v1", "v2", ["2026-10-01", "2026-10-02"])

    assert paired.days == ("2026-10-01",) and paired.missing == {"2026-10-02": ["v2"]}
    assert list(paired.frame.columns) == list(PAIRED_COLUMNS)
    rows = paired.frame.sort_values("application_id")
    assert rows["application_id"].tolist() == [1, 2, 3]
    assert rows["champion_decision"].tolist() == ["approve", "decline", "approve"]
    assert rows["candidate_decision"].tolist() == ["approve", "approve", "decline"]
    assert rows["defaulted"].tolist() == [0, 1, 0] and rows["sex"].tolist() == [1, 1, 1]


def test_a_large_portfolio_is_sampled_to_the_cap_with_a_seed(store: LocalObjects) -> None:
    ids = range(1, 2001)
    outcomes(store, "2026-10-01", {i: i % 2 for i in ids})
    scores(store, "v1", "2026-10-01", {i: (i % 10) / 10 for i in ids})
    scores(store, "v2", "2026-10-01", {i: (i % 7) / 7 for i in ids})

    first = paired_scores(store, "v1", "v2", ["2026-10-01"], max_rows=500, seed=3)
    again = paired_scores(store, "v1", "v2", ["2026-10-01"], max_rows=500, seed=3)

    assert first.rows_before_sampling == 2000 and 400 < len(first.frame) < 600
    assert first.frame["application_id"].tolist() == again.frame["application_id"].tolist()


def test_the_same_version_twice_is_refused(store: LocalObjects) -> None:
    with pytest.raises(ValueError, match="two different versions"):
        paired_scores(store, "v1", "v1", ["2026-10-01"])
