"""platform_assets.ml.live_quality: live metrics per version, role and group from a real inference log, and
the accuracy-drop test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from loop_support import log_outcomes

from platform_assets.core.inference_log.reader import read_predictions
from platform_assets.ml import live_quality
from platform_assets.ml.live_quality import DropPolicy, quality_breach

GOOD = {"labelled": 300, "accuracy": 0.82, "roc_auc": 0.78, "brier": 0.14}


def q(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


# -- live metrics ------------------------------------------------------------------------------------
def test_live_performance_per_version_role_and_group(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    log_outcomes(db, "v1", 400, quality=3.0, seed=1)
    log_outcomes(db, "v2", 200, quality=0.0, role="challenger", labelled=120, seed=2)
    document = live_quality.live_performance(read_predictions(db), min_group_size=30)
    v1, v2 = document["versions"]["v1"], document["versions"]["v2"]
    assert (document["predictions"], document["labelled"]) == (600, 520)
    assert (v1["labelled"], v2["labelled"], v2["predictions"]) == (400, 120, 200)
    assert v1["roc_auc"] > 0.9 > 0.65 > v2["roc_auc"]
    assert v1["accuracy"] > v2["accuracy"] and 0 <= v1["brier"] < v2["brier"]
    assert set(v2["roles"]) == {"challenger"} and v2["roles"]["challenger"]["labelled"] == 120
    assert set(v1["groups"]) == {"sex", "education", "marriage", "age"}
    assert set(v1["groups"]["sex"]) == {"male", "female"}
    assert all(g["labelled"] >= 30 for g in v1["groups"]["age"].values())
    assert "| v1 | champion | 400 | 400 |" in live_quality.versions_table(document)


def test_quality_of_one_class_has_no_auc() -> None:
    result = live_quality.quality(np.zeros(5), np.full(5, 0.1), np.zeros(5, dtype=bool))
    assert result["roc_auc"] is None and result["accuracy"] == 1.0
    assert live_quality.quality(np.array([]), np.array([]), np.array([]))["labelled"] == 0


def test_frame_quality_ignores_unlabelled_rows() -> None:
    frame = pd.DataFrame(
        {
            "probability": [0.9, 0.1, 0.8],
            "decision": ["decline", "approve", "decline"],
            "defaulted": pd.array([1, 0, None], dtype="Int64"),
        }
    )
    assert live_quality.frame_quality(frame)["labelled"] == 2


# -- the drop test -----------------------------------------------------------------------------------
def test_relative_drop_against_validation() -> None:
    policy = DropPolicy()
    assert quality_breach(q(roc_auc=0.76), {"roc_auc": 0.80, "accuracy": 0.82}, policy) == []
    [reason] = quality_breach(q(roc_auc=0.70), {"roc_auc": 0.80, "accuracy": 0.82}, policy)
    assert "0.1000 below validation 0.8000" in reason
    with pytest.raises(ValueError, match="validation metrics"):
        quality_breach(q(), None, policy)
    with pytest.raises(ValueError, match="only 100 of the 200"):
        quality_breach(q(labelled=100), {"roc_auc": 0.8}, policy)


def test_absolute_floor_and_either() -> None:
    assert quality_breach(q(accuracy=0.80), None, DropPolicy(mode="absolute")) == [
        "live accuracy 0.8000 < floor 0.8500"
    ]
    assert quality_breach(q(accuracy=0.90), None, DropPolicy(mode="absolute")) == []
    both = quality_breach(q(accuracy=0.60, roc_auc=0.6), {"roc_auc": 0.8, "accuracy": 0.82}, DropPolicy(mode="either"))
    assert len(both) == 3
    with pytest.raises(ValueError, match="drop mode"):
        DropPolicy(mode="sometimes")  # type: ignore[arg-type]
