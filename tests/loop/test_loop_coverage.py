"""Coverage of the outcomes per decision on a real inference log: live_quality's document and table, and the
live_model_performance asset's metadata, when only approved applications have outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from loop_support import lake_at, log_scored, log_shadowed, monitoring, publish_validation

from platform_assets.core.inference_log.reader import read_predictions
from platform_assets.ml import live_quality


def approved_only_log(db: str, n: int = 400, seed: int = 0) -> None:
    """``n`` predictions of v1 at threshold 0.5, outcomes posted for the approved ones only."""
    rng = np.random.default_rng(seed)
    probabilities = rng.beta(1.5, 4.0, n)
    outcomes = (rng.random(n) < probabilities).astype(int)
    log_scored(db, "v1", probabilities, outcomes, labelled=probabilities < 0.5)


def test_live_performance_reports_coverage_per_decision(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    approved_only_log(db)
    frame = read_predictions(db)
    document = live_quality.live_performance(frame)
    v1 = document["versions"]["v1"]
    approved, declined = (frame["decision"] == "approve").sum(), (frame["decision"] == "decline").sum()
    assert v1["decisions"]["approve"] == {"predictions": approved, "labelled": approved, "coverage": 1.0}
    assert v1["decisions"]["decline"] == {"predictions": declined, "labelled": 0, "coverage": 0.0}
    assert v1["labels_cover"] == "approved_only" and "approved population" in v1["bias"]
    assert v1["coverage"] == pytest.approx(approved / 400) and document["coverage"] == pytest.approx(approved / 400)
    table = live_quality.versions_table(document)
    assert f"| v1 | decline | {declined} | 0 | 0.0000 |" in table
    assert "approved_only" in table


def test_a_shadow_s_rows_are_its_own_and_the_totals_count_each_application_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    log_shadowed(db, "v1", "v2", 300, champion_quality=2.0, shadow_quality=2.0, labelled=100, seed=1)
    document = live_quality.live_performance(read_predictions(db))
    assert (document["predictions"], document["labelled"], document["shadow_predictions"]) == (300, 100, 300)
    # The shadow's rows carry the outcome of the answer they shadow.
    assert document["versions"]["v2"]["roles"]["shadow"]["labelled"] == 100


def test_labels_cover_every_case() -> None:
    def counts(approve: int, decline: int) -> dict[str, dict[str, int]]:
        return {"approve": {"labelled": approve}, "decline": {"labelled": decline}}

    assert live_quality.labels_cover(counts(0, 0)) == "none"
    assert live_quality.labels_cover(counts(5, 0)) == "approved_only"
    assert live_quality.labels_cover(counts(0, 5)) == "declined_only"
    assert live_quality.labels_cover(counts(5, 5)) == "all_decisions"
    assert live_quality.coverage(0, 0) is None


def test_live_model_performance_asset_states_coverage(tmp_path: Path) -> None:
    from platform_assets.defs.monitoring.assets import LIVE_PERFORMANCE_KEY, live_model_performance

    db = f"sqlite:///{tmp_path / 'log.db'}"
    approved_only_log(db)
    lake = lake_at(tmp_path / "lake")
    publish_validation(lake, "v1")
    result = dg.materialize([live_model_performance], resources={"lake": lake, "live_monitoring": monitoring(db)})
    [materialization] = result.asset_materializations_for_node("live_model_performance")
    metadata = materialization.metadata
    assert metadata["v1/approve/coverage"].value == 1.0 and metadata["v1/decline/coverage"].value == 0.0
    assert isinstance(metadata["v1/coverage"].value, float)
    assert metadata["labels_cover"].value == {"v1": "approved_only"}
    assert "| v1 | approve |" in metadata["versions"].value
    document = json.loads(lake.read_text(LIVE_PERFORMANCE_KEY))
    assert document["versions"]["v1"]["labels_cover"] == "approved_only"
